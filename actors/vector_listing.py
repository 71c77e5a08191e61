"""What `GET /v1/vector` and `GET /v1/vector/{c}` answer: collections as the loaded store, the
quarantine and the KV manifest keys see them together.

Its own module because it is a report joining three sources (loaded collections, quarantined
ones, `vector:{c}:manifest` keys written by hand or by the original) with the contract's
fallback rules, not a call sent to a collection's actor as the rest of the vector methods in
actors/engine.py are. `Engine.vector_list` and `Engine.vector_info` call into here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from kissvdb.errors import NotFound

from kissvdb.actors.vectors import manifest_key

if TYPE_CHECKING:
    from kissvdb.actors.engine import Engine


def manifest_only_entry(name: str, m: dict) -> dict:
    """A GET /v1/vector entry for a collection that is not loaded: what its manifest says."""
    return {"collection": name, "dim": m.get("dim", 0), "metric": m.get("metric", "cosine"),
            "live_count": 0, "total_records": 0, "upsert_count": 0, "file_len": 0, "applied_offset": 0,
            "created_at_ms": m.get("created_at_ms"), "updated_at_ms": m.get("updated_at_ms"),
            "segments": None, "deleted_count": None}


async def kv_manifest(engine: Engine, name: str):
    """The collection's KV manifest key, decoded; None when absent or not JSON."""
    try:
        item = await engine.kv_get(manifest_key(name))
    except NotFound:
        return None
    try:
        return orjson.loads(item.value)
    except orjson.JSONDecodeError:
        return None


async def kv_manifests(engine: Engine) -> dict[str, dict]:
    """Every `vector:{c}:manifest` key holding a JSON object, by collection name."""
    manifests = {}
    for item in await engine.kv_list("vector:", 1000):
        key = item.key
        if not key.endswith(":manifest"):
            continue
        try:
            m = orjson.loads(item.value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(m, dict):
            manifests[key[len("vector:"):-len(":manifest")]] = m
    return manifests


async def vector_list(engine: Engine) -> list[dict]:
    """Every collection, sorted by name. `status` (kissvdb addition) is `ready`, `quarantined`
    (503 on its routes; `reason` says why) or `manifest_only` (known from its KV manifest key
    alone, as the contract's fallback)."""
    vm = engine._vm()
    out = {}
    for name, c in sorted(vm.store.collections.items()):
        info = c.info()
        out[name] = {"collection": name, "dim": c.dim, "metric": c.metric, "live_count": info["live_count"],
                     "total_records": info["total_records"], "upsert_count": info["upsert_count"],
                     "file_len": info["file_len"], "applied_offset": info["applied_offset"],
                     "created_at_ms": c.created["created_at_ms"], "updated_at_ms": c.created["created_at_ms"],
                     "segments": info["segments"], "deleted_count": info["deleted_count"],
                     "index": c.kind, "status": "ready"}
        if info["diskann"] is not None:
            out[name]["diskann"] = info["diskann"]
    manifests = await kv_manifests(engine)
    for q in vm.store.quarantined.values():
        if q.name is not None:
            out[q.name] = dict(manifest_only_entry(q.name, manifests.get(q.name, q.facts)), status="quarantined",
                               reason=q.reason)
    # A manifest key without a collection (written by hand) still yields an entry.
    for name, m in manifests.items():
        if name not in out:
            out[name] = dict(manifest_only_entry(name, m), status="manifest_only")
    return [out[k] for k in sorted(out)]


async def vector_info(engine: Engine, name: str) -> dict:
    engine._check_name(name)
    vm = engine._vm()
    vm.check_not_quarantined(name)
    c = vm.store.collections.get(name)
    manifest = await kv_manifest(engine, name)
    if c is None:
        if manifest is None or not isinstance(manifest, dict):
            raise NotFound("collection not found", field="collection")
        return {"collection": name, "dim": manifest.get("dim"), "metric": manifest.get("metric"), "count": 0,
                "created_at_ms": manifest.get("created_at_ms"), "updated_at_ms": manifest.get("updated_at_ms"),
                "manifest": manifest, "notes": "using manifest fallback", "segments": None, "deleted": None}
    info = c.info()
    return {"collection": name, "dim": c.dim, "metric": c.metric, "count": info["live_count"],
            "created_at_ms": c.created["created_at_ms"], "updated_at_ms": c.created["created_at_ms"],
            "manifest": manifest, "notes": None, "segments": info["segments"], "deleted": info["deleted_count"],
            "index": c.kind, "total_records": info["total_records"], "file_len": info["file_len"],
            "applied_offset": info["applied_offset"], "runs": info["runs"],
            "ivf_trained": info["ivf_trained"], "ivf_lists": info["ivf_lists"], "diskann": info["diskann"]}

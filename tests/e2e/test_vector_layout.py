"""Vector collection names and files against a real server (issue 9, defect 2).

- A collection named `registry.json` no longer bricks the data directory: periodic and shutdown
  checkpoints and every later boot work, whether or not vectors/registry.json already exists
  (where format 1 answered 500 after its event was durable).
- Names that differ only in case are two collections in two directories whose names differ
  under case folding too.
- A collection whose files cannot be opened at boot is quarantined: the server boots, every
  route on that collection answers 503 naming it, GET /v1/vector shows it, the others serve,
  and the WAL it still needs is kept, so once its files are repaired the next boot serves every
  vector it acknowledged, including those that were only in the WAL.
- A durable creation whose directory cannot be made at boot quarantines that collection instead
  of failing the boot, and the next boot, once the obstacle is gone, creates it and replays it.
"""

from __future__ import annotations

import os
import shutil
import time

import httpx
import numpy as np

from kissvdb import layout
from tests.helpers import assert_error

from .server import ServerProcess, parse_metrics

COLLECTIONS = os.path.join(layout.VECTORS_DIR, layout.COLLECTIONS_DIR)


def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30)


def ok(resp: httpx.Response):
    assert resp.status_code == 200, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    return resp.json()


def upsert(c: httpx.Client, name: str, ids: range, tag: str) -> dict[str, list[float]]:
    items = [{"id": f"{tag}{i}", "vector": [float(i), 1.0, -0.5], "meta": {"tag": tag}} for i in ids]
    ok(c.post(f"/v1/vector/{name}/upsert_batch", json={"items": items}))
    return {it["id"]: it["vector"] for it in items}


def assert_serves(c: httpx.Client, name: str, vectors: dict[str, list[float]]) -> None:
    assert ok(c.get(f"/v1/vector/{name}"))["count"] == len(vectors), name
    for vid, vec in vectors.items():
        got = ok(c.get(f"/v1/vector/{name}/get", params={"id": vid}))["vector"]
        # `dot` collections store unit vectors; `cosine` ones the vector as sent.
        assert np.allclose(_unit(got), _unit(vec), atol=1e-6), (name, vid, got, vec)


def _unit(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def metric(c: httpx.Client, name: str) -> float:
    return parse_metrics(ok_text(c.get("/v1/metrics")))[name]


def poll_until(predicate, timeout_s: float, what: str, server: ServerProcess) -> None:
    """A bounded poll: the condition holds within `timeout_s`, or fail showing the server log."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            server.dump_log(f"timed out waiting for {what}")
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def ok_text(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.text


def test_collection_named_registry_json_survives_checkpoints_and_restarts(tmp_path):
    server = ServerProcess(tmp_path / "data", env={"SNAPSHOT_INTERVAL_SECS": "1"})
    with server:
        with client(server) as c:
            ok(c.post("/v1/vector/registry.json", json={"dim": 3, "metric": "cosine"}))
            vectors = upsert(c, "registry.json", range(20), "r")
            durable = int(metric(c, "kissvdb_wal_durable_offset"))
            # The periodic checkpoint is what failed with IsADirectoryError in format 1.
            poll_until(lambda: metric(c, "kissvdb_vector_checkpoint_offset") >= durable, 30,
                       "a periodic vector checkpoint past the collection's writes", server)
        assert "checkpoint failed" not in server.log()
        assert server.running()
        assert server.stop() == 0
        assert "checkpoint failed" not in server.log()
        server.start()
        with client(server) as c:
            assert_serves(c, "registry.json", vectors)


def test_registry_json_beside_an_existing_registry_is_created_not_a_500(tmp_path):
    server = ServerProcess(tmp_path / "data")
    with server:
        with client(server) as c:
            ok(c.post("/v1/vector/a", json={"dim": 3, "metric": "cosine"}))
        assert server.stop() == 0
        assert (server.data_dir / layout.VECTORS_DIR / layout.REGISTRY).is_file()
        server.start()
        with client(server) as c:
            created = ok(c.post("/v1/vector/registry.json", json={"dim": 3, "metric": "dot"}))
            assert created["collection"] == "registry.json"
            vectors = upsert(c, "registry.json", range(3), "r")
        server.kill9()
        server.start()
        with client(server) as c:
            assert_serves(c, "registry.json", vectors)
            listed = {e["collection"]: e["status"] for e in ok(c.get("/v1/vector"))["collections"]}
            assert listed == {"a": "ready", "registry.json": "ready"}


def test_names_equal_under_case_folding_are_distinct_collections(tmp_path):
    server = ServerProcess(tmp_path / "data")
    with server:
        with client(server) as c:
            data = {}
            for name, dim in (("Docs", 3), ("docs", 3), ("DOCS", 3)):
                ok(c.post(f"/v1/vector/{name}", json={"dim": dim, "metric": "cosine"}))
                data[name] = upsert(c, name, range(len(data) + 1), name)
            assert_error(c.post("/v1/vector/docs", json={"dim": 3, "metric": "cosine"}), 409, "already_exists",
                         field="collection")
        server.kill9()
        dirs = os.listdir(server.data_dir / COLLECTIONS)
        assert len({d.casefold() for d in dirs}) == len(dirs) == 3, dirs
        server.start()
        with client(server) as c:
            for name, vectors in data.items():
                assert_serves(c, name, vectors)


# A valid request body for every route on one collection (the routes come from the OpenAPI
# spec, so a new route without an entry here fails the quarantine test).
VALID_BODIES = {
    ("", "GET"): None, ("", "POST"): {"dim": 3, "metric": "cosine"}, ("", "DELETE"): None,
    ("/add", "POST"): {"id": "z", "vector": [1, 2, 3]}, ("/upsert", "POST"): {"id": "z", "vector": [1, 2, 3]},
    ("/update", "POST"): {"id": "b1", "meta": {"a": 1}}, ("/delete", "POST"): {"id": "b1"},
    ("/upsert_batch", "POST"): {"items": [{"id": "z", "vector": [1, 2, 3]}]},
    ("/delete_batch", "POST"): {"ids": ["b1"]}, ("/get?id=b1", "GET"): None,
    ("/search", "POST"): {"vector": [1, 2, 3], "k": 1},
    ("/search_batch", "POST"): {"queries": [{"vector": [1, 2, 3], "k": 1}]}, ("/compact", "POST"): None,
    ("/diskann/build", "POST"): {}, ("/diskann/tune", "POST"): {}, ("/diskann/status", "GET"): None,
}


def collection_requests(name: str) -> list[tuple[str, str, dict | None]]:
    from tests.api.test_openapi import SPEC, spec_operations

    prefix = "/v1/vector/{collection}"
    out = []
    for path, method in sorted(spec_operations(SPEC.read_text())):
        if path.startswith(prefix):
            suffix = path[len(prefix):] + ("?id=b1" if path.endswith("/get") else "")
            assert (suffix, method) in VALID_BODIES, f"no request body for {method} {path}: add one"
            out.append((method, f"/v1/vector/{name}{suffix}", VALID_BODIES[suffix, method]))
    assert len(out) == len(VALID_BODIES)
    return out


RETENTION_ENV = {"SNAPSHOT_INTERVAL_SECS": "3600", "WAL_SEGMENT_MAX_BYTES": str(1 << 20),
                 "WAL_RETENTION_SEGMENTS": "1", "WAL_RETENTION_MIN_SECS": "0", "WAL_RETENTION_MIN_BYTES": "0"}


def fill_wal(c: httpx.Client, megabytes: int) -> None:
    """Enough KV writes to roll several WAL segments (so retention has something to drop)."""
    value = "x" * 60000
    for i in range(megabytes * 18):
        ok(c.put(f"/v1/state/fill/{i}", json={"value": value}))


def test_collection_that_cannot_be_opened_is_quarantined_not_a_boot_failure(tmp_path):
    server = ServerProcess(tmp_path / "data", env=RETENTION_ENV)
    manifest = server.data_dir / COLLECTIONS / layout.collection_dir_name("Bad") / "manifest.json"
    with server:
        with client(server) as c:
            for name in ("good", "Bad"):
                ok(c.post(f"/v1/vector/{name}", json={"dim": 3, "metric": "cosine"}))
            good = upsert(c, "good", range(10), "g")
            bad = upsert(c, "Bad", range(10), "b")
        assert server.stop() == 0  # checkpoints both collections
        server.start()
        with client(server) as c:
            bad.update(upsert(c, "Bad", range(10, 15), "b"))  # only in the WAL: manifest not rewritten
        server.kill9()
        original = manifest.read_bytes()
        manifest.write_bytes(b"{ not json")

        server.start()
        assert "quarantined" in server.log()
        with client(server) as c:
            assert_serves(c, "good", good)
            for method, path, body in collection_requests("Bad"):
                body = assert_error(c.request(method, path, json=body), 503, "unavailable", field="collection")
                assert "'Bad'" in body["message"] and "quarantined" in body["message"], body
            listed = {e["collection"]: e for e in ok(c.get("/v1/vector"))["collections"]}
            assert listed["good"]["status"] == "ready"
            assert listed["Bad"]["status"] == "quarantined" and "cannot be opened" in listed["Bad"]["reason"]
            assert metric(c, "kissvdb_vector_quarantined") == 1
            good.update(upsert(c, "good", range(10, 20), "g"))
            fill_wal(c, 3)
        assert server.stop() == 0  # a checkpoint, with retention that would drop segment 1
        assert (server.data_dir / "events-000001.log").exists(), "the WAL the quarantined collection needs was dropped"
        assert manifest.read_bytes() == b"{ not json"  # its files were left as they were

        manifest.write_bytes(original)  # the operator's repair
        server.start()
        with client(server) as c:
            assert_serves(c, "good", good)
            assert_serves(c, "Bad", bad)
            assert metric(c, "kissvdb_vector_quarantined") == 0


def test_creation_that_cannot_be_materialized_at_boot_is_quarantined_then_retried(tmp_path):
    server = ServerProcess(tmp_path / "data", env={"SNAPSHOT_INTERVAL_SECS": "3600"})
    collections = server.data_dir / COLLECTIONS
    with server:
        with client(server) as c:
            ok(c.post("/v1/vector/late", json={"dim": 3, "metric": "dot"}))
            vectors = upsert(c, "late", range(8), "l")
        server.kill9()  # no checkpoint: the creation is replayed at the next boot
        shutil.rmtree(collections / "late")
        # An obstacle where the creation is staged: a file (the engine only ever makes a
        # directory there, and leaves what it cannot remove), so making the directory fails.
        obstacle = collections / (layout.STAGING_PREFIX + "late")
        obstacle.write_text("in the way\n")

        server.start()
        with client(server) as c:
            assert_error(c.get("/v1/vector/late"), 503, "unavailable", field="collection")
            listed = {e["collection"]: e for e in ok(c.get("/v1/vector"))["collections"]}
            assert listed["late"]["status"] == "quarantined" and listed["late"]["metric"] == "dot", listed
            ok(c.put("/v1/state/meanwhile", json={"value": 1}))
        assert server.stop() == 0  # its checkpoint must not move the registry past the creation

        obstacle.unlink()
        server.start()
        with client(server) as c:
            assert_serves(c, "late", vectors)
            assert ok(c.get("/v1/state/meanwhile"))["value"] == 1

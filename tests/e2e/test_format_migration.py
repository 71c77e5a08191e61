"""Data format 1 -> 2 at boot, on data directories written by a real format-1 server (commit
39e5694; tests/fixtures/README.md says how they were made).

- format1-datadir: KV, documents, user SQL, HNSW / IVF (trained) / FLAT collections (one with
  upper case and dots in its name, one dropped), and a WAL tail past every checkpoint. `check`
  and `repair` work on it as it is, without migrating it; `serve` migrates it (FORMAT says 2,
  collections sit under vectors/collections/) and serves every key, document and vector the old
  server acknowledged, and again after a SIGKILL and a second boot.
- format1-bricked: the two data directories format 1 itself could no longer boot after a
  collection was named `registry.json`; format 2 migrates and boots both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import numpy as np

from kissvdb import layout
from kissvdb.datadir import DATA_FORMAT_VERSION

from .server import ServerProcess

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def unpack(name: str, into: Path) -> Path:
    with tarfile.open(FIXTURES / name) as tar:
        tar.extractall(into, filter="data")
    return into


def ok(resp: httpx.Response):
    assert resp.status_code == 200, (resp.request.url, resp.status_code, resp.text)
    return resp.json()


def kissvdb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kissvdb", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def check_served(c: httpx.Client, expected: dict) -> None:
    for key, (value, revision) in expected["kv"].items():
        item = ok(c.get(f"/v1/state/{key.replace('/', '%2F')}"))
        assert (item["value"], item["revision"]) == (value, revision), key
    assert len(ok(c.get("/v1/state", params={"limit": 1000}))) == len(expected["kv"])
    for path, (doc, revision) in expected["docs"].items():
        coll, doc_id = path.split("/")
        got = ok(c.get(f"/v1/doc/{coll}/{doc_id}"))
        assert (got["doc"], got["revision"]) == (doc, revision), path
    listed = {e["collection"]: e for e in ok(c.get("/v1/vector"))["collections"]}
    assert set(listed) == set(expected["vectors"])
    for name, want in expected["vectors"].items():
        assert listed[name]["status"] == "ready"
        assert {k: listed[name][k] for k in want["info"]} == want["info"], name
        for vid, (vector, meta) in want["vectors"].items():
            got = ok(c.get(f"/v1/vector/{name}/get", params={"id": vid}))
            assert (got["vector"], got["meta"]) == (vector, meta), (name, vid)
        for vid, (vector, _) in list(want["vectors"].items())[:: max(1, len(want["vectors"]) // 8)]:
            hits = ok(c.post(f"/v1/vector/{name}/search", json={"vector": vector, "k": 3}))["hits"]
            assert hits and np.isclose(hits[0]["score"], max(h["score"] for h in hits)), hits
            assert vid in [h["id"] for h in hits], (name, vid, hits)
    assert ok(c.post("/v1/sql/query", json={"sql": "SELECT a FROM t"}))["rows"] == [{"a": 42}]


def test_format1_datadir_is_migrated_at_boot_and_serves_everything(tmp_path):
    unpack("format1-datadir.tar.gz", tmp_path)
    data = tmp_path / "data"
    expected = json.loads((tmp_path / "expected.json").read_text())
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.name != "LOCK")

    for args in (["check", str(data)], ["repair", str(data), "--truncate-at-first-bad", "--yes"]):
        done = kissvdb(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert (data / "FORMAT").read_text() == "kissvdb-format 1\n"  # the WAL tools do not migrate
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.name != "LOCK") == before

    server = ServerProcess(data, log_path=tmp_path / "server.log")
    with server:
        assert "data format 1 -> 2: done" in server.log()
        assert (data / "FORMAT").read_text() == f"kissvdb-format {DATA_FORMAT_VERSION}\n"
        assert not (data / layout.FORMAT1_VECTORS).exists()
        collections = data / layout.VECTORS_DIR / layout.COLLECTIONS_DIR
        assert sorted(p.name for p in collections.iterdir()) == sorted(
            layout.collection_dir_name(n) for n in expected["vectors"])
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as c:
            check_served(c, expected)
            ok(c.post("/v1/vector/Ivf.Col-1/upsert", json={"id": "new", "vector": [1.0] * 8}))
        server.kill9()
        server.start()
        assert "migrating" not in server.log().split("==== start #2")[1]
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as c:
            check_served(c, {**expected, "vectors": {**expected["vectors"], "Ivf.Col-1": {
                **expected["vectors"]["Ivf.Col-1"],
                "info": {**expected["vectors"]["Ivf.Col-1"]["info"], "live_count": 319}}}})
        assert server.stop() == 0
    done = kissvdb("check", str(data))
    assert done.returncode == 0, done.stdout + done.stderr


def test_bricked_format1_datadirs_boot_after_migration(tmp_path):
    unpack("format1-bricked.tar.gz", tmp_path)
    expected = json.loads((tmp_path / "expected.json").read_text())

    server = ServerProcess(tmp_path / "registry-dir", log_path=tmp_path / "dir.log")
    with server:
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as c:
            assert ok(c.get("/v1/state/before"))["value"] == 1
            for vid, (vector, meta) in expected["registry-dir"].items():
                got = ok(c.get("/v1/vector/registry.json/get", params={"id": vid}))
                assert (got["vector"], got["meta"]) == (vector, meta)
        assert server.stop() == 0
        assert "checkpoint failed" not in server.log()
        assert (tmp_path / "registry-dir" / layout.VECTORS_DIR / layout.REGISTRY).is_file()

    server = ServerProcess(tmp_path / "registry-500", log_path=tmp_path / "500.log")
    with server:
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as c:
            listed = {e["collection"]: (e["metric"], e["status"]) for e in ok(c.get("/v1/vector"))["collections"]}
            # The creation that answered 500 was durable: format 2 materializes it.
            assert listed == {"a": ("cosine", "ready"), "registry.json": ("dot", "ready")}
            ok(c.post("/v1/vector/registry.json/upsert", json={"id": "x", "vector": [1.0, 0.0, 0.0]}))
        assert server.stop() == 0
        server.start()
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as c:
            assert ok(c.get("/v1/vector/registry.json/get", params={"id": "x"}))["vector"] == [1.0, 0.0, 0.0]

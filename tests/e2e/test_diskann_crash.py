"""A real `kissvdb serve` killed with SIGKILL in the middle of a DiskANN build: after a restart
the previous build serves (same build, same params), the half-written build is gone, nothing
else is left over, and the server answered other routes while the build ran."""

from __future__ import annotations

import os
import time

import httpx
import numpy as np

from kissvdb import layout
from kissvdb.layout import collection_dir_name

from .server import ServerProcess

DIM = 16
N = 8000
POLL_S = 60.0


def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30)


def ok(resp: httpx.Response):
    assert resp.status_code == 200, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    return resp.json()


def fill(c: httpx.Client, rows: np.ndarray, first: int = 0) -> None:
    for lo in range(0, len(rows), 256):
        items = [{"id": f"v{first + i}", "vector": rows[i].tolist()} for i in range(lo, min(len(rows), lo + 256))]
        ok(c.post("/v1/vector/dk/upsert_batch", json={"items": items}))


def poll(c: httpx.Client, ok_, what: str) -> dict:
    deadline = time.monotonic() + POLL_S
    while True:
        st = ok(c.get("/v1/vector/dk/diskann/status"))
        if ok_(st):
            return st
        assert time.monotonic() < deadline, f"no {what} within {POLL_S:.0f}s: {st}"


def test_kill9_mid_build_leaves_the_previous_build_serving(tmp_path):
    rows = np.random.default_rng(4).standard_normal((N, DIM)).astype(np.float32)
    # No automatic rebuild (a share of 1 is never passed): the test starts the builds itself.
    server = ServerProcess(tmp_path / "data", env={"DISKANN_REBUILD_SHARE": "1"})
    diskann_dir = (server.data_dir / layout.VECTORS_DIR / layout.COLLECTIONS_DIR / collection_dir_name("dk")
                   / "diskann")
    with server:
        with client(server) as c:
            ok(c.post("/v1/vector/dk", json={"dim": DIM, "metric": "cosine", "index": "DISKANN"}))
            fill(c, rows[:2000])
            first = ok(c.post("/v1/vector/dk/diskann/build", json={"wait": True, "max_degree": 16}))["status"]
            assert first["available"] and first["rows"] == 2000
            fill(c, rows[2000:], first=2000)
            # A slow build (the widest graph, one thread), killed once it has written some rows.
            r = ok(c.post("/v1/vector/dk/diskann/build", json={"max_degree": 1024, "build_threads": 1}))
            assert r["status"]["building"] is True
            st = poll(c, lambda s: s["building"] and s["progress"] and s["progress"]["rows_done"] > 0,
                      "build progress")
            assert st["progress"]["rows_done"] < st["progress"]["rows_total"] == N
            # The server answers during the build.
            assert c.get("/v1/health").status_code == 200
            hits = ok(c.post("/v1/vector/dk/search", json={"vector": rows[5000].tolist(), "k": 1}))["hits"]
            assert hits[0]["id"] == "v5000"
        tmp_builds = [f for f in os.listdir(diskann_dir) if f.startswith(".tmp-build-")]
        assert tmp_builds, os.listdir(diskann_dir)  # the build was under way
        server.kill9()
        server.start()
        with client(server) as c:
            # Serving once the boot's replay is reconciled with the build (no rebuild).
            st = poll(c, lambda s: s["available"], "the previous build serving")
            assert st["building"] is False
            assert st["last_built_ms"] == first["last_built_ms"] and st["graph_files"] == first["graph_files"]
            assert st["rows"] == 2000 and st["unindexed_rows"] == N - 2000
            # The build's params were stored when it started (as tune does): the next build uses them.
            assert st["params"]["max_degree"] == 1024
            for i in (7, 1999, 2000, 7999):
                hits = ok(c.post("/v1/vector/dk/search", json={"vector": rows[i].tolist(), "k": 3}))["hits"]
                assert hits[0]["id"] == f"v{i}"
        names = sorted(os.listdir(diskann_dir))
        build = first["graph_files"][0].split("/")[1]
        assert names == sorted(["CURRENT", "params.json", build]), names  # no orphan left
        assert server.stop() == 0

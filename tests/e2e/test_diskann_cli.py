"""`kissvdb diskann build|tune|status` against a real `kissvdb serve` (over HTTP, found by the
settings serve uses) and offline on a stopped server's data dir (the command takes the lock)."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np

from tests.core.test_cli import clean_env, kissvdb

from .server import DEFAULT_API_KEY, ServerProcess

DIM = 16
POLL_S = 60.0


def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30)


def ok(resp: httpx.Response):
    assert resp.status_code == 200, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    return resp.json()


def setup(c: httpx.Client, rows: np.ndarray, name="dk", index="DISKANN") -> None:
    ok(c.post(f"/v1/vector/{name}", json={"dim": DIM, "metric": "cosine", "index": index}))
    for lo in range(0, len(rows), 256):
        items = [{"id": f"v{i}", "vector": rows[i].tolist()} for i in range(lo, min(len(rows), lo + 256))]
        ok(c.post(f"/v1/vector/{name}/upsert_batch", json={"items": items}))


def cli_json(result) -> dict:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_offline_on_a_stopped_servers_data_dir(tmp_path):
    rows = np.random.default_rng(1).standard_normal((1500, DIM)).astype(np.float32)
    server = ServerProcess(tmp_path / "data", env={"DISKANN_REBUILD_SHARE": "1"})
    data = str(server.data_dir)
    with server:
        with client(server) as c:
            setup(c, rows)
            setup(c, rows[:10], name="ivf", index="IVF_FLAT_Q8")
        assert server.stop() == 0
        st = cli_json(kissvdb("diskann", "status", "--collection", "dk", "--data", data))
        assert st["available"] is False and st["params"]["max_degree"] == 48
        out = cli_json(kissvdb("diskann", "build", "--collection", "dk", "--data", data, "--max-degree", "16"))
        assert out["ok"] is True and out["status"]["available"] is True and out["status"]["rows"] == 1500
        assert out["params"]["max_degree"] == 16
        out = cli_json(kissvdb("diskann", "tune", "--collection", "dk", "--data", data, "--search-list", "96"))
        assert out["params"]["search_list_size"] == 96 and out["params"]["max_degree"] == 16
        refused = kissvdb("diskann", "build", "--collection", "ivf", "--data", data)
        assert refused.returncode == 1 and "IVF_FLAT_Q8" in refused.stderr
        missing = kissvdb("diskann", "status", "--collection", "nope", "--data", data)
        assert missing.returncode == 1 and "no vector collection" in missing.stderr
        bad = kissvdb("diskann", "build", "--collection", "dk", "--data", data, "--depth", "3")
        assert bad.returncode == 2
        # The server serves the offline build at its next start, with the tuned params.
        server.start()
        with client(server) as c:
            deadline = time.monotonic() + POLL_S
            while not (st := ok(c.get("/v1/vector/dk/diskann/status")))["available"]:
                assert time.monotonic() < deadline, st
            assert st["last_built_ms"] == out["status"]["last_built_ms"] and st["rows"] == 1500
            assert st["params"]["search_list_size"] == 96
            hits = ok(c.post("/v1/vector/dk/search", json={"vector": rows[700].tolist(), "k": 1}))["hits"]
            assert hits[0]["id"] == "v700"


def test_over_http_to_the_server_holding_the_lock(tmp_path):
    rows = np.random.default_rng(2).standard_normal((8000, DIM)).astype(np.float32)
    server = ServerProcess(tmp_path / "data", env={"DISKANN_REBUILD_SHARE": "1"})
    data = str(server.data_dir)
    with server:
        with client(server) as c:
            setup(c, rows)
        env = clean_env(PORT_RUST_KISS_VDB=str(server.port), API_KEY=DEFAULT_API_KEY)
        # A slow build (widest graph, one thread): the command shows its progress until done.
        result = kissvdb("diskann", "build", "--collection", "dk", "--data", data, "--max-degree", "1024",
                         "--build-threads", "1", env=env)
        out = cli_json(result)
        assert out["status"]["available"] is True and out["status"]["building"] is False
        assert out["status"]["rows"] == 8000 and out["params"]["max_degree"] == 1024
        assert "diskann build dk: " in result.stderr, result.stderr
        st = cli_json(kissvdb("diskann", "status", "--collection", "dk", "--data", data, env=env))
        assert st["last_built_ms"] == out["status"]["last_built_ms"]
        out = cli_json(kissvdb("diskann", "tune", "--collection", "dk", "--url", server.base_url,
                               "--api-key", DEFAULT_API_KEY, "--search-list", "80", env=clean_env()))
        assert out["params"]["search_list_size"] == 80
        with client(server) as c:
            assert ok(c.get("/v1/vector/dk/diskann/status"))["params"]["search_list_size"] == 80
        wrong_key = kissvdb("diskann", "status", "--collection", "dk", "--url", server.base_url,
                            "--api-key", "nope", env=clean_env())
        assert wrong_key.returncode == 1 and "401" in wrong_key.stderr
        unknown = kissvdb("diskann", "status", "--collection", "nope", "--data", data, env=env)
        assert unknown.returncode == 1 and "404" in unknown.stderr
    gone = kissvdb("diskann", "status", "--collection", "dk", "--url", server.base_url, env=clean_env())
    assert gone.returncode == 1 and "no server at" in gone.stderr

"""Start-up of a real `kissvdb serve`: what it creates, with which modes, in which order.

- The data directory is 0700 and every file the server writes in it is 0600 (directories 0700),
  whatever the caller's umask: the WAL, state.sqlite, keys.sqlite, the user's SQL file, vector
  runs and indexes, and the bootstrap admin key, which is never printed.
- On a busy port the server refuses to start before it creates anything: no data directory, no
  bootstrap key minted "once" and then lost.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess

import httpx

from tests.e2e.server import ServerProcess, server_command

TIMEOUT_S = 30


def modes(root) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


def test_everything_the_server_writes_is_private(tmp_path):
    data = tmp_path / "data"
    # A permissive umask, as a careless service manager might leave it.
    server = ServerProcess(data)
    old = os.umask(0o002)
    try:
        server.start()
    finally:
        os.umask(old)
    with server:
        h = server.headers
        with httpx.Client(base_url=server.base_url, headers=h, timeout=TIMEOUT_S) as client:
            assert client.put("/v1/state/k", json={"value": 1}).status_code == 200
            assert client.put("/v1/doc/users/u1", json={"name": "Ada"}).status_code == 200
            assert client.post("/v1/sql/exec", json={"sql": "CREATE TABLE t(x)"}).status_code == 200
            for index in ("HNSW", "IVF_FLAT_Q8"):
                name = index.lower()
                assert client.post(f"/v1/vector/{name}", json={"dim": 3, "metric": "cosine",
                                                               "index": index}).status_code == 200
                items = [{"id": str(i), "vector": [1.0, float(i), 0.5]} for i in range(50)]
                assert client.post(f"/v1/vector/{name}/upsert_batch", json={"items": items}).status_code == 200
        key = (data / "bootstrap-admin.key").read_text().strip()
        assert key.startswith("rk_live_")
    # Stopped: the final checkpoint and index saves have written their files too.
    assert key not in server.log()
    assert "bootstrap-admin.key" in server.log()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    found = modes(data)
    assert any(p.startswith("events-") for p in found) and "state.sqlite" in found
    assert "keys.sqlite" in found and os.path.join("sqlite", "user.db") in found
    loose = {p: oct(m) for p, m in found.items()
             if m != (0o700 if os.path.isdir(data / p) else 0o600)}
    assert loose == {}, f"files readable by others: {loose}"


def test_a_busy_port_refuses_before_creating_anything(tmp_path):
    data = tmp_path / "fresh"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        command = server_command(data)
        command[command.index("--port") + 1] = str(port)
        env = {**os.environ, "API_KEY": "k"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2, done.stderr
    assert "cannot listen" in done.stderr
    assert not data.exists(), "the data directory was created before the port was ours"

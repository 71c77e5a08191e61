"""`python -m tests.e2e.health_probe URL SERVER_PID`: time GET /v1/health, one request after another
on one keep-alive connection, until stdin closes; then print one JSON line per probe. `Prober`
runs it from a test; `run_threads` runs a test's client threads.

A process of its own, so that the test's client threads (which parse multi-megabyte answers)
never hold its GIL: a slow probe is the server's doing or the machine's, not the prober's.
Each line: {"status", "wall_s", "held_s", "start_s"} (`start_s` on time.monotonic(), which is
the same clock in every process of the machine); `held_s` is the wall time minus the time
the server's event loop thread (the server's main thread) and this prober's thread sat in the
kernel's run queue waiting for a CPU, which is load from other processes on a shared box
(tests/loop_hold.py explains the correction). It prints `ready` first, once connected.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.loop_hold import RunQueueWait

TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    url, server_pid = argv[0], int(argv[1])
    server_loop = RunQueueWait(server_pid, server_pid)
    me = RunQueueWait()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    probes = []
    with httpx.Client(timeout=TIMEOUT_S) as client:
        client.get(url)  # connect before saying ready
        print("ready", flush=True)
        while not stop.is_set():
            waits = (server_loop.ns(), me.ns())
            started = time.monotonic()
            status = client.get(url).status_code
            wall = time.monotonic() - started
            after = (server_loop.ns(), me.ns())
            queued = sum((b - a) for a, b in zip(waits, after) if a is not None and b is not None) / 1e9
            probes.append({"status": status, "wall_s": wall, "held_s": wall - queued, "start_s": started})
    for probe in probes:
        print(json.dumps(probe))
    return 0


class Prober:
    """This module in its own process, on its own connection to `server` (a ServerProcess)."""

    def __init__(self, server):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.health_probe", server.url("/v1/health"), str(server.proc.pid)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def finish(self) -> list[dict]:
        out, _ = self.proc.communicate(input="", timeout=CLIENT_TIMEOUT_S)
        assert self.proc.returncode == 0
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def run_threads(*targets) -> None:
    """Run each target in a thread of its own; re-raise the first failure in the caller's."""
    errors: list[BaseException] = []

    def guarded(fn):
        try:
            fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client thread did not finish"
    if errors:
        raise errors[0]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

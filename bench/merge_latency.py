"""PUT latency at concurrency 1 while an HNSW collection's segments merge, per HNSW_MERGE_THREADS.

A merge is background work that runs for minutes on a big collection. This measures what it
costs the requests served meanwhile. It builds a data dir once: an HNSW collection of `--rows`
seeded random 384-d vectors, sent as JSON upsert_batch of 100, which leaves several sealed
segments. Then, for each value of `--threads`, it starts `kissvdb serve` on a fresh copy of that
data dir with HNSW_MERGE_THREADS set, asks for `POST /v1/vector/ingest/compact` (which merges
every segment into one), and sends single PUTs one after another on one connection for up to
`--seconds` while the merge runs.

    .venv/bin/python bench/merge_latency.py [--rows 240000] [--threads 2,1] [--seconds 25]

Reports, per value: the PUTs served in the window, their p50 / p99 / max latency, and how long
the merge took. The values run one after the other on the same box, so read them side by side.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

H = {"Authorization": "Bearer dev", "Content-Type": "application/json"}
DIM = 384


def serve(data: Path, port: int, env: dict[str, str]) -> tuple[subprocess.Popen, http.client.HTTPConnection]:
    proc = subprocess.Popen([sys.executable, "-m", "kissvdb", "serve", "--port", str(port), "--data", str(data),
                             "--log-level", "warning"], env={**os.environ, "REQUEST_TIMEOUT_SECS": "3600", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
            conn.request("GET", "/v1/health")
            conn.getresponse().read()
            return proc, conn
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("kissvdb serve did not start")
            time.sleep(0.1)


def call(conn, method: str, path: str, body: bytes) -> None:
    conn.request(method, path, body, H)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: {r.status}")


def build(data: Path, rows: int, port: int) -> None:
    proc, conn = serve(data, port, {})
    try:
        call(conn, "POST", "/v1/vector/ingest", orjson.dumps({"dim": DIM, "metric": "cosine", "index": "HNSW"}))
        rng = np.random.default_rng(20261207)
        t0 = time.monotonic()
        for b in range(0, rows, 100):
            vecs = rng.standard_normal((100, DIM), dtype=np.float32).round(4)
            items = [{"id": f"v{b + i}", "vector": v} for i, v in enumerate(vecs)]
            call(conn, "POST", "/v1/vector/ingest/upsert_batch",
                 orjson.dumps({"items": items}, option=orjson.OPT_SERIALIZE_NUMPY))
            if b % 20000 == 0:
                print(f"  built {b:,} / {rows:,} rows ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        proc.terminate()
        proc.wait()


def measure(base: Path, work: Path, threads: int, seconds: float, port: int) -> str:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work, symlinks=True)
    proc, conn = serve(work, port, {"HNSW_MERGE_THREADS": str(threads)})
    try:
        done = threading.Event()
        took: list[float] = []

        def compact() -> None:
            t = time.monotonic()
            call(http.client.HTTPConnection("127.0.0.1", port, timeout=3600), "POST", "/v1/vector/ingest/compact", b"{}")
            took.append(time.monotonic() - t)
            done.set()

        threading.Thread(target=compact, daemon=True).start()
        time.sleep(1.0)  # let the merge start; what follows is measured while it runs
        lat = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds and not done.is_set():
            t = time.perf_counter()
            call(conn, "PUT", f"/v1/state/k{len(lat)}", b'{"value":"x"}')
            lat.append(time.perf_counter() - t)
        done.wait()
        lat.sort()
        n = len(lat)
        return (f"| {threads} | {n:,} | {lat[n // 2] * 1e3:.2f} | {lat[int(n * 0.99)] * 1e3:.2f} | "
                f"{lat[-1] * 1e3:.1f} | {took[0]:.0f} |")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=240_000)
    ap.add_argument("--threads", default="2,1", help="HNSW_MERGE_THREADS values, in order")
    ap.add_argument("--seconds", type=float, default=25.0, help="longest PUT window per value")
    ap.add_argument("--port", type=int, default=18961)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        base, work = Path(tmp) / "base", Path(tmp) / "work"
        print(f"building {args.rows:,} rows ...", flush=True)
        build(base, args.rows, args.port)
        print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
        print("| HNSW_MERGE_THREADS | PUTs in the window | p50 ms | p99 ms | max ms | merge s |")
        print("|---|---|---|---|---|---|")
        for t in (int(x) for x in args.threads.split(",")):
            print(measure(base, work, t, args.seconds, args.port + t), flush=True)


if __name__ == "__main__":
    main()

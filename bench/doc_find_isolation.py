"""Document PUT latency while finds run back to back (issue 9, defect 6), over HTTP.

A real `kissvdb serve` holds 400 documents of ~60 KB (1,200 fields each). Then document PUTs are
timed, one after another on their own connection, in three phases of the same run: no finds
(the baseline), two clients sending the report's find back to back (`$in` of 800 objects and
`$nin` of 150), and two clients sending the slowest legal find back to back (256 conditions on
late fields, matching nothing, stopped by SQL_TIME_LIMIT_MS). It prints each phase's PUT p50,
p99 and max, and their ratio to the baseline. The report measured 5.3 s for one such find and
PUTs waiting up to 6 s; this script on the code before finds moved to read connections
(commit 39e5694, `--puts 10`, same box) gave PUT p50 6,043 ms (1,324x the baseline) with the
report's find and 4,297 ms with the slowest one.

    .venv/bin/python bench/doc_find_isolation.py [--puts 200] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import httpx
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from report import REPO, progress, table, write_section  # noqa: E402

sys.path.insert(0, str(REPO))
from tests.e2e.server import ServerProcess  # noqa: E402

DOCS = 400
FIELDS = 1200
TIME_LIMIT_MS = 3000


def doc(i: int) -> bytes:
    body = {f"f{j:04d}": "y" * 40 for j in range(FIELDS)}
    body["k"] = {"o": i}
    body["n"] = i
    return orjson.dumps(body)


REPORT_FIND = {"filter": {"k": {"$in": [{"o": j} for j in range(800)], "$nin": [{"o": j} for j in range(150)]}}}
SLOWEST_FIND = {"filter": {**{f"f{FIELDS - 1 - j:04d}": {"$ne": 1} for j in range(255)}, "n": {"$lt": -1}},
                "limit": 100}


def seed(server: ServerProcess) -> None:
    headers = {**server.headers, "Content-Type": "application/json"}

    def put_range(start: int) -> None:
        with httpx.Client(timeout=60, headers=headers) as client:
            for i in range(start, DOCS, 4):
                assert client.put(server.url(f"/v1/doc/big/d{i:04d}"), content=doc(i)).status_code == 200

    threads = [threading.Thread(target=put_range, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def time_puts(server: ServerProcess, phase: str, n: int, find: dict | None) -> tuple[list[float], list[float]]:
    """(PUT latencies, find latencies) with two clients running `find` back to back meanwhile."""
    headers = {**server.headers, "Content-Type": "application/json"}
    stop = threading.Event()
    sending = threading.Event()
    find_times: list[float] = []

    def finder() -> None:
        with httpx.Client(timeout=60, headers=headers) as client:
            while not stop.is_set():
                sending.set()
                t0 = time.perf_counter()
                status = client.post(server.url("/v1/doc/big/find"), content=orjson.dumps(find)).status_code
                assert status in (200, 400), status
                find_times.append(time.perf_counter() - t0)

    finders = [threading.Thread(target=finder) for _ in range(2 if find else 0)]
    for t in finders:
        t.start()
    latencies = []
    body = orjson.dumps({"v": "x" * 1000})
    with httpx.Client(timeout=60, headers=headers) as client:
        if finders:
            sending.wait(timeout=10)
        for i in range(n):
            t0 = time.perf_counter()
            assert client.put(server.url(f"/v1/doc/{phase}/p{i}"), content=body).status_code == 200
            latencies.append(time.perf_counter() - t0)
    stop.set()
    for t in finders:
        t.join()
    return latencies, find_times


def summary(xs: list[float]) -> tuple[float, float, float]:
    xs = sorted(xs)
    return statistics.median(xs) * 1000, xs[int(len(xs) * 0.99) - 1] * 1000, xs[-1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--puts", type=int, default=200)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kissvdb-findiso-") as tmp:
        env = {"SQL_TIME_LIMIT_MS": str(TIME_LIMIT_MS)}
        with ServerProcess(os.path.join(tmp, "data"), env=env, log_path=os.path.join(tmp, "server.log")) as server:
            progress(f"seeding {DOCS} documents of {len(doc(0)):,} bytes")
            seed(server)
            rows = []
            base = None
            phases = (("none", "no finds", None), ("report", "report's $in/$nin find", REPORT_FIND),
                      ("slowest", "slowest legal find", SLOWEST_FIND))
            for phase, name, find in phases:
                progress(f"timing {args.puts} PUTs: {name}")
                puts, finds = time_puts(server, phase, args.puts, find)
                p50, p99, worst = summary(puts)
                base = base or (p50, p99, worst)
                find_p50 = f"{statistics.median(finds) * 1000:.0f}" if finds else "-"
                rows.append([name, f"{p50:.2f}", f"{p99:.2f}", f"{worst:.1f}",
                             f"{p50 / base[0]:.2f}x", f"{p99 / base[1]:.2f}x", len(finds), find_p50])
    text = table(["finds meanwhile", "PUT p50 ms", "PUT p99 ms", "PUT max ms", "p50 vs none", "p99 vs none",
                  "finds run", "find p50 ms"], rows)
    text += (f"\n\n{DOCS} documents of ~60 KB; PUTs of 1 KB documents on their own connection; two "
             f"clients sending finds back to back; SQL_TIME_LIMIT_MS={TIME_LIMIT_MS}.")
    print(text)
    if not args.no_write:
        write_section("doc_find_isolation", "Document PUT latency while finds run (bench/doc_find_isolation.py)", text)


if __name__ == "__main__":
    main()

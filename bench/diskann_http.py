"""A DISKANN collection in a real `kissvdb serve` (issue 11 targets over HTTP):

- `/v1/health` latency (p50/p99/max over HTTP, one client, back to back) while a DiskANN build
  runs, against the same probe on the same idle server just before: target p99 < 50 ms during
  the build; a k=10 search is probed the same way (the server must keep answering every route);
- restart to serving with a built index: SIGTERM, start, then the time until the status says
  `available` and a search answers (target < 10 s), and that no rebuild ran (same
  `last_built_ms`, not `building`).

Rows: bench/diskann_libs.py `make_rows` (the 20,000 real MiniLM rows, then seeded perturbations
on their manifold), loaded as CBOR float32 batches. Data dir in bench/results/diskann-http-N
(gitignored), fresh per run.

    .venv/bin/python bench/diskann_http.py --rows 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

import cbor2
import httpx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import report  # noqa: E402
from diskann_libs import DATA, STEM, make_rows  # noqa: E402
from tests.e2e.server import ServerProcess  # noqa: E402

C = "/v1/vector/big"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def load(c: httpx.Client, n: int) -> np.ndarray:
    real = np.load(os.path.join(DATA, f"{STEM}.base.f16.npy")).astype(np.float32)
    done, t0 = 0, time.monotonic()
    probe = None
    for chunk in make_rows(real, n):
        chunk = np.ascontiguousarray(chunk, dtype="<f4")
        if probe is None:
            probe = chunk[:64].copy()
        for lo in range(0, len(chunk), 256):
            part = chunk[lo:lo + 256]
            body = cbor2.dumps({"items": [{"id": f"r{done + lo + i}", "vector": part[i].tobytes()}
                                          for i in range(len(part))]})
            r = c.post(f"{C}/upsert_batch", content=body, headers={"content-type": "application/cbor"})
            assert r.status_code == 200, r.text
        done += len(chunk)
        report.progress(f"loaded {done:,}/{n:,} rows ({time.monotonic() - t0:.0f} s)")
    return probe


def probe_while(c: httpx.Client, queries: np.ndarray, until, searches: bool = True) -> dict:
    """Health and search latencies, back to back, until `until()` (asked every 0.25 s)."""
    health, search = [], []
    i = 0
    next_check = 0.0
    while True:
        now = time.monotonic()
        if now >= next_check:
            if until():
                break
            next_check = now + 0.25
        t = time.perf_counter()
        assert c.get("/v1/health").status_code == 200
        health.append(time.perf_counter() - t)
        if not searches:
            continue
        q = queries[i % len(queries)]
        i += 1
        t = time.perf_counter()
        r = c.post(f"{C}/search", json={"vector": q.tolist(), "k": 10})
        search.append(time.perf_counter() - t)
        assert r.status_code == 200 and len(r.json()["hits"]) == 10, r.text
    return {"health": health, "search": search}


def summary(xs: list[float]) -> str:
    if not xs:
        return "not probed"
    return (f"{len(xs):,} probes: p50 {statistics.median(xs) * 1e3:.1f} ms, p99 {pct(xs, 99) * 1e3:.1f} ms, "
            f"max {max(xs) * 1e3:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--idle-s", type=float, default=20.0, help="probe the idle server this long first")
    ap.add_argument("--no-search-probes", dest="searches", action="store_false",
                    help="probe /v1/health only (at 1M rows an exact search before the build takes a core)")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    work = os.path.join(HERE, "results", f"diskann-http-{args.rows}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    server = ServerProcess(os.path.join(work, "data"), env={"DISKANN_REBUILD_SHARE": "1"},
                           log_path=os.path.join(work, "server.log"))
    res = {}
    with server:
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=120) as c:
            assert c.post(C, json={"dim": 384, "metric": "cosine", "index": "DISKANN"}).status_code == 200
            queries = load(c, args.rows)
            t_end = time.monotonic() + args.idle_s
            res["idle"] = probe_while(c, queries, lambda: time.monotonic() > t_end, args.searches)
            report.progress("idle: health " + summary(res["idle"]["health"]))
            t0 = time.monotonic()
            st = c.post(f"{C}/diskann/build", json={}).json()["status"]
            assert st["building"], st
            res["build"] = probe_while(c, queries, lambda: not c.get(f"{C}/diskann/status").json()["building"],
                                       args.searches)
            res["build_s"] = time.monotonic() - t0
            built = c.get(f"{C}/diskann/status").json()
            assert built["available"] and built["rows"] == args.rows, built
            res["built"] = built
            report.progress(f"build {res['build_s']:.1f} s; health " + summary(res["build"]["health"]))
        assert server.stop() == 0
        t0 = time.monotonic()
        server.start()
        t_listen = time.monotonic() - t0
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=120) as c:
            while not (st := c.get(f"{C}/diskann/status").json())["available"]:
                assert time.monotonic() - t0 < 120, st
            r = c.post(f"{C}/search", json={"vector": queries[0].tolist(), "k": 10})
            assert r.status_code == 200 and len(r.json()["hits"]) == 10
            res["restart_s"] = time.monotonic() - t0
            res["restart_listen_s"] = t_listen
            res["restart_status"] = st
        assert server.stop() == 0
    body = render(args, res)
    print(body)
    if not args.no_docs:
        report.write_section(f"diskann_http_{args.rows}", f"DiskANN over HTTP, {args.rows:,} rows (issue 11)", body)


def render(args, res) -> str:
    idle, build = res["idle"], res["build"]
    b = res["built"]
    st = res["restart_status"]
    no_rebuild = st["last_built_ms"] == b["last_built_ms"] and not st["building"]
    p99_idle, p99_build = pct(idle["health"], 99) * 1e3, pct(build["health"], 99) * 1e3
    rows = [
        ["/v1/health during the build", summary(build["health"]), "p99 < 50 ms", report.verdict(p99_build < 50)],
        ["/v1/health, idle server just before", summary(idle["health"]), "—", "n/a"],
        ["p99 ratio, during build / idle", f"{p99_build:.1f} / {p99_idle:.1f} = {p99_build / p99_idle:.2f}", "—", "n/a"],
        ["search k=10 during the build", summary(build["search"]), "—", "n/a"],
        ["search k=10, idle (exact scan: no build yet)", summary(idle["search"]), "—", "n/a"],
        ["build (background, wall)", f"{res['build_s']:.1f} s, {args.rows / res['build_s']:,.0f} rows/s, "
         f"params {b['params']}", "—", "n/a"],
        ["restart to serving: start + status available + one search", f"{res['restart_s']:.2f} s "
         f"(listening after {res['restart_listen_s']:.2f} s)", "< 10 s", report.verdict(res["restart_s"] < 10)],
        ["no rebuild at restart (same last_built_ms, not building)", str(no_rebuild), "True",
         report.verdict(no_rebuild)],
    ]
    what = "health, then a k=10 search with a real query" if args.searches else "health only"
    return (f"rows {args.rows:,} x 384 (bench/diskann_libs.py make_rows), one client, back-to-back probes "
            f"({what}), over HTTP/1.1 keep-alive on 127.0.0.1.\n\n"
            + report.table(["measure", "value", "target", "verdict"], rows))


if __name__ == "__main__":
    main()

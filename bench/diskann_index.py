"""kissvdb's DiskANN index (kissvdb/vectors/diskann) against the issue 11 targets, each as a
ratio to a baseline measured in the same run.

- recall@10 and q/s (search thread CPU time, one query per call, k=10) over a sweep of
  search_list_size, against kissvdb's in-memory HNSW (kissvdb/vectors/hnsw.py, M16,
  ef_construction 200) swept over ef: q/s at recall 0.95 and 0.98, interpolated, as a ratio;
- build rate (rows/s, wall) of DiskAnnIndex.build against usearch's own: the same rows, the same
  graph parameters, the same chunks and threads, with nothing else (no normalisation, no rows
  file, no fsync); runs alternate, the order rotating, medians;
- GIL during a build: a Python loop's rate in the main thread while the build runs in a thread,
  over its rate while a GIL-releasing control (hashlib) runs;
- `--rows 1000000` (the committed 1M set: bench/diskann_libs.py `make_rows`, recall on the 500
  real queries): build time, restart to serving (a fresh process opens the built index and
  answers one query; no rebuild), RssAnon and RssFile from /proc/self/status, cold (the index's
  files evicted from the page cache with posix_fadvise DONTNEED before the open) and warm;
  `--hnsw` adds the HNSW baseline there too (built once, 1.7 GB of RAM at 1M, kept in the work dir).

Every measurement runs in a fresh subprocess. Work files go to bench/results/diskann-N (gitignored;
the same data set bench/diskann_libs.py uses; our index in its `ours/`); `--reuse` keeps an index already built there.

    .venv/bin/python bench/diskann_index.py
    .venv/bin/python bench/diskann_index.py --rows 1000000 --hnsw --reuse
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import report  # noqa: E402
from diskann_libs import hash_for, prepare, qps_at, rss, spin_rate  # noqa: E402

K = 10
TARGETS = (0.95, 0.98)
OURS_BREADTHS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
HNSW_BREADTHS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def progress(msg: str) -> None:
    report.progress(msg)


def load(work: str):
    base = np.load(os.path.join(work, "base.f32.npy"), mmap_mode="r")
    return base, np.load(os.path.join(work, "queries.npy")), np.load(os.path.join(work, "gt.npy"))[:, :K]


def params(args_json: str):
    from kissvdb.vectors.diskann import DiskAnnParams
    return DiskAnnParams(**json.loads(args_json)).clamped()


def index_dir(work: str) -> str:
    return os.path.join(work, "ours", "diskann")


# ---- workers ----------------------------------------------------------------------------------


def worker_build_ours(work: str, p_json: str, rows: str, into: str, spin: str = "0") -> dict:
    """Build our index; with spin "1" the main thread counts a Python loop meanwhile (the GIL
    check; it takes a CPU, so rates are only compared from runs without it)."""
    rows = int(rows)
    from kissvdb.vectors.diskann import DiskAnnIndex
    base, _, _ = load(work)
    base = base[:rows]
    p = params(p_json)
    shutil.rmtree(into, ignore_errors=True)
    idx = DiskAnnIndex.open(into, base.shape[1], "cosine", p)
    last = [time.monotonic()]

    def log(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 15:
            last[0] = time.monotonic()
            progress(f"build ours: {done:,}/{total:,} rows")

    out: dict = {}

    def run() -> None:
        t = time.perf_counter()
        idx.build(np.arange(rows), base, progress=log)
        out["wall"] = time.perf_counter() - t

    th = threading.Thread(target=run)
    th.start()
    spin_during = spin_rate(lambda: not th.is_alive()) if spin == "1" else None
    th.join()
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(into) for f in fs)
    return {"wall": out["wall"], "rate": rows / out["wall"], "rows": rows, "bytes": size, "peak_rss": hwm,
            "spin_during_build": spin_during}


def worker_build_raw(work: str, p_json: str, rows: str) -> dict:
    rows = int(rows)
    """usearch alone: the same parameters, chunks and threads as DiskAnnIndex.build."""
    from usearch.index import Index
    from kissvdb.vectors.diskann.builder import chunk_size
    base, _, _ = load(work)
    base = base[:rows]
    p = params(p_json)
    index = Index(ndim=base.shape[1], metric="ip", dtype="i8", connectivity=p.connectivity,
                  expansion_add=p.expansion_add, expansion_search=p.expansion_search, enable_key_lookups=False)
    step = chunk_size(rows)
    chunks = [np.ascontiguousarray(base[lo:lo + step]) for lo in range(0, rows, step)]  # read before timing
    t = time.perf_counter()
    for i, chunk in enumerate(chunks):
        index.add(np.arange(i * step, i * step + len(chunk), dtype=np.uint64), chunk, threads=p.build_threads)
    wall = time.perf_counter() - t
    return {"wall": wall, "rate": rows / wall, "rows": rows}


def worker_gil_control() -> dict:
    th = threading.Thread(target=lambda: hash_for(2.0))
    th.start()
    rate = spin_rate(lambda: not th.is_alive())
    th.join()
    return {"control": rate}


def evict(path: str) -> None:
    """Drop the clean pages of every file under `path` from the page cache (cold start)."""
    for r, _d, fs in os.walk(path):
        for f in fs:
            fd = os.open(os.path.join(r, f), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def sweep(search, set_breadth, breadths, queries, gt) -> list[dict]:
    out = []
    for b in breadths:
        set_breadth(b)
        c, w = time.thread_time(), time.perf_counter()
        res = [search(q) for q in queries]
        cpu, wall = time.thread_time() - c, time.perf_counter() - w
        hits = sum(len(set(r) & set(g.tolist())) for r, g in zip(res, gt))
        out.append({"breadth": b, "qps": len(queries) / cpu, "qps_wall": len(queries) / wall,
                    "recall": hits / (K * len(queries))})
    return out


def worker_search_ours(work: str, cold: str, cold_breadth: str) -> dict:
    before = rss()
    t = time.perf_counter()
    from kissvdb.vectors.diskann import DiskAnnIndex
    queries = np.load(os.path.join(work, "queries.npy"))
    gt = np.load(os.path.join(work, "gt.npy"))[:, :K]
    if cold == "cold":
        evict(index_dir(work))
        t = time.perf_counter()
    idx = DiskAnnIndex.open(index_dir(work), queries.shape[1], "cosine")
    opened = time.perf_counter() - t
    idx.search(queries[0], K)
    serving = time.perf_counter() - t
    out = {"open_s": opened, "serving_s": serving, "rss_start": before, "rss_opened": rss()}

    def set_breadth(b: int) -> None:
        idx.graph.index.expansion_search = b

    def search(q):
        return idx.search(q, K)[0].tolist()

    if cold == "cold":  # the first pass reads the index from disk
        out["cold"] = sweep(search, set_breadth, [int(cold_breadth)], queries, gt)[0]
        out["rss_cold"] = rss()
    set_breadth(max(OURS_BREADTHS))
    for q in queries:
        search(q)
    out["sweep"] = sweep(search, set_breadth, OURS_BREADTHS, queries, gt)
    out["rss_warm"] = rss()
    return out


def hnsw_file(work: str) -> str:
    return os.path.join(work, "kissvdb-hnsw.bin")


def worker_build_hnsw(work: str, threads: str) -> dict:
    """kissvdb's HNSW over every row, one sealed segment, saved for the search rounds."""
    from kissvdb.vectors.hnsw import HnswParams, build_segment
    base, _, _ = load(work)
    p = HnswParams(threads=int(threads))
    t = time.perf_counter()
    seg = build_segment(base.shape[1], np.arange(len(base)), np.ascontiguousarray(base, dtype=np.float32), p)
    build = time.perf_counter() - t
    seg.index.save_index(hnsw_file(work))
    return {"build_s": build, "rate": len(base) / build, "threads": int(threads)}


def worker_search_hnsw(work: str) -> dict:
    from kissvdb.vectors.hnsw import HnswIndex, HnswParams, Segment, load_index
    queries = np.load(os.path.join(work, "queries.npy"))
    gt = np.load(os.path.join(work, "gt.npy"))[:, :K]
    p = HnswParams()
    seg = Segment(load_index(hnsw_file(work), queries.shape[1], p), hnsw_file(work), sealed=True)
    idx = HnswIndex(queries.shape[1], p, sealed=[seg])
    breadth = [64]

    def search(q):
        return idx.search_all_live(q, K, ef=breadth[0])[0][0].tolist()

    def set_breadth(b: int) -> None:
        breadth[0] = b

    set_breadth(max(HNSW_BREADTHS))
    for q in queries:
        search(q)
    return {"sweep": sweep(search, set_breadth, HNSW_BREADTHS, queries, gt), "rss_warm": rss()}


WORKERS = {"build_ours": worker_build_ours, "build_hnsw": worker_build_hnsw, "build_raw": worker_build_raw, "gil_control": worker_gil_control,
           "search_ours": worker_search_ours, "search_hnsw": worker_search_hnsw}


def run_worker(*args: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *map(str, args)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit(f"worker {args[0]} failed ({p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---- driver -----------------------------------------------------------------------------------


def mib(b: float) -> str:
    return f"{b / 2**20:,.1f}"


def fmt(x, spec=",.0f") -> str:
    return "—" if x is None else format(x, spec)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build-rounds", type=int, default=3, help="alternating build pairs (ours, usearch)")
    ap.add_argument("--build-rate-rows", type=int, default=200_000,
                    help="rows of the build-rate pairs (a prefix of the set; at most --rows)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-degree", type=int, default=48)
    ap.add_argument("--search-list-size", type=int, default=64)
    ap.add_argument("--cold-breadth", type=int, default=192)
    ap.add_argument("--reuse", action="store_true", help="keep the indexes already built in the work dir")
    ap.add_argument("--hnsw", action="store_true", help="also build the HNSW baseline above 100,000 rows")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](*args.worker[1:])))
        return
    run(args)


def run(args) -> None:
    work = os.path.join(HERE, "results", f"diskann-{args.rows}")  # the data set diskann_libs.py makes
    os.makedirs(work, exist_ok=True)
    prepare(work, args.rows)
    p_json = json.dumps({"max_degree": args.max_degree, "build_threads": args.threads,
                         "search_list_size": args.search_list_size})
    res: dict = {"rows": args.rows, "load_before": report.machine()["load"]}
    built = os.path.exists(os.path.join(index_dir(work), "CURRENT"))
    if not (args.reuse and built):
        progress(f"build ours: {args.rows:,} rows, {args.threads} threads")
        res["build"] = run_worker("build_ours", work, p_json, args.rows, index_dir(work))
        with open(os.path.join(work, "build.json"), "w") as f:
            json.dump(res["build"], f)
    else:
        with open(os.path.join(work, "build.json")) as f:
            res["build"] = json.load(f)
    if args.rows <= 100_000 or args.hnsw:
        if args.reuse and os.path.exists(os.path.join(work, "hnsw_build.json")) and os.path.exists(hnsw_file(work)):
            with open(os.path.join(work, "hnsw_build.json")) as f:
                res["hnsw_build"] = json.load(f)
        else:
            progress(f"build kissvdb HNSW: {args.rows:,} rows, {args.threads} threads")
            res["hnsw_build"] = run_worker("build_hnsw", work, args.threads)
            with open(os.path.join(work, "hnsw_build.json"), "w") as f:
                json.dump(res["hnsw_build"], f)
    res["gil_control"] = med([run_worker("gil_control")["control"] for _ in range(3)])
    one_thread = json.dumps({**json.loads(p_json), "build_threads": 1})
    gil_rows = min(args.rows, 20_000)
    res["gil_build"] = med([run_worker("build_ours", work, one_thread, gil_rows, os.path.join(work, "gil-ours"),
                                       "1")["spin_during_build"] for _ in range(3)])
    rate_rows = min(args.rows, args.build_rate_rows)
    pairs = []
    for r in range(args.build_rounds):
        progress(f"build rate round {r + 1}/{args.build_rounds} ({rate_rows:,} rows)")
        pair = {}
        for who in (("ours", "raw") if r % 2 == 0 else ("raw", "ours")):
            pair[who] = (run_worker("build_ours", work, p_json, rate_rows, os.path.join(work, "rate-ours"))
                         if who == "ours" else run_worker("build_raw", work, p_json, rate_rows))["rate"]
        pairs.append(pair)
    for d in ("rate-ours", "gil-ours"):
        shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    res["build_pairs"] = pairs
    rounds = []
    for r in range(args.rounds):
        progress(f"search round {r + 1}/{args.rounds}")
        one = {"ours": run_worker("search_ours", work, "cold" if r == 0 else "warm", args.cold_breadth)}
        if res.get("hnsw_build"):
            one["hnsw"] = run_worker("search_hnsw", work)
        rounds.append(one)
    res["rounds"] = rounds
    res["load_after"] = report.machine()["load"]
    with open(os.path.join(HERE, "results", f"diskann_index-{args.rows}.json"), "w") as f:
        json.dump(res, f)
    body = render(args, res)
    print(body)
    if not args.no_docs:
        name = "diskann_index" if args.rows == 20_000 else f"diskann_index_{args.rows}"
        report.write_section(name, f"DiskANN index against the targets, {args.rows:,} rows (issue 11)", body)


CGROUP_NOTE = ("Not measured: q/s under a memory limit of half the float32 size. The box's only memory "
               "cgroup (v1) is the one the session sandbox runs in, and systemd-run would move the process "
               "out of it; neither is ours to change. The cold figures in the table evict the index's own files "
               "from the page cache (posix_fadvise DONTNEED) instead: that measures reading from disk, "
               "not a limit.")


def render(args, res) -> str:
    rounds = res["rounds"]
    ours = [r["ours"] for r in rounds]
    hnsw = [r["hnsw"] for r in rounds if "hnsw" in r]
    lines = [f"rows {args.rows:,} x 384, 500 real queries, k={K}, 1 search thread, {args.rounds} rounds (medians); "
             f"params max_degree {args.max_degree} (usearch connectivity {args.max_degree // 2}), build threads "
             f"{args.threads}; load average before {res['load_before']}, after {res['load_after']}", "",
             "| index | breadth | recall@10 | q/s (CPU) | q/s (wall) |", "|---|---:|---:|---:|---:|"]
    for label, runs in (("diskann (ours)", ours), ("kissvdb HNSW (in memory)", hnsw)):
        for i, b in enumerate(runs[0]["sweep"] if runs else []):
            pts = [r["sweep"][i] for r in runs]
            lines.append(f"| {label} | {b['breadth']} | {med([p['recall'] for p in pts]):.3f} | "
                         f"{med([p['qps'] for p in pts]):,.0f} | {med([p['qps_wall'] for p in pts]):,.0f} |")
    lines += ["", "| measure | value | target | verdict |", "|---|---:|---:|---|"]
    best = max(med([r["sweep"][i]["recall"] for r in ours]) for i in range(len(OURS_BREADTHS)))
    lines.append(f"| recall@10, best of the sweep | {best:.3f} | >= 0.95 | {report.verdict(best >= 0.95)} |")
    for t in TARGETS:
        mine = [qps_at(r["sweep"], t) for r in ours]
        if hnsw:
            ratio = med([m / qps_at(h["sweep"], t) if m and qps_at(h["sweep"], t) else None
                         for m, h in zip(mine, hnsw)])
            lines.append(f"| q/s at recall {t}: ours / kissvdb HNSW | {fmt(med(mine))} / "
                         f"{fmt(med([qps_at(h['sweep'], t) for h in hnsw]))} = {fmt(ratio, '.2f')} | >= 0.5 | "
                         f"{report.verdict(None if ratio is None else ratio >= 0.5) if t == 0.95 else 'n/a'} |")
        else:
            lines.append(f"| q/s at recall {t} (no HNSW baseline at this size) | {fmt(med(mine))} | — | n/a |")
    pairs = res["build_pairs"]
    ratio = med([p["ours"] / p["raw"] for p in pairs])
    if pairs:
        lines.append(f"| build rate, ours / usearch alone ({min(args.rows, args.build_rate_rows):,} rows, "
                     f"{args.threads} threads) | {fmt(med([p['ours'] for p in pairs]))} / "
                     f"{fmt(med([p['raw'] for p in pairs]))} rows/s = {ratio:.2f} | >= 0.5 | "
                     f"{report.verdict(ratio >= 0.5)} |")
    b = res["build"]
    gil = res["gil_build"] / res["gil_control"]
    if res.get("hnsw_build"):
        h = res["hnsw_build"]
        lines.append(f"| kissvdb HNSW build (same rows, {h['threads']} threads), for scale | {h['build_s']:,.1f} s, "
                     f"{h['rate']:,.0f} rows/s | — | n/a |")
    lines.append(f"| full build ({b['rows']:,} rows) | {b['wall']:,.1f} s, {b['rate']:,.0f} rows/s, files "
                 f"{mib(b['bytes'])} MiB, peak RSS {mib(b['peak_rss'])} MiB | — | n/a |")
    lines.append(f"| GIL during a 1-thread build of {min(args.rows, 20_000):,} rows: a Python loop's rate beside it / "
                 f"beside hashlib (1.0 = released) | {gil:.2f} | — | n/a |")
    warm = [o for o in ours[1:]] or ours
    serving = med([o["serving_s"] for o in warm])
    lines.append(f"| restart to serving: open + first answer, warm page cache | {serving:.2f} s | < 10 s | "
                 f"{report.verdict(serving < 10)} |")
    lines.append(f"| restart to serving, cold (files evicted first) | {ours[0]['serving_s']:.2f} s | < 10 s | "
                 f"{report.verdict(ours[0]['serving_s'] < 10)} |")
    anon = med([o["rss_warm"]["RssAnon"] for o in ours])
    base = med([o["rss_start"]["RssAnon"] for o in ours])
    file_ = med([o["rss_warm"]["RssFile"] for o in ours])
    lines.append(f"| RssAnon warm, process included (at start {mib(base)} MiB) | {mib(anon)} MiB | <= 366 MiB "
                 f"(at 1M) | {report.verdict(anon <= 366 * 2**20) if args.rows >= 1_000_000 else 'n/a'} |")
    lines.append(f"| RssFile warm (page cache mapped: graph + rows touched) | {mib(file_)} MiB | — | n/a |")
    if hnsw:
        lines.append(f"| kissvdb HNSW RssAnon warm, for scale | {mib(med([h['rss_warm']['RssAnon'] for h in hnsw]))} MiB "
                     f"| — | n/a |")
    c = ours[0].get("cold")
    if c:
        lines.append(f"| cold first pass at breadth {c['breadth']}: q/s (wall) / recall | {c['qps_wall']:,.0f} / "
                     f"{c['recall']:.3f} | — | n/a |")
    return "\n".join(lines) + "\n\n" + CGROUP_NOTE + "\n"


if __name__ == "__main__":
    main()

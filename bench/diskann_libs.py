"""DiskANN library choice (issue 11): hnswlib (the in-memory reference), Intel SVS, usearch and
our own numkong beam search, side by side on the same rows and queries, one search thread, k=10.

How: each index is built once, in its own subprocess, with `--build-threads` threads (build wall
time, rows/s). Then each round opens every index in a fresh subprocess (libraries interleaved, the
order rotating per round), sweeps the search breadth over the real queries and reports queries/s
(from the search thread's CPU time), recall@10 against exact ground truth, and RssAnon / RssFile
from /proc/self/status, warm (after the queries). Each library's q/s at recall 0.95 and 0.98
(interpolated along its sweep) is divided by hnswlib's in the same round; the report gives medians.

`--gil` runs, per library in a subprocess (three times; medians), a 1-thread build and then a
search loop in a thread while the main thread counts iterations of a trivial loop: the rate over
the rate while a thread hashes (C work that releases the GIL) instead: about 1.0 = the library
releases the GIL, near 0 = it holds it.

Data: `--rows 20000` (default) is ../shared/data as is. A larger `--rows N` is made from it, seeded
(see `make_rows`), written with exact ground truth for the 500 real queries into `--work`
(default bench/results/diskann-N, gitignored) and reused by later runs.

    .venv/bin/python bench/diskann_libs.py --rounds 5 --gil
    .venv/bin/python bench/diskann_libs.py --rows 1000000 --libs hnswlib,usearch_i8_rerank --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import report  # noqa: E402
from diskann_candidates import CANDIDATES, build_dir, fresh_dir, load_base  # noqa: E402

DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
STEM = "minilm-docstrings-20k"
K = 10
TARGETS = (0.95, 0.98)
NEIGHBOURS = 20  # make_rows interpolates between a real row and two of its this many nearest
T0 = time.monotonic()


def progress(msg: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - T0:7.1f}s] {msg}\n")
    sys.stderr.flush()


def rss() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) * 1024
    return out


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- data ------------------------------------------------------------------------------------


def real_neighbours(real: np.ndarray, k: int = NEIGHBOURS, chunk: int = 2_000) -> np.ndarray:
    """Each real row's k nearest other real rows by inner product (exact)."""
    out = np.empty((len(real), k), np.int64)
    for lo in range(0, len(real), chunk):
        s = real[lo:lo + chunk] @ real.T
        s[np.arange(len(s)), np.arange(lo, lo + len(s))] = -np.inf
        out[lo:lo + chunk] = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return out


def make_rows(real: np.ndarray, n: int, seed: int = 11):
    """Yield `n` unit rows in chunks: the real rows first, then copy c = 1, 2, ... of them. Row i of
    a copy lies between real row i and two of its NEIGHBOURS nearest real rows j, l (drawn with
    seed + c): normalise(x_i + b1 (x_j - x_i) + b2 (x_l - x_i)), b1, b2 uniform in [0, 0.5). New
    rows stay on the data's own manifold, as more real text would; isotropic noise would not (it
    is full-rank, as hard for a graph as random data: see docs/BENCHMARKS.md)."""
    nbrs = real_neighbours(real) if n > len(real) else None
    done = 0
    copy = 0
    while done < n:
        take = min(len(real), n - done)
        rows = real[:take]
        if copy:
            rng = np.random.default_rng(seed + copy)
            pick = nbrs[np.arange(take)[:, None], rng.integers(0, NEIGHBOURS, (take, 2))]
            b = rng.uniform(0, 0.5, (take, 2)).astype(np.float32)
            rows = rows + b[:, :1] * (real[pick[:, 0]] - rows) + b[:, 1:] * (real[pick[:, 1]] - rows)
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        yield rows.astype(np.float32, copy=False)
        done += take
        copy += 1


def exact_gt(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Exact top-k rows by inner product, merged over chunks of the (memory-mapped) base."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for lo in range(0, len(base), chunk):
        s = queries @ np.asarray(base[lo:lo + chunk]).T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s = np.hstack([best_s, np.take_along_axis(s, top, 1)])
        best_i = np.hstack([best_i, top + lo])
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def prepare(work: str, rows: int) -> None:
    """Write base.f32.npy, queries.npy, gt.npy and meta.json into `work` unless already there."""
    meta_path = os.path.join(work, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if "gt_real_share" not in meta:  # written by an earlier version of this script
            meta["gt_real_share"] = float(np.mean(np.load(os.path.join(work, "gt.npy")) < 20_000))
            with open(meta_path, "w") as f:
                json.dump(meta, f)
        return
    real = np.load(os.path.join(DATA, f"{STEM}.base.f16.npy")).astype(np.float32)
    queries = np.load(os.path.join(DATA, f"{STEM}.queries.f16.npy")).astype(np.float32)
    base = np.lib.format.open_memmap(os.path.join(work, "base.f32.npy"), "w+", np.float32, (rows, real.shape[1]))
    at = 0
    for chunk in make_rows(real, rows):
        base[at:at + len(chunk)] = chunk
        at += len(chunk)
        progress(f"data: {at:,}/{rows:,} rows")
    base.flush()
    if rows == len(real):
        gt = np.load(os.path.join(DATA, f"{STEM}.gt10.npy"))
    else:
        gt = exact_gt(base, queries, K)
    np.save(os.path.join(work, "queries.npy"), queries)
    np.save(os.path.join(work, "gt.npy"), gt)
    with open(meta_path, "w") as f:
        json.dump({"rows": rows, "dim": real.shape[1], "made_by": "make_rows: neighbour interpolation",
                   "gt_real_share": float(np.mean(gt < len(real)))}, f)


# ---- workers (each in a fresh subprocess) -----------------------------------------------------


def worker_build(name: str, work: str, threads: int) -> dict:
    base = load_base(work)
    out = fresh_dir(build_dir(work, name))
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            progress(f"build {name}: {done:,}/{total:,} rows")

    t, c = time.perf_counter(), time.process_time()
    CANDIDATES[name]().build(base, out, threads, report)
    wall = time.perf_counter() - t
    files = {os.path.relpath(os.path.join(r, f), out): os.path.getsize(os.path.join(r, f))
             for r, _d, fs in os.walk(out) for f in fs}
    return {"build_s": wall, "build_cpu_s": time.process_time() - c, "threads": threads,
            "rows": len(base), "rate": len(base) / wall, "files": files, "bytes": sum(files.values())}


def worker_search(name: str, work: str) -> dict:
    queries = np.load(os.path.join(work, "queries.npy"))
    gt = np.load(os.path.join(work, "gt.npy"))[:, :K]
    before = rss()
    cand = CANDIDATES[name]()
    t = time.perf_counter()
    cand.open(build_dir(work, name), work)
    open_s = time.perf_counter() - t
    opened = rss()
    cand.set(max(cand.breadths))
    for q in queries:  # warm: pages in, caches filled
        cand.search(q, K)
    sweep = []
    for b in cand.breadths:
        cand.set(b)
        w, c, f = time.perf_counter(), time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD)
        res = [cand.search(q, K) for q in queries]
        cpu, wall = time.thread_time() - c, time.perf_counter() - w
        faults = resource.getrusage(resource.RUSAGE_THREAD)
        faults = (faults.ru_minflt - f.ru_minflt) + (faults.ru_majflt - f.ru_majflt)
        hits = sum(len(set(r) & set(g.tolist())) for r, g in zip(res, gt))
        sweep.append({"breadth": b, "qps": len(queries) / cpu, "qps_wall": len(queries) / wall,
                      "recall": hits / (K * len(queries)), "page_faults": faults})
    return {"open_s": open_s, "rss_before": before, "rss_opened": opened, "rss_warm": rss(), "sweep": sweep}


def spin_rate(until) -> float:
    """Iterations per second of a trivial Python loop, run until `until()` is true."""
    n = 0
    t = time.perf_counter()
    while not until():
        for _ in range(1000):
            pass
        n += 1000
    return n / (time.perf_counter() - t)


def alone_rate(seconds: float = 1.0) -> float:
    end = time.perf_counter() + seconds
    return spin_rate(lambda: time.perf_counter() >= end)


def while_running(fn) -> float:
    th = threading.Thread(target=fn)
    th.start()
    rate = spin_rate(lambda: not th.is_alive())
    th.join()
    return rate


def hash_for(seconds: float) -> None:
    """The control: C work that releases the GIL (hashlib does for large buffers)."""
    import hashlib
    buf = b"x" * (1 << 20)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        hashlib.sha256(buf).digest()


def worker_gil(name: str, work: str, rows: int) -> dict:
    """Spin rates while the library works in a thread, over the rate while the control does
    (the box's other load hits both alike). Search runs whole batches of queries per call where
    the library takes them (UsearchI8Rerank and OwnBeam: one query per call, as they are used)."""
    cls = CANDIDATES[name]
    out: dict = {}
    control = while_running(lambda: hash_for(1.5))
    if not hasattr(cls, "shares"):
        base = np.ascontiguousarray(load_base(work, rows))
        tmp = fresh_dir(os.path.join(work, f"gil-{name}"))
        out["build"] = while_running(lambda: cls().build(base, tmp, 1)) / control
        shutil.rmtree(tmp)
    queries = np.load(os.path.join(work, "queries.npy"))
    cand = cls()
    cand.open(build_dir(work, name), work)
    cand.set(max(cand.breadths))

    def loop():
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            if hasattr(cand, "batch") and not hasattr(cls, "shares"):
                cand.batch(queries, K)
            else:
                for q in queries[:20]:
                    cand.search(q, K)

    out["search"] = while_running(loop) / control
    out["control_rate"] = control
    return out


class WorkerFailed(Exception):
    pass


def run_worker(args: list[str], timeout: float) -> dict:
    """Run one worker, passing its stderr (progress) through; its last stdout line is its JSON
    answer. A failure carries the last line the worker wrote to stderr (a library's refusal)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        killed = []
        timer = threading.Timer(timeout, lambda: (killed.append(1), p.kill()))
        timer.start()
        last = ""
        for line in p.stderr:
            sys.stderr.write(line)
            last = line.strip() or last
        out = p.stdout.read()
        timer.cancel()
        if p.wait():
            raise WorkerFailed(f"given up after {timeout:.0f} s" if killed else (last or f"exit {p.returncode}"))
    return json.loads(out.strip().splitlines()[-1])


# ---- the report -----------------------------------------------------------------------------


def qps_at(sweep: list[dict], target: float) -> float | None:
    """q/s where the sweep reaches `target` recall, linear between the two points around it."""
    prev = None
    for p in sweep:
        if p["recall"] >= target:
            if prev is None or p["recall"] == prev["recall"]:
                return p["qps"]
            f = (target - prev["recall"]) / (p["recall"] - prev["recall"])
            return prev["qps"] + f * (p["qps"] - prev["qps"])
        prev = p
    return None


def median_or_none(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def mib(b: int) -> str:
    return f"{b / 2**20:.1f}"


def tables(libs, builds, rounds, gil) -> str:
    lines = ["| library | breadth | recall@10 | q/s (CPU) | q/s (wall) |", "|---|---:|---:|---:|---:|"]
    for name in libs:
        for i, b in enumerate(rounds[0][name]["sweep"]):
            pts = [r[name]["sweep"][i] for r in rounds]
            lines.append(f"| {name} | {b['breadth']} | {statistics.median(p['recall'] for p in pts):.3f} | "
                         f"{statistics.median(p['qps'] for p in pts):,.0f} | "
                         f"{statistics.median(p['qps_wall'] for p in pts):,.0f} |")
    lines += ["", "| library | q/s @0.95 | ratio to hnswlib @0.95 | q/s @0.98 | ratio @0.98 | build s "
              "(threads) | rows/s | files MiB | open s | RssAnon MiB (delta) | RssFile MiB | GIL build | GIL search |",
              "|---|" + "---:|" * 12]
    for name in libs:
        cells = [name]
        for t in TARGETS:
            mine = [qps_at(r[name]["sweep"], t) for r in rounds]
            ref = [qps_at(r["hnswlib"]["sweep"], t) for r in rounds] if "hnswlib" in libs else [None] * len(rounds)
            ratio = [m / h if m and h else None for m, h in zip(mine, ref)]
            cells += [fmt(median_or_none(mine), ",.0f"), fmt(median_or_none(ratio))]
        b = builds.get(getattr(CANDIDATES[name], "shares", name), {})
        anon = statistics.median(r[name]["rss_warm"]["RssAnon"] for r in rounds)
        delta = statistics.median(r[name]["rss_warm"]["RssAnon"] - r[name]["rss_before"]["RssAnon"] for r in rounds)
        file_ = statistics.median(r[name]["rss_warm"]["RssFile"] for r in rounds)
        cells += [f"{fmt(b.get('build_s'), '.1f')} ({b.get('threads', '—')})", fmt(b.get("rate"), ",.0f"),
                  mib(b.get("bytes", 0)), f"{statistics.median(r[name]['open_s'] for r in rounds):.2f}",
                  f"{mib(anon)} ({mib(delta)})", mib(file_)]
        g = gil.get(name, {})
        cells += [fmt(g.get("build")), fmt(g.get("search"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LEGEND = """q/s: queries per second of the search thread's CPU time (wall: per wall second), one query per
call, warm. Ratios: q/s at the recall named, interpolated along the sweep, over hnswlib's in the same
round (median of the per-round ratios). RssAnon / RssFile: /proc/self/status of the process that
opened the index, after the queries (delta: RssAnon growth from just before opening). GIL: rate of a
trivial Python loop in the main thread while the library builds (1 thread) or searches in another
thread, over the rate while a GIL-releasing control runs (1.0 = released, 0 = held)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--libs", default=",".join(CANDIDATES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--build-timeout", type=float, default=3600, help="seconds; a build past it is given up")
    ap.add_argument("--work", help="work directory (default: a temp dir for 20k, bench/results/diskann-N above)")
    ap.add_argument("--reuse", action="store_true", help="keep builds already in --work")
    ap.add_argument("--gil", action="store_true", help="also measure whether build and search hold the GIL")
    ap.add_argument("--gil-rows", type=int, default=20_000)
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite this run's section of docs/BENCHMARKS.md")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, name, work, *rest = args.worker
        res = {"build": lambda: worker_build(name, work, int(rest[0])),
               "search": lambda: worker_search(name, work),
               "gil": lambda: worker_gil(name, work, int(rest[0]))}[kind]()
        print(json.dumps(res))
        return
    run(args)


def run(args) -> None:
    libs = args.libs.split(",")
    work = args.work or (tempfile.mkdtemp(prefix="diskann-") if args.rows == 20_000 else
                         os.path.join(HERE, "results", f"diskann-{args.rows}"))
    os.makedirs(work, exist_ok=True)
    load_before = loadavg()
    prepare(work, args.rows)
    builds: dict = {}
    build_file = os.path.join(work, "builds.json")
    if args.reuse and os.path.exists(build_file):
        with open(build_file) as f:
            builds = json.load(f)
    failed: dict = {}
    for name in dict.fromkeys(getattr(CANDIDATES[n], "shares", n) for n in libs):
        if name in builds:
            continue
        progress(f"build {name} ({args.build_threads} threads)")
        try:
            builds[name] = run_worker(["build", name, work, str(args.build_threads)], args.build_timeout)
        except WorkerFailed as e:
            failed[name] = str(e)
            progress(f"build {name} failed: {e}")
            continue
        progress(f"build {name}: {builds[name]['build_s']:.1f} s, {builds[name]['rate']:,.0f} rows/s")
        with open(build_file, "w") as f:
            json.dump(builds, f)
    libs = [n for n in libs if getattr(CANDIDATES[n], "shares", n) not in failed]
    rounds = []
    for r in range(args.rounds):
        order = libs[r % len(libs):] + libs[:r % len(libs)]
        progress(f"round {r + 1}/{args.rounds} (load average {loadavg()})")
        rounds.append({name: run_worker(["search", name, work], 3600) for name in order})
    gil = {}
    if args.gil:
        for name in libs:
            progress(f"gil {name}")
            runs = [run_worker(["gil", name, work, str(min(args.gil_rows, args.rows))], 3600) for _ in range(3)]
            gil[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    table = tables(libs, builds, rounds, gil)
    with open(os.path.join(work, "meta.json")) as f:
        meta = json.load(f)
    head = (f"rows {args.rows:,} x {meta['dim']}, 500 real queries, k={K}, 1 search thread, {args.rounds} rounds "
            f"(medians), build threads {args.build_threads}; load average before {load_before}, after {loadavg()}")
    if args.rows != 20_000:
        head += (f"\n\nThe rows: the 20,000 real rows, then seeded copies of them (`make_rows`: copy c's row i "
                 f"is real row i moved towards two of its {NEIGHBOURS} nearest real rows by uniform weights in "
                 f"[0, 0.5), seed 11 + c, renormalised). Ground truth: "
                 f"exact top-10 by inner product over all rows for the 500 real queries; "
                 f"{meta['gt_real_share']:.1%} of those neighbours are real rows.")
    notes = "".join(f"\n- {n}: not measured: {why}" for n, why in failed.items())
    print(head + "\n\n" + table + "\n" + notes)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"diskann_libs-{args.rows}.json"), "w") as f:
        json.dump({"head": head, "builds": builds, "failed": failed, "rounds": rounds, "gil": gil}, f)
    if not args.no_docs:
        name, title = (("diskann_libs", "DiskANN: library choice (issue 11)") if args.rows == 20_000 else
                       (f"diskann_libs_{args.rows}", f"DiskANN at {args.rows:,} rows (issue 11)"))
        report.write_section(name, title, head + "\n\n" + LEGEND + "\n\n" + table + "\n" + notes)
    if not args.work and args.rows == 20_000:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

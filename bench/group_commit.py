"""Group commit and the write path's CPU cost, in process.

Runs the real engine (WAL, KV actor, state.sqlite) with N concurrent writers and reports writes
per fsync, puts/s and CPU per put, with an injected fsync delay and without one. Nothing is
mocked: the delay is a sleep added beside the real fdatasync, standing in for a slow disk.
After the undelayed puts, N concurrent readers GET the keys just written (the read-through
cache's hit path). Every key is new (a put loads it from state.sqlite first), values are
100 bytes of JSON, as bench/http_kv.py sends.

CPU is split by thread, read from /proc/self/task/<tid>/schedstat (nanoseconds on CPU): the
event-loop thread (Trio: HTTP runs there too, so it is the one that must stay cheap), the
state.sqlite thread, and the rest (WAL append+fsync workers, the documents thread). With
`--instructions` it also counts instructions per put and per get under callgrind (valgrind),
which the box's noise does not touch: the same workload runs at two sizes in child processes,
and the difference is divided by the difference in operations, so start-up and imports cancel
out (thread interleaving still moves it by a few percent).

With `--baseline PYTHON` every round runs twice, alternating, in child processes: once with
this checkout and once with PYTHON, the interpreter of another checkout's environment (e.g. a
venv with the previous commit installed), and the table gives both and their ratio.

    .venv/bin/python bench/group_commit.py [--writers 64] [--puts 6400] [--delay-ms 5]
        [--rounds 3] [--instructions] [--baseline OTHER/.venv/bin/python] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

import orjson
import trio

NO_HNSWLIB = "KISSVDB_BENCH_NO_HNSWLIB"
if os.environ.get(NO_HNSWLIB):
    # hnswlib's wheel uses CPU instructions valgrind cannot decode. The KV path never calls it,
    # but importing the engine imports it, so a child counted under callgrind gets an empty
    # module in its place (it opens no vector collection).
    sys.modules["hnswlib"] = types.ModuleType("hnswlib")

from kissvdb.config import Settings
from kissvdb.events import RawJson
try:
    from kissvdb.actors.boot import open_engine
except ImportError:  # a --baseline checkout from before actors/boot.py existed
    from kissvdb.actors.engine import open_engine

sys.path.insert(0, os.path.dirname(__file__))
from report import progress as say, table, write_section  # noqa: E402

VALUE = RawJson(orjson.dumps("x" * 98))  # 100 bytes of JSON, as bench/http_kv.py sends
STORE_THREAD = "kissvdb-state"


def thread_cpu_ns() -> dict[int, int]:
    """Nanoseconds on CPU so far, per thread of this process."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError):
            pass  # the thread ended between listdir and open
    return out


def cpu_split(before: dict[int, int], after: dict[int, int]) -> dict[str, float]:
    """Seconds of CPU between two snapshots: event loop, state.sqlite thread, other threads."""
    loop_tid = threading.main_thread().native_id
    store_tids = {t.native_id for t in threading.enumerate() if t.name == STORE_THREAD}
    split = {"loop": 0.0, "store": 0.0, "other": 0.0}
    for tid, ns in after.items():
        spent = (ns - before.get(tid, 0)) / 1e9
        kind = "loop" if tid == loop_tid else "store" if tid in store_tids else "other"
        split[kind] += spent
    split["total"] = sum(split.values())
    return split


async def _concurrently(n: int, fn, label: str, total: int) -> tuple[float, dict[str, float]]:
    """Run fn(0..n-1) concurrently; return (wall seconds, CPU split)."""
    done = [0]

    async def worker(w: int) -> None:
        done[0] += await fn(w)

    async def progress() -> None:
        while True:
            await trio.sleep(1)
            say(f"{done[0]}/{total} {label}")

    t0, c0 = time.perf_counter(), thread_cpu_ns()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress)
        async with trio.open_nursery() as inner:
            for w in range(n):
                inner.start_soon(worker, w)
        nursery.cancel_scope.cancel()
    return time.perf_counter() - t0, cpu_split(c0, thread_cpu_ns())


async def run(writers: int, puts: int, delay_s: float, gets: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="kissvdb-gc-") as tmp:
        async with open_engine(Settings(data_dir=tmp), fsync_delay_s=delay_s) as engine:
            per_writer = puts // writers

            async def put_some(w: int) -> int:
                for i in range(per_writer):
                    await engine.kv_put(f"w{w}:{i}", VALUE)
                return per_writer

            wall, cpu = await _concurrently(writers, put_some, "puts", per_writer * writers)
            s = engine.writer.statistics()
            n = per_writer * writers
            out = {"puts": n, "puts_s": n / wall, "fsyncs": s.fsync_total, "per_fsync": s.records_total / s.fsync_total,
                   **{f"put_{k}_us": v / n * 1e6 for k, v in cpu.items()}}
            if gets:
                per_reader = gets // writers

                async def get_some(w: int) -> int:
                    rnd = random.Random(w)
                    for _ in range(per_reader):
                        await engine.kv_get(f"w{rnd.randrange(writers)}:{rnd.randrange(per_writer)}")
                    return per_reader

                wall, cpu = await _concurrently(writers, get_some, "gets", per_reader * writers)
                n = per_reader * writers
                out.update(gets=n, gets_s=n / wall, **{f"get_{k}_us": v / n * 1e6 for k, v in cpu.items()})
            return out


# -- instruction counts (callgrind) -----------------------------------------------------------

def _callgrind(python: str, writers: int, puts: int, gets: int) -> int:
    """Instructions a child process executes to boot the engine, put and get (all threads)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, __file__,
           "--child", "--writers", str(writers), "--puts", str(puts), "--gets", str(gets), "--delay-ms", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, NO_HNSWLIB: "1"})
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def instructions(python: str, writers: int, small: int, large: int, gets: int) -> dict[str, float]:
    say(f"callgrind ({python}): {small} puts, {large} puts, {large} puts + {gets} gets")
    a = _callgrind(python, writers, small, 0)
    b = _callgrind(python, writers, large, 0)
    c = _callgrind(python, writers, large, gets)
    return {"put_instructions": (b - a) / (large - small), "get_instructions": (c - b) / gets}


# -- rounds -----------------------------------------------------------------------------------

def _child(python: str, args, delay_ms: float, gets: int) -> dict:
    cmd = [python, __file__, "--child", "--writers", str(args.writers), "--puts", str(args.puts),
           "--gets", str(gets), "--delay-ms", str(delay_ms)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return orjson.loads(proc.stdout.strip().splitlines()[-1])


def measure(args, python: str | None) -> dict:
    """Medians over the rounds of one side; `python` None runs in this process."""
    results: dict[str, list] = {"delayed": [], "undelayed": []}
    for i in range(args.rounds):
        for kind, delay_ms, gets in (("delayed", args.delay_ms, 0), ("undelayed", 0.0, args.gets)):
            say(f"round {i + 1} {kind}: {python or 'this process'}")
            if python is None:
                r = trio.run(run, args.writers, args.puts, delay_ms / 1000, gets)
            else:
                r = _child(python, args, delay_ms, gets)
            results[kind].append(r)
    out = {"delayed": _median_rows(results["delayed"]), "undelayed": _median_rows(results["undelayed"])}
    if args.instructions:
        out.update(instructions(python or sys.executable, args.writers, 640, 3840, 38400))
    return out


def _median_rows(results: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


# -- report -----------------------------------------------------------------------------------

def report(args, m: dict) -> str:
    rows = [[f"{d:.0f} ms", args.writers, f"{r['puts']:,.0f}", f"{r['fsyncs']:,.0f}", f"{r['per_fsync']:.1f}",
             f"{r['puts_s']:,.0f}", f"{r['put_total_us']:.0f}", f"{r['put_loop_us']:.0f}",
             f"{r['put_store_us']:.0f}", f"{r['put_other_us']:.0f}"]
            for d, r in ((args.delay_ms, m["delayed"]), (0, m["undelayed"]))]
    lines = [f"Medians of {args.rounds} rounds; CPU is per operation, by thread (event loop / state.sqlite "
             "thread / WAL workers and the rest).", "",
             table(["injected fsync delay", "writers", "puts", "fsyncs", "writes per fsync", "puts/s",
                    "CPU per put (us)", "loop", "store", "other"], rows)]
    r = m["undelayed"]
    lines += ["", table(["readers", "gets", "gets/s", "CPU per get (us)", "loop", "store", "other"],
                        [[args.writers, f"{r['gets']:,.0f}", f"{r['gets_s']:,.0f}", f"{r['get_total_us']:.1f}",
                          f"{r['get_loop_us']:.1f}", f"{r['get_store_us']:.1f}", f"{r['get_other_us']:.1f}"]])]
    if "put_instructions" in m:
        lines += ["", f"Instructions (callgrind, all threads, {args.writers} writers, no injected delay): "
                  f"{m['put_instructions']:,.0f} per put, {m['get_instructions']:,.0f} per get."]
    per_fsync = m["delayed"]["per_fsync"]
    lines += ["", f"Target: with a {args.delay_ms:.0f} ms fsync, {args.writers} writers commit >= 10 writes per "
              f"fsync: {per_fsync:.1f} ({'met' if per_fsync >= 10 else 'NOT met'})."]
    return "\n".join(lines)


COMPARED = [  # (label, side, key, format)
    ("puts/s, {delay} ms fsync delay", "delayed", "puts_s", "{:,.0f}"),
    ("writes per fsync, {delay} ms fsync delay", "delayed", "per_fsync", "{:.1f}"),
    ("puts/s, no delay", "undelayed", "puts_s", "{:,.0f}"),
    ("CPU per put, all threads (us)", "undelayed", "put_total_us", "{:.1f}"),
    ("CPU per put, event loop (us)", "undelayed", "put_loop_us", "{:.1f}"),
    ("CPU per put, state.sqlite thread (us)", "undelayed", "put_store_us", "{:.1f}"),
    ("CPU per put, other threads (us)", "undelayed", "put_other_us", "{:.1f}"),
    ("gets/s", "undelayed", "gets_s", "{:,.0f}"),
    ("CPU per get, all threads (us)", "undelayed", "get_total_us", "{:.2f}"),
    ("CPU per get, event loop (us)", "undelayed", "get_loop_us", "{:.2f}"),
]


def compare(args, before: dict, after: dict) -> str:
    rows = []
    for label, side, key, fmt in COMPARED:
        b, a = before[side][key], after[side][key]
        rows.append([label.format(delay=f"{args.delay_ms:.0f}"), fmt.format(b), fmt.format(a), f"{a / b:.2f}"])
    for key, label in (("put_instructions", "instructions per put (callgrind)"),
                       ("get_instructions", "instructions per get (callgrind)")):
        if key in after:
            rows.append([label, f"{before[key]:,.0f}", f"{after[key]:,.0f}", f"{after[key] / before[key]:.2f}"])
    before_is = f"{args.baseline_label} (run with `{args.baseline}`)" if args.baseline_label else f"`{args.baseline}`"
    return "\n".join([
        f"Before = {before_is}, after = this checkout; each round runs both, one after the other, "
        f"in child processes; medians of {args.rounds} rounds; {args.writers} writers, {args.puts:,} puts "
        f"and {args.gets:,} gets per round. Wall-clock rates (puts/s, gets/s) move with whatever else the "
        "shared box runs; CPU per operation and above all instruction counts are the comparable figures. "
        "A cached GET never yields to the event loop, so the 64 readers run one after another and gets/s "
        "is 1 / (wall time per get).", "",
        table(["figure", "before", "after", "after / before"], rows), "",
        "After, in full:", "", report(args, after)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=64)
    ap.add_argument("--puts", type=int, default=6400)
    ap.add_argument("--gets", type=int, default=64000)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--instructions", action="store_true", help="also count instructions under callgrind")
    ap.add_argument("--baseline", metavar="PYTHON", help="interpreter of another checkout to compare with")
    ap.add_argument("--baseline-label", metavar="TEXT", help="what the baseline is (e.g. its commit hash), for the report")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = ap.parse_args()
    if args.child:
        result = trio.run(run, args.writers, args.puts, args.delay_ms / 1000, args.gets)
        print(orjson.dumps(result).decode())
        return
    if args.baseline:
        before_runs, after_runs = [], []
        rounds, args.rounds = args.rounds, 1
        for i in range(rounds):
            before_runs.append(measure(args, args.baseline))
            after_runs.append(measure(args, sys.executable))
        args.rounds = rounds
        text = compare(args, _merge(before_runs), _merge(after_runs))
    else:
        text = report(args, measure(args, None))
    print(text)
    if not args.no_write:
        write_section("group_commit", "Group commit and write-path CPU in process (bench/group_commit.py)", text)


def _merge(runs: list[dict]) -> dict:
    """Medians over single-round measurements (instruction counts: from the first)."""
    out = {side: _median_rows([r[side] for r in runs]) for side in ("delayed", "undelayed")}
    for key in ("put_instructions", "get_instructions"):
        if key in runs[0]:
            out[key] = statistics.median(r[key] for r in runs)
    return out


if __name__ == "__main__":
    main()

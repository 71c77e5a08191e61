"""Group commit in process: concurrent writers share fsyncs.

Runs the real engine (WAL, KV actor, state.sqlite) in this process with an injected fsync
delay and N concurrent writers, and reports writes per fsync, puts/s and CPU per put, next to
the same run without the delay. Nothing is mocked: the delay is a sleep added beside the real
fdatasync, standing in for a slow disk.

    .venv/bin/python bench/group_commit.py [--writers 64] [--puts 6400] [--delay-ms 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import orjson
import trio

from kissvdb.config import Settings
from kissvdb.events import RawJson
from kissvdb.actors.engine import open_engine

sys.path.insert(0, os.path.dirname(__file__))
from report import progress as say, write_section  # noqa: E402


async def run(writers: int, puts: int, delay_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="kissvdb-gc-") as tmp:
        async with open_engine(Settings(data_dir=tmp), fsync_delay_s=delay_s) as engine:
            value = RawJson(orjson.dumps("x" * 88))
            per_writer = puts // writers
            done = [0]

            async def writer(w: int) -> None:
                for i in range(per_writer):
                    await engine.kv_put(f"w{w}:{i}", value)
                    done[0] += 1

            async def progress() -> None:
                while True:
                    await trio.sleep(1)
                    say(f"{done[0]}/{per_writer * writers} puts")

            t0, c0 = time.perf_counter(), time.process_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress)
                async with trio.open_nursery() as inner:
                    for w in range(writers):
                        inner.start_soon(writer, w)
                nursery.cancel_scope.cancel()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            s = engine.writer.statistics()
            n = per_writer * writers
            return {"puts": n, "puts_s": n / wall, "fsyncs": s.fsync_total,
                    "per_fsync": s.records_total / s.fsync_total, "cpu_us": cpu / n * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=64)
    ap.add_argument("--puts", type=int, default=6400)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = ap.parse_args()
    rows = []
    for delay in (args.delay_ms / 1000, 0.0):
        say(f"running: {args.writers} writers, fsync delay {delay * 1000:.0f} ms")
        r = trio.run(run, args.writers, args.puts, delay)
        rows.append((delay, r))
    lines = [
        "| injected fsync delay | writers | puts | fsyncs | writes per fsync | puts/s | CPU per put (us) |",
        "|---|---|---|---|---|---|---|",
    ]
    for delay, r in rows:
        lines.append(f"| {delay * 1000:.0f} ms | {args.writers} | {r['puts']:,} | {r['fsyncs']:,} | "
                     f"{r['per_fsync']:.1f} | {r['puts_s']:,.0f} | {r['cpu_us']:.0f} |")
    met = rows[0][1]["per_fsync"] >= 10
    lines += ["", f"Target: with a 5 ms fsync, 64 writers commit >= 10 writes per fsync: "
              f"{rows[0][1]['per_fsync']:.1f} ({'met' if met else 'NOT met'})."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("group_commit", "Group commit in process (bench/group_commit.py)", text)


if __name__ == "__main__":
    main()

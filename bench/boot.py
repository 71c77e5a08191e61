"""Boot time: 1,000,000 keys, 2,000,000 events, 100,000 of them after the last checkpoint.

Builds the data directory once (kept as a pristine copy, reused by later runs unless --rebuild):

1. through the real engine, in process (`kissvdb.actors.boot.open_engine` + `kv_batch_put`,
   several concurrent callers so the WAL writer group-commits): 1,000,000 distinct keys
   (revision 1), then 900,000 overwrites (revision 2). Closing the engine checkpoints at
   offset 1,900,000, as a graceful shutdown does.
2. through the core WAL class (`kissvdb.wal.log.WalLog.append`, the same `encode_payload` the
   WAL writer uses): 100,000 more overwrites (revision 3) that state.sqlite has not applied,
   i.e. exactly what a crash leaves when state.sqlite lost everything after its last checkpoint.

Each measured run copies the pristine directory, starts `kissvdb serve` (subprocess) and times
spawn -> the listening line; the replay count comes from the `kissvdb_recovery_replayed_events`
gauge and the replay rate from the `kissvdb.recovery` log line. A few keys from each phase are
read back over HTTP, then the server is stopped gracefully and booted again (nothing to replay),
and once more after deleting the WAL index sidecars (`events-*.idx`), which is how a data
directory written before they existed opens: every retained segment is read (and the sidecars
are rebuilt). The "WAL open" column counts the sealed segments the open described from their
sidecar (not read) against the segments retained. An empty data directory gives the fixed cost
(interpreter, imports, bind).

    .venv/bin/python bench/boot.py [--keys 1000000] [--rebuild] [--no-write-docs]

Target (issue 2): under 5 s to serving.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import REPO, progress, table, verdict, write_section  # noqa: E402

TARGET_S = 5.0
BATCH_OPS = 1000
CALLERS = 4
PRISTINE_ROOT = REPO / "bench" / "results"  # git-ignored
LOG_TS_RE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ ([\w.]+): (.*)")
WAL_OPENED_RE = re.compile(r"WAL: opened .*: (\d+) segments \((\d+) described by their index sidecar")
RECOVERY_RE = re.compile(r"recovery: replayed (\d+) events from offset (\d+) in ([\d.]+)s \((\d+) events/s\)")


def value_for(i: int, revision: int) -> bytes:
    # canonical JSON (keys sorted, compact), about 100 bytes
    return f'{{"i":{i},"pad":"{"x" * 72}","rev":{revision}}}'.encode()


def key_for(i: int) -> str:
    return f"boot/{i:07d}"


async def build_with_engine(data_dir: Path, keys: int, overwrites: int) -> int:
    import trio

    from kissvdb.actors.boot import open_engine
    from kissvdb.kv.state import Put
    from kissvdb.config import Settings
    from kissvdb.events import RawJson

    settings = Settings(data_dir=str(data_dir), snapshot_interval_secs=3600)
    plan = [(i, 1) for i in range(keys)] + [(i, 2) for i in range(overwrites)]
    batches = [plan[s:s + BATCH_OPS] for s in range(0, len(plan), BATCH_OPS)]
    # Revisions must come in order per key: every key's revision-1 batch is acknowledged before
    # its revision-2 batch is sent, because the second pass starts after the first finished.
    first_pass = [b for b in batches if b[0][1] == 1]
    second_pass = [b for b in batches if b[0][1] == 2]
    done = 0
    t0 = time.monotonic()

    async with open_engine(settings) as engine:
        async def caller(queue: list) -> None:
            nonlocal done
            while queue:
                batch = queue.pop()
                results = await engine.kv_batch_put([Put(key_for(i), RawJson(value_for(i, rev))) for i, rev in batch])
                for (i, rev), result in zip(batch, results):
                    if getattr(result, "revision", None) != rev:
                        raise RuntimeError(f"{key_for(i)}: expected revision {rev}, got {result!r}")
                done += len(batch)
                if done % 100_000 < BATCH_OPS:
                    rate = done / (time.monotonic() - t0)
                    progress(f"  engine: {done:,}/{len(plan):,} events ({rate:,.0f} events/s)")

        for queue in (first_pass, second_pass):
            queue.reverse()
            async with trio.open_nursery() as nursery:
                for _ in range(CALLERS):
                    nursery.start_soon(caller, queue)
        durable = engine.durable_offset
    return durable


def append_tail(data_dir: Path, first_offset: int, tail: int) -> int:
    """The tail the checkpoint does not cover, written with the WAL writer's own encoding."""
    from kissvdb.config import Settings
    from kissvdb.events import STATE_UPDATED, RawJson, encode_payload
    from kissvdb.wal.log import WalLog

    settings = Settings()
    log = WalLog.open(str(data_dir), segment_max_bytes=settings.wal_segment_max_bytes,
                      min_next_offset=first_offset, verify_from=first_offset)
    try:
        if log.next_offset != first_offset:
            raise RuntimeError(f"WAL next offset {log.next_offset}, expected {first_offset}")
        ts_ms = time.time_ns() // 1_000_000
        for start in range(0, tail, 5000):
            payloads = [
                encode_payload(ts_ms, STATE_UPDATED, {"key": key_for(i), "revision": 3,
                                                      "value": RawJson(value_for(i, 3)), "expires_at_ms": None})
                for i in range(start, min(start + 5000, tail))
            ]
            log.append(payloads)
        log.sync()
        return log.last_offset
    finally:
        log.close()


def build(pristine: Path, keys: int, events: int, tail: int) -> dict:
    import trio

    overwrites = events - tail - keys
    if overwrites < 0 or tail > keys:
        raise SystemExit("need events >= keys + tail and tail <= keys")
    if pristine.exists():
        shutil.rmtree(pristine)
    data_dir = pristine / "data"
    progress(f"building {keys:,} keys / {events:,} events in {data_dir} (once; reused later) ...")
    t0 = time.monotonic()
    checkpointed = trio.run(build_with_engine, data_dir, keys, overwrites)
    engine_s = time.monotonic() - t0
    progress(f"  engine part done: offset {checkpointed:,} checkpointed at close ({engine_s:.0f}s)")
    last = append_tail(data_dir, checkpointed + 1, tail)
    progress(f"  appended {tail:,} events past the checkpoint: WAL now ends at {last:,}")
    facts = {"keys": keys, "events": last, "checkpoint": checkpointed, "tail": last - checkpointed,
             "engine_build_s": round(engine_s, 1), "engine_events_per_s": round(checkpointed / engine_s)}
    (pristine / "facts.json").write_text(json.dumps(facts))
    return facts


def wal_open_seconds(lines: list[str]) -> float | None:
    """From the server log: first log line -> 'WAL: opened' (scanning the segments)."""
    import datetime as dt

    first = opened = None
    for line in lines:
        m = LOG_TS_RE.search(line)
        if not m:
            continue
        ts = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        first = first or ts
        if m.group(2) == "kissvdb.wal" and m.group(3).startswith("WAL: opened"):
            opened = ts
            break
    return (opened - first).total_seconds() if first and opened else None


def wal_open_cell(lines: list[str]) -> str:
    """'0.31 (5 of 6 from sidecars)': seconds to open the WAL and how it got there."""
    seconds = wal_open_seconds(lines)
    found = [m for line in lines if (m := WAL_OPENED_RE.search(line))]
    how = f" ({found[-1].group(2)} of {found[-1].group(1)} segments from sidecars)" if found else ""
    return fmt_s(seconds) + how


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def boot(data_dir: Path, log_path: Path):
    from tests.e2e.server import ServerProcess

    server = ServerProcess(data_dir, log_path=log_path, start_timeout_s=600)
    server.start()
    return server


def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--tail", type=int, default=100_000)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the pristine data directory")
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()

    import httpx

    from tests.e2e.server import parse_metrics

    pristine = PRISTINE_ROOT / f"boot-{args.keys}-{args.events}-{args.tail}"
    facts_path = pristine / "facts.json"
    if args.rebuild or not facts_path.exists():
        facts = build(pristine, args.keys, args.events, args.tail)
    else:
        facts = json.loads(facts_path.read_text())
        progress(f"reusing {pristine} ({facts})")

    work = Path(tempfile.mkdtemp(prefix="kissvdb-bench-boot-"))
    rows = []
    try:
        # fixed cost: an empty data directory
        empty = boot(work / "empty", work / "empty.log")
        empty_s = empty.listening_after_s
        empty.stop()
        progress(f"empty data dir: listening after {empty_s:.2f}s")

        data_dir = work / "data"
        progress("copying the pristine data directory ...")
        shutil.copytree(pristine / "data", data_dir)
        size_mb = dir_bytes(data_dir) / 1e6
        progress(f"booting on {facts['keys']:,} keys / {facts['events']:,} events, {facts['tail']:,} past the checkpoint ...")
        server = boot(data_dir, work / "boot.log")
        boot_s = server.listening_after_s
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client:
            metrics = parse_metrics(client.get("/v1/metrics").text)
            replayed = int(metrics.get("kissvdb_recovery_replayed_events", -1))
            durable = int(metrics.get("kissvdb_wal_durable_offset", -1))
            for i, rev in ((0, 3), (args.tail - 1, 3), (args.tail, 2), (args.keys - 1, 1 if args.events - args.tail - args.keys < args.keys else 2)):
                item = client.get(f"/v1/state/{key_for(i)}").json()
                assert item["revision"] == rev and item["value"]["rev"] == rev, (i, item)
        matches = [m for line in server.log_lines() if (m := RECOVERY_RE.search(line))]
        replay_s = float(matches[-1].group(3)) if matches else None
        replay_rate = int(matches[-1].group(4)) if matches else None
        wal_open_s = wal_open_cell(server.log_lines())
        progress(f"  listening after {boot_s:.2f}s; replayed {replayed:,} events"
                 + (f" in {replay_s:.2f}s ({replay_rate:,} events/s)" if matches else ""))
        server.stop()
        again = boot(data_dir, work / "boot2.log")
        again_s = again.listening_after_s
        wal_open_again_s = wal_open_cell(again.log_lines())
        with httpx.Client(base_url=again.base_url, headers=again.headers, timeout=30) as client:
            replayed_again = int(parse_metrics(client.get("/v1/metrics").text).get("kissvdb_recovery_replayed_events", -1))
        again.stop()
        progress(f"  after a graceful stop: listening after {again_s:.2f}s, replayed {replayed_again}, WAL open {wal_open_again_s}")
        sidecars = sorted(data_dir.glob("events-*.idx"))
        for path in sidecars:
            path.unlink()
        bare = boot(data_dir, work / "boot3.log")
        bare_s = bare.listening_after_s
        wal_open_bare_s = wal_open_cell(bare.log_lines())
        bare.stop()
        progress(f"  without its {len(sidecars)} index sidecars: listening after {bare_s:.2f}s, WAL open {wal_open_bare_s}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ["empty data dir (fixed cost: interpreter, imports, bind)", "0", f"{empty_s:.2f}", "-", "-", "-"],
        [f"{facts['keys']:,} keys, {facts['events']:,} events, {facts['tail']:,} after the checkpoint",
         f"{replayed:,}", f"{boot_s:.2f}", wal_open_s, fmt_s(replay_s),
         "n/a" if replay_rate is None else f"{replay_rate:,}"],
        ["same data dir after a graceful stop", f"{replayed_again:,}", f"{again_s:.2f}", wal_open_again_s, "-", "-"],
        [f"same, its {len(sidecars)} WAL index sidecars deleted (a data dir from before them: every segment read)",
         "0", f"{bare_s:.2f}", wal_open_bare_s, "-", "-"],
    ]
    boot_table = table(["boot", "events replayed", "spawn -> listening (s)", "WAL open (s)", "replay (s)",
                        "replay events/s"], rows)
    summary = table(["figure", "value", "target", "verdict"], [
        [f"spawn -> serving with a {facts['tail']:,}-event tail", f"{boot_s:.2f} s", f"< {TARGET_S:.0f} s", verdict(boot_s < TARGET_S)],
        ["replay rate", "n/a" if replay_rate is None else f"{replay_rate:,} events/s", "(report)", "-"],
    ])
    notes = (f"Data directory: {facts['keys']:,} keys, WAL offsets 1..{facts['events']:,} ({size_mb:,.0f} MB on disk), "
             f"state.sqlite checkpointed at {facts['checkpoint']:,}; built through the engine in process "
             f"({facts['engine_events_per_s']:,} events/s with {CALLERS} callers x {BATCH_OPS}-op kv_batch_put) plus "
             f"{facts['tail']:,} WAL records appended with WalLog (the WAL writer's encoding). Warm page cache "
             f"(the copy was just written). Durable offset after boot: {durable:,}. 'WAL open' = first log line -> "
             f"'WAL: opened' in the server log: reading the last segment and any segment that may be replayed, "
             f"and the index sidecars of the older ones (docs/architecture.md, WAL).")
    print(boot_table)
    print()
    print(summary)
    if not args.no_write_docs:
        write_section("boot", "Boot with a long history (bench/boot.py)", f"{notes}\n\n{boot_table}\n\n{summary}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

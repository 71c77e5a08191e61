"""SSE fan-out: many subscribers tailing /v1/stream while a writer runs, over real HTTP.

Starts `kissvdb serve` (subprocess, port 0 on 127.0.0.1), then SUBSCRIBERS raw-socket SSE
clients split over two helper processes (Trio, one task per connection, no JSON parsing: each
received chunk is time-stamped and the keys in it are found with one regex), all subscribed from
the current durable offset. One writer in this process records the time each write was
acknowledged. Delay = receive time - ack time of the same key, per subscriber and event
(CLOCK_MONOTONIC is shared by the processes).

1. 100 writes/s for 10 s with single PUTs (100 x 100 = 10,000 deliveries/s):
   p50/p99/max delay. Target: p99 < 100 ms.
2. Ramp: batch_put at rising event rates, 5 s each, until a step is not sustained (some delivery
   missing after the step, or p99 delay >= 500 ms). Reports offered and delivered
   deliveries/s, delay percentiles, and the server's CPU use per step.

    .venv/bin/python bench/sse_fanout.py [--subscribers 100] [--no-write-docs]

Caveat: subscribers and writer share the machine with the server; the table says how much CPU
the server process itself used in each step.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import process_cpu_seconds, progress, table, verdict, write_section  # noqa: E402

KEY_RE = re.compile(rb'"key":"fan/(\d+)"')
STOP_MARK = b'"key":"fan/stop"'
DELAY_TARGET_MS = 100.0
SUSTAIN_P99_MS = 500.0
RAMP_RATES = (200, 500, 1000, 2000, 4000, 8000, 16000, 32000)  # events/s offered by the writer
WRITER_THREADS = 16  # concurrent writes in flight at most (open loop)
MAX_BATCH = 1000  # MAX_STATE_BATCH for this server: rate/100 operations per batch_put
RAMP_STEP_S = 5.0
FIRST_STEP_S = 10.0
CATCH_UP_TIMEOUT_S = 60.0


# ---- subscriber process ----------------------------------------------------------------------


def subscriber_main(host: str, port: int, api_key: str, since: int, count: int, out_path: str) -> None:
    import numpy as np
    import trio

    seqs: list[list[int]] = [[] for _ in range(count)]
    times: list[list[float]] = [[] for _ in range(count)]
    max_seen = [0] * count
    request = (
        f"GET /v1/stream?since={since}&key_prefix=fan/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {api_key}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()

    async def one(idx: int, ready: trio.MemorySendChannel) -> None:
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise RuntimeError("connection closed before headers")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"subscribe failed: {head[:200]!r}")
        await ready.send(idx)
        my_seqs, my_times = seqs[idx], times[idx]
        now = time.monotonic()  # arrival time of the bytes in `buf`
        while True:
            cut = buf.rfind(b"\n\n")
            if cut >= 0:  # complete frames: stamp them with the arrival of their last chunk
                complete, buf = buf[: cut + 2], buf[cut + 2 :]
                top = max_seen[idx]
                for match in KEY_RE.finditer(complete):
                    n = int(match.group(1))
                    my_seqs.append(n)
                    my_times.append(now)
                    if n > top:  # concurrent writers commit out of key order: track the max
                        top = n
                max_seen[idx] = top
                if STOP_MARK in complete:
                    await stream.aclose()
                    return
            chunk = await stream.receive_some(262144)
            now = time.monotonic()
            if not chunk:
                raise RuntimeError("server closed the stream")
            buf += chunk

    async def report_progress() -> None:
        last = -1
        while True:
            low = min(max_seen)
            if low != last:
                print(f"SEEN {low}", flush=True)
                last = low
            await trio.sleep(0.05)

    async def run() -> None:
        send, recv = trio.open_memory_channel(count)
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as subs:
                for idx in range(count):
                    subs.start_soon(one, idx, send)
                for _ in range(count):
                    await recv.receive()
                print("READY", flush=True)
                nursery.start_soon(report_progress)
            nursery.cancel_scope.cancel()

    trio.run(run)
    sub_index = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s in enumerate(seqs)])
    np.savez(out_path, sub=sub_index,
             seq=np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]),
             t=np.concatenate([np.asarray(t, dtype=np.float64) for t in times]))
    print("DONE", flush=True)


# ---- main process ----------------------------------------------------------------------------


class SubscriberProc:
    def __init__(self, host, port, api_key, since, count, out_path) -> None:
        self.out_path = out_path
        self.count = count
        self.seen = 0
        self.ready = threading.Event()
        self.done = threading.Event()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--subscriber", host, str(port), api_key, str(since), str(count), out_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("SEEN "):
                self.seen = int(line.split()[1])
            elif line == "READY":
                self.ready.set()
            elif line == "DONE":
                self.done.set()
            else:
                self.lines.append(line)

    def failed(self) -> str | None:
        if self.proc.poll() is not None and not self.done.is_set():
            return "\n".join(self.lines[-30:])
        return None


def wait_until(predicate, timeout_s: float, what: str, procs=()) -> float:
    """Bounded poll; returns the time it took."""
    t0 = time.monotonic()
    while not predicate():
        for p in procs:
            if (err := p.failed()) is not None:
                raise RuntimeError(f"subscriber process died while waiting for {what}:\n{err}")
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - t0


class Writer:
    """Writes `fan/N` keys open loop: each write is sent at its due time by a pool of writer
    threads, so a slow ack delays only its own write, not the schedule. Keeps the send and ack
    time of every key (N counts up across steps)."""

    def __init__(self, client) -> None:
        self.client = client
        self.seq = 0
        self.acks: dict[int, float] = {}
        self.sends: dict[int, float] = {}

    def _write(self, keys: list[int], single_puts: bool, latencies: list[float]) -> None:
        sent = time.monotonic()
        if single_puts:
            resp = self.client.put(f"/v1/state/fan/{keys[0]}", json={"value": {"n": keys[0]}})
        else:
            resp = self.client.post("/v1/state/batch_put",
                                    json={"operations": [{"key": f"fan/{k}", "value": {"n": k}} for k in keys]})
        resp.raise_for_status()
        now = time.monotonic()
        latencies.append(now - sent)
        for k in keys:
            self.acks[k] = now
            self.sends[k] = sent

    def run_step(self, rate: float, seconds: float, single_puts: bool, server_pid: int,
                 procs: list[SubscriberProc] = ()) -> dict:
        """`rate` events/s for `seconds`; then waits (bounded) for every subscriber to see the last."""
        batch = 1 if single_puts else min(MAX_BATCH, max(1, int(rate // 100)))
        interval = batch / rate
        first_seq = self.seq + 1
        latencies: list[float] = []
        cpu0, t0 = process_cpu_seconds(server_pid), time.monotonic()
        sub_cpu0 = sum(process_cpu_seconds(p.proc.pid) for p in procs)
        futures = []
        with ThreadPoolExecutor(max_workers=WRITER_THREADS) as pool:
            for b in range(int(seconds / interval)):
                delay = t0 + b * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the writer (open loop), not waiting for a condition
                keys = list(range(self.seq + 1, self.seq + 1 + batch))
                self.seq += batch
                futures.append(pool.submit(self._write, keys, single_puts, latencies))
            for future in futures:
                future.result()
        t_end = time.monotonic()
        last_seq = self.seq
        caught_up = None
        if procs:
            try:
                caught_up = wait_until(lambda: all(p.seen >= last_seq for p in procs), CATCH_UP_TIMEOUT_S,
                                       f"subscribers to reach fan/{last_seq}", procs)
            except TimeoutError:
                pass
        cpu1, t1 = process_cpu_seconds(server_pid), time.monotonic()
        sub_cpu1 = sum(process_cpu_seconds(p.proc.pid) for p in procs)
        write_ms = sorted(x * 1000 for x in latencies)
        return {"rate": rate, "single": single_puts, "first": first_seq, "last": last_seq, "write_ms": write_ms,
                "write_p50": write_ms[len(write_ms) // 2], "write_p99": write_ms[int(len(write_ms) * 0.99)],
                "write_s": t_end - t0, "caught_up_s": caught_up,
                "server_cpu": (cpu1 - cpu0) / (t1 - t0), "subs_cpu": (sub_cpu1 - sub_cpu0) / (t1 - t0)}


def start_subscribers(server, client, count: int, processes: int, workdir: Path, tag: str = "") -> list[SubscriberProc]:
    """`count` subscribers from the current durable offset, split over `processes`; returns once
    every one has its stream open (bounded wait)."""
    from tests.e2e.server import parse_metrics

    since = int(parse_metrics(client.get("/v1/metrics").text).get("kissvdb_wal_durable_offset", 0))
    per_proc = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    procs = [SubscriberProc(server.host, server.port, server.api_key, since, n, str(workdir / f"sub{tag}{i}.npz"))
             for i, n in enumerate(per_proc)]
    try:
        wait_until(lambda: all(p.ready.is_set() for p in procs), 60, "subscribers connected", procs)
    except BaseException:
        kill_subscribers(procs)
        raise
    return procs


def stop_subscribers(client, procs: list[SubscriberProc]) -> None:
    """Write the stop key every subscriber ends on, and wait (bounded) for them to save results."""
    client.put("/v1/state/fan/stop", json={"value": "stop"}).raise_for_status()
    wait_until(lambda: all(p.done.is_set() for p in procs), 120, "subscribers to save results", procs)
    for p in procs:
        p.proc.wait(timeout=30)


def kill_subscribers(procs: list[SubscriberProc]) -> None:
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2, help="subscriber processes")
    parser.add_argument("--no-write-docs", action="store_true")
    args = parser.parse_args()

    import httpx
    import numpy as np

    from tests.e2e.server import ServerProcess

    workdir = Path(tempfile.mkdtemp(prefix="kissvdb-bench-sse-"))
    api_key = "bench-key"
    server = ServerProcess(workdir / "data", api_key=api_key, log_path=workdir / "server.log",
                           env={"MAX_STATE_BATCH": str(MAX_BATCH),
                                "MAX_STREAMS_PER_KEY": str(max(64, args.subscribers + 8))})
    steps: list[dict] = []
    procs: list[SubscriberProc] = []
    try:
        progress("starting kissvdb serve ...")
        limits = httpx.Limits(max_connections=WRITER_THREADS, max_keepalive_connections=WRITER_THREADS)
        with server, httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30, limits=limits) as client:
            progress(f"starting {args.subscribers} subscribers in {args.processes} processes ...")
            procs = start_subscribers(server, client, args.subscribers, args.processes, workdir)
            writer = Writer(client)

            def run_step(rate: float, seconds: float, single_puts: bool) -> dict:
                step = writer.run_step(rate, seconds, single_puts, server.proc.pid, procs)
                caught_up = step["caught_up_s"]
                progress(f"  offered {rate:,.0f} events/s x {args.subscribers}: wrote {step['last'] - step['first'] + 1} "
                         f"events in {step['write_s']:.1f}s; subscribers caught up "
                         f"{'never' if caught_up is None else f'{caught_up:.2f}s'} after; server CPU {step['server_cpu']:.0%}")
                return step

            progress("step 1: 100 writes/s with single PUTs for 10 s ...")
            steps.append(run_step(100, FIRST_STEP_S, single_puts=True))
            for rate in RAMP_RATES:
                progress(f"ramp: {rate:,} events/s (batch_put) for {RAMP_STEP_S:.0f} s ...")
                step = run_step(rate, RAMP_STEP_S, single_puts=False)
                steps.append(step)
                if step["caught_up_s"] is None:
                    break
            stop_subscribers(client, procs)
            server.stop()
    finally:
        kill_subscribers(procs)
        if server.running():
            server.kill9()

    progress("computing delays ...")
    parts = [np.load(p.out_path) for p in procs]
    sub = np.concatenate([part["sub"] + sum(pp.count for pp in procs[:i]) for i, part in enumerate(parts)])
    seqs = np.concatenate([part["seq"] for part in parts])
    times = np.concatenate([part["t"] for part in parts])
    ack = np.zeros(max(writer.acks) + 1)
    sent = np.zeros(max(writer.acks) + 1)
    for k, t in writer.acks.items():
        ack[k] = t
        sent[k] = writer.sends[k]
    n_subs = args.subscribers
    rows, best, peak = [], None, None
    first_p99 = first_send_p99 = None
    for step in steps:
        mask = (seqs >= step["first"]) & (seqs <= step["last"])
        delays_ms = (times[mask] - ack[seqs[mask]]) * 1000
        from_send_ms = (times[mask] - sent[seqs[mask]]) * 1000
        events = step["last"] - step["first"] + 1
        expected = events * n_subs
        got = int(mask.sum())
        unique = len(np.unique(sub[mask].astype(np.int64) * (1 << 40) + seqs[mask]))
        p50, p99, mx = (np.percentile(delays_ms, [50, 99]).tolist() + [float(delays_ms.max())]) if got else (0, 0, 0)
        span = (times[mask].max() - ack[step["first"]]) if got else 0.0
        delivered_per_s = got / span if span > 0 else 0.0
        offered_per_s = events * n_subs / step["write_s"]
        kept_pace = events / step["write_s"] >= 0.9 * step["rate"]  # the server took the writes as offered
        sustained = (got == expected and unique == got and p99 < SUSTAIN_P99_MS and kept_pace
                     and step["caught_up_s"] is not None)
        peak = max(peak or 0.0, delivered_per_s)
        send_p99 = float(np.percentile(from_send_ms, 99)) if got else 0.0
        if step["single"]:
            first_p99 = p99
            first_send_p99 = send_p99
        if sustained and (best is None or delivered_per_s > best):
            best = delivered_per_s
        rows.append([
            f"{step['rate']:,.0f}" + (" (PUT)" if step["single"] else " (batch)"),
            f"{events / step['write_s']:,.0f}", f"{offered_per_s:,.0f}", f"{delivered_per_s:,.0f}",
            f"{got:,}/{expected:,}" + ("" if unique == got else f" ({got - unique} dup)"),
            f"{p50:.1f}", f"{p99:.1f}", f"{mx:.1f}", f"{send_p99:.1f}", f"{step['write_p50']:.1f} / {step['write_p99']:.1f}",
            f"{step['server_cpu']:.0%}", f"{step['subs_cpu']:.0%}", "yes" if sustained else "no",
        ])
    shutil.rmtree(workdir, ignore_errors=True)

    steps_table = table(["offered events/s", "written events/s", "offered deliveries/s", "delivered/s",
                         "deliveries", "ack->delivery p50 ms", "p99 ms", "max ms", "send->delivery p99 ms", "write p50/p99 ms",
                         "server CPU", "subscribers CPU", "sustained"], rows)
    summary = table(["figure", "value", "target", "verdict"], [
        [f"p99 ack->delivery, 100 writes/s x {n_subs} subscribers", f"{first_p99:.1f} ms" if first_p99 is not None else "n/a",
         f"< {DELAY_TARGET_MS:.0f} ms", verdict(first_p99 is not None and first_p99 < DELAY_TARGET_MS)],
        ["p99 write sent->delivery, same step", f"{first_send_p99:.1f} ms" if first_send_p99 is not None else "n/a",
         "(report)", "-"],
        ["highest sustained deliveries/s", f"{best:,.0f}" if best else "n/a", "(report)", "-"],
        ["peak delivered/s in any step (writes no longer at the offered rate)", f"{peak:,.0f}" if peak else "n/a",
         "(report)", "-"],
    ])
    notes = (f"{n_subs} subscribers in {args.processes} processes (raw sockets, Trio), subscribed with "
             f"`key_prefix=fan/` from the current offset; writer in the bench process (httpx, open loop: each write "
             f"sent at its due time from a pool of {WRITER_THREADS} threads). Step 1 uses single "
             f"PUTs; ramp steps use batch_put (rate/100 operations per request, 100 requests/s; server started with "
             f"MAX_STATE_BATCH={MAX_BATCH}). Delay is measured to the writer's receipt of the ack, so a delivery "
             f"that beats the ack back to the writer counts as negative. 'sustained' = every "
             f"subscriber got every event exactly once, p99 ack->delivery < {SUSTAIN_P99_MS:.0f} ms, and the writes "
             f"went in at >= 90% of the offered rate. delivered/s = deliveries / "
             f"(last receipt - first ack of the step). Subscribers, writer and server share the machine.")
    print(steps_table)
    print()
    print(summary)
    if not args.no_write_docs:
        write_section("sse_fanout", "SSE fan-out (bench/sse_fanout.py)", f"{notes}\n\n{steps_table}\n\n{summary}\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        host, port, key, since, count, out = sys.argv[2:8]
        subscriber_main(host, int(port), key, int(since), int(count), out)
    else:
        sys.exit(main())

"""KV over real HTTP: durable PUT and GET /v1/state/{key} against trivial routes of the same app.

Starts `kissvdb serve` (a subprocess, data on disk, port 0 on 127.0.0.1) and drives it with `wrk`
(C, event loop, one thread by default) so the load generator does not steal the Python server's
CPU the way a Python client would on a small box. Measured in one run:

- PUT /v1/state/{key}, 100-byte JSON values on distinct, scattered keys, at 1, 16 and 64
  connections: requests/s, p50/p99 latency, fsyncs/s and writes per fsync (deltas of the WAL
  counters in /v1/metrics around each run);
- POST /v1/_bench/echo (parses the same JSON body, writes nothing) at the same concurrencies:
  the ceiling for PUT;
- GET /v1/state/{key} on 10,000 preloaded keys and GET /v1/_bench/ping, at 64 connections.

Targets (issue 2): PUT@64 >= 60% of echo@64; GET@64 >= 80% of ping@64.

    .venv/bin/python bench/http_kv.py [--duration 4] [--rounds 5] [--wrk-threads 1] [--no-write-docs]

Needs `wrk` on PATH (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wrk  # noqa: E402
from report import median, progress, table, verdict, write_section  # noqa: E402

from tests.e2e.server import ServerProcess, parse_metrics  # noqa: E402

FSYNC_METRIC = "kissvdb_wal_fsync_total"
RECORDS_METRIC = "kissvdb_wal_records_total"
VALUE_BYTES = 100  # serialized JSON value: a string of 98 characters plus its quotes
GET_KEYS = 10_000
PUT_TARGET = 0.60
GET_TARGET = 0.80

VALUE_JSON = '{"value":"' + "v" * (VALUE_BYTES - 2) + '"}'


def put_script(api_key: str) -> str:
    """PUT /v1/state/{key}: 100-byte values on distinct keys scattered over the key space."""
    return wrk.script('"/v1/state/bench/" .. run .. "/" .. tid .. "/" .. scattered()', method="PUT",
                      body=wrk.lua_str(VALUE_JSON), headers=wrk.bearer(api_key, "application/json"))


def get_script(api_key: str) -> str:
    """GET /v1/state/{key}, uniformly over the keys `preload` wrote."""
    return wrk.script(f'string.format("/v1/state/bench/get/%06d", rand(0, {GET_KEYS - 1}))', headers=wrk.bearer(api_key))


def echo_script(api_key: str) -> str:
    return wrk.script('"/v1/_bench/echo"', method="POST", body=wrk.lua_str(VALUE_JSON),
                      headers=wrk.bearer(api_key, "application/json"))


def ping_script(api_key: str) -> str:
    return wrk.script('"/v1/_bench/ping"', headers=wrk.bearer(api_key))


@dataclass
class Result:
    name: str
    connections: int
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p99_ms: float
    fsyncs: float | None = None
    records: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def fsyncs_per_s(self) -> float | None:
        return None if self.fsyncs is None else self.fsyncs / self.duration_s

    @property
    def writes_per_fsync(self) -> float | None:
        if self.fsyncs is None or self.records is None or not self.fsyncs:
            return None
        return self.records / self.fsyncs


def metrics(client: httpx.Client) -> dict[str, float]:
    resp = client.get("/v1/metrics")
    resp.raise_for_status()
    return parse_metrics(resp.text)


def measure(server, client, name, script, connections, duration_s, threads, wal=False) -> Result:
    progress(f"{name} @ {connections} connections for {duration_s}s ...")
    before = metrics(client) if wal else {}
    out = wrk.run(server.base_url, script, connections, duration_s, threads=threads)
    after = metrics(client) if wal else {}
    result = Result(name, connections, out.requests, out.duration_s, out.errors + out.bad_status,
                    out.p50_ms, out.p99_ms)
    if wal and FSYNC_METRIC in after and RECORDS_METRIC in after:
        result.fsyncs = after[FSYNC_METRIC] - before.get(FSYNC_METRIC, 0.0)
        result.records = after[RECORDS_METRIC] - before.get(RECORDS_METRIC, 0.0)
    elif wal:
        progress(f"  /v1/metrics lacks {FSYNC_METRIC} / {RECORDS_METRIC}: fsync figures unavailable")
    progress(f"  {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
             f"{result.errors} errors" + (f", {result.writes_per_fsync:.1f} writes/fsync" if result.writes_per_fsync else ""))
    return result


def preload(client: httpx.Client) -> None:
    """GET_KEYS keys `bench/get/NNNNNN` with 100-byte values, through batch_put."""
    progress(f"preloading {GET_KEYS:,} keys for GET ...")
    value = "v" * (VALUE_BYTES - 2)
    for start in range(0, GET_KEYS, 256):
        ops = [{"key": f"bench/get/{i:06d}", "value": value} for i in range(start, min(start + 256, GET_KEYS))]
        resp = client.post("/v1/state/batch_put", json={"operations": ops})
        resp.raise_for_status()
        assert all(r["status"] == "ok" for r in resp.json()["results"])


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of the whole set; each figure is the median, each ratio the median of per-round ratios")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (the box is shared with the server)")
    parser.add_argument("--data", help="data directory (default: a fresh temp dir, removed after)")
    parser.add_argument("--no-write-docs", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = parser.parse_args()
    wrk.require_wrk()

    workdir = Path(tempfile.mkdtemp(prefix="kissvdb-bench-http-"))
    data_dir = Path(args.data) if args.data else workdir / "data"
    api_key = "bench-key"
    scripts = {name: wrk.write_script(workdir, name, build(api_key)) for name, build in
               {"put": put_script, "echo": echo_script, "get": get_script, "ping": ping_script}.items()}

    plan = [("put", 1), ("echo", 1), ("put", 16), ("echo", 16), ("put", 64), ("echo", 64), ("get", 64), ("ping", 64)]
    names = {"put": "PUT /v1/state/{key}", "echo": "POST /v1/_bench/echo", "get": "GET /v1/state/{key}",
             "ping": "GET /v1/_bench/ping"}
    results: dict[tuple[str, int], list[Result]] = {step: [] for step in plan}
    load_before = loadavg()
    server = ServerProcess(data_dir, api_key=api_key, log_path=workdir / "server.log", env={"BENCH_ROUTES": "1"})
    try:
        progress(f"starting kissvdb serve on {data_dir} ...")
        with server, httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client:
            progress(f"listening on {server.base_url}")
            for probe in ("/v1/_bench/ping",):
                if client.get(probe).status_code != 200:
                    sys.exit(f"{probe} is not served; the trivial routes are needed as the ceiling")
            preload(client)
            progress("warm-up (3 s PUT @ 16, not recorded)")
            wrk.run(server.base_url, scripts["put"], 16, 3, threads=args.wrk_threads)
            for round_ in range(args.rounds):
                progress(f"round {round_ + 1}/{args.rounds}")
                for kind, conns in plan:
                    results[(kind, conns)].append(measure(server, client, names[kind], scripts[kind], conns,
                                                          args.duration, args.wrk_threads, wal=(kind == "put")))
            final = metrics(client)
            server.stop()
    finally:
        if server.running():
            server.kill9()
        if not args.data:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = loadavg()

    rows = []
    for (kind, conns), runs in results.items():
        fsyncs = sum(r.fsyncs for r in runs) if all(r.fsyncs is not None for r in runs) else None
        records = sum(r.records for r in runs) if all(r.records is not None for r in runs) else None
        seconds = sum(r.duration_s for r in runs)
        rows.append([
            names[kind], conns, fmt(median([r.rps for r in runs])),
            " / ".join(fmt(r.rps) for r in runs),
            fmt(median([r.p50_ms for r in runs]), ".2f"), fmt(median([r.p99_ms for r in runs]), ".2f"),
            sum(r.errors for r in runs),
            fmt(fsyncs / seconds) if kind == "put" and fsyncs is not None else ("n/a" if kind == "put" else ""),
            fmt(records / fsyncs, ".1f") if kind == "put" and fsyncs else ("n/a" if kind == "put" else ""),
        ])
    main_table = table(["workload", "connections", "req/s (median)", "req/s per round", "p50 ms", "p99 ms",
                        "errors", "fsyncs/s", "writes/fsync"], rows)

    def ratio_row(label, ours, trivial, target):
        per_round = [o.rps / t.rps if t.rps else 0.0 for o, t in zip(results[ours], results[trivial])]
        value = median(per_round)
        return [label, f"{value:.0%}", " / ".join(f"{r:.0%}" for r in per_round),
                f">= {target:.0%}" if target else "-", verdict(value >= target) if target else "-"]

    ratio_rows = [ratio_row(f"PUT@{c} / echo@{c}", ("put", c), ("echo", c), PUT_TARGET if c == 64 else None)
                  for c in (1, 16, 64)]
    ratio_rows.append(ratio_row("GET@64 / ping@64", ("get", 64), ("ping", 64), GET_TARGET))
    ratios_table = table(["ratio (ours / trivial, same round)", "median", "per round", "target", "verdict"], ratio_rows)

    extra = (f"wrk {args.wrk_threads} thread(s), {args.rounds} rounds x {args.duration} s per row (rows interleaved, "
             f"ours next to its trivial route); 100-byte JSON values; PUTs on distinct scattered keys (fresh data dir); "
             f"GETs on {GET_KEYS:,} preloaded keys. fsyncs/s and writes/fsync are deltas of `{FSYNC_METRIC}` / "
             f"`{RECORDS_METRIC}` over the PUT rows. Server and wrk share the machine; load average "
             f"{load_before} before, {load_after} after (other work on the box shows up here).")
    print(main_table)
    print()
    print(ratios_table)
    wal_series = {k: v for k, v in final.items() if k.startswith("kissvdb_wal")}
    if wal_series:
        print("\nWAL series at the end:", ", ".join(f"{k}={v:g}" for k, v in sorted(wal_series.items())))
    if not args.no_write_docs:
        write_section("http_kv", "KV over HTTP (bench/http_kv.py)", f"{extra}\n\n{main_table}\n\n{ratios_table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""kissvdb's HTTP front against etcd, Chroma and a plain trio + httptools hello world (issue 8).

Every figure of issue 8's table, as a ratio of two measurements taken back to back in the same
round of one run on one box (the box is shared and noisy, so only same-round ratios mean much):

- GET /v1/health @64 vs GET / of bench/http_ceiling.py @64: >= 0.40;
- PUT /v1/state/{key} @64, 100-byte values, vs etcd /v3/kv/put @64: >= 1.0;
- GET /v1/state/{key} @64 over 10k preloaded keys vs etcd /v3/kv/range @64, same keys: >= 1.5;
- PUT @1 p50 latency vs etcd put @1 p50: <= 2.0;
- HNSW search over HTTP, 20k real embeddings, k=10, 8 connections, vs Chroma's query: >= 3.0,
  at recall@10 >= 0.95 and >= Chroma's;
- JSON upsert_batch ingest (vectors/s, 100 per request) vs Chroma's upsert of the same: >= 3.0;
- PUT p99 (sent -> ack) with 100 SSE subscribers tailing 100 writes/s vs no subscribers: <= 2.0.

Servers, all on 127.0.0.1, all started by this script on temp dirs and stopped at the end:
- kissvdb: one `kissvdb serve` per server choice (`--kissvdb-server ours|hypercorn|both`). Once the
  CLI has `--server`, "hypercorn" runs `kissvdb serve --server hypercorn` (the old path) and
  "ours" runs plain `kissvdb serve` (the new default); until then plain `kissvdb serve` is
  hypercorn and "ours" is reported as not available. Which server answered is shown from the
  `Server` header of /v1/health.
- etcd (when an `etcd` binary is on PATH; Debian: `apt-get install -y etcd-server etcd-client`):
  one member, fresh data dir, default settings. Spoken to through its JSON gateway on the client
  port (`POST /v3/kv/put`, `/v3/kv/range`, base64 keys and values), so both sides are HTTP + JSON.
  Its range reads use etcd's default, linearizable consistency (`serializable` not set).
- Chroma: `chroma run --path <tmp> --port N` from chromadb 1.5.9, the `chroma` extra of
  pyproject.toml (`.venv/bin/pip install -e '.[bench,chroma]'`; it installs beside our pins without
  conflict). Only its server binary is used, over HTTP, so a `chroma` from a separate venv works as
  well: pass `--chroma-bin PATH`. HNSW with M=16, ef_construction=200 (kissvdb's values), cosine,
  and `ef_search` equal to kissvdb's search ef (bench/vector_targets.py).
- the ceiling: bench/http_ceiling.py, a hello world on plain trio sockets + httptools. Its req/s,
  far above every server's, shows wrk is not what limits them.

Load: wrk with one thread (bench/wrk.py), so the client needs a small share of one core; each row
reports wrk's own CPU and the server's CPU (share of one core, and CPU microseconds per request).
Before each run the server is let go idle (bounded wait), so work still in flight from the
previous run is not counted in the next.
Vector search is measured at recall parity: the same 500 query vectors and ground truth
(`*.queries.f16.npy`, `*.gt10.npy`), recall@10 measured over HTTP with one Python loop for both
servers (bench/vector_targets.py). ef: the smallest of EF_LADDER at which kissvdb reaches
--target-recall; Chroma's collection is created with that ef; if kissvdb's recall at it is still
below Chroma's, kissvdb's ef alone is raised (steps of 4) until it is not, so the comparison
never favours kissvdb on recall. wrk replays the 500 query bodies (same text for both).
Ingest: wrk replays 50 bodies of 100 vectors each (5,000 distinct real vectors), every id fresh
(run nonce, thread, request, position), into an empty HNSW collection of each server, at 1 and at
4 connections; each server's figure is its better of the two in the round, because Chroma's
upserts to one collection serialize and slow down sharply with concurrent writers (seconds per
request at 4 connections), which would otherwise decide the ratio.

SSE figure: on each kissvdb server, `--sse-rounds` rounds of two 10 s steps of single PUTs at
100 writes/s, open loop, from bench/sse_fanout.py's writer (16 threads, httpx): first with no
subscriber, then with 100 subscribers (2 processes, raw sockets) tailing `/v1/stream` with
`key_prefix=fan/`; after the step every subscriber must have seen the last write. The figure is
p99(sent -> ack) with subscribers / p99 without, each over all rounds' writes.

    .venv/bin/python bench/compare_http.py [--kissvdb-server both] [--rounds 5] [--duration 5]
        [--dataset ../shared/data/minilm-docstrings-20k] [--no-write-docs]

Needs wrk (apt-get install -y wrk); etcd and Chroma are skipped, with a note, when absent.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import servers  # noqa: E402
import wrk  # noqa: E402
from http_kv import GET_KEYS, VALUE_BYTES, get_script, preload, put_script  # noqa: E402
from report import median, progress, table, verdict, write_section  # noqa: E402
from vector_targets import ChromaVectors, KissvdbVectors, recall_at_k  # noqa: E402

API_KEY = "bench-key"
# The one-off compaction after the 20k-vector preload may outlast the default 30 s request deadline
# on a busy box (408); no measured request comes near this one.
# MAX_STREAMS_PER_KEY: the SSE figure opens 100 streams with one key (the default allows 64).
KISSVDB_ENV = {"REQUEST_TIMEOUT_SECS": "600", "MAX_STREAMS_PER_KEY": "256"}
EF_LADDER = (16, 24, 32, 40, 48, 64, 96, 128, 192, 256)
K = 10
INGEST_ITEMS = 100  # vectors per upsert request (under MAX_BODY_BYTES as JSON)
INGEST_TEMPLATES = 50  # distinct request bodies (5,000 distinct vectors), replayed with fresh ids
ETCD_VALUE_B64 = base64.b64encode(b"v" * VALUE_BYTES).decode()

# figure -> (title, target, higher is better, unit)
FIGURES = {
    "health": ("GET /v1/health @64 vs trio+httptools hello world @64", 0.40, True, "req/s"),
    "put64": ("PUT /v1/state/{key} @64, 100-byte values, vs etcd put @64", 1.0, True, "req/s"),
    "get64": ("GET /v1/state/{key} @64, 10k keys, vs etcd range @64 (linearizable)", 1.5, True, "req/s"),
    "put1": ("PUT @1 p50 latency vs etcd put @1 p50", 2.0, False, "p50 ms"),
    "search": ("HNSW search over HTTP, 20k real embeddings, k=10, 8 connections, vs Chroma", 3.0, True, "queries/s"),
    "ingest": (f"JSON upsert_batch ingest ({INGEST_ITEMS} vectors/request, best of 1 and 4 connections) vs Chroma "
               "upsert", 3.0, True, "vectors/s"),
}


@dataclass
class Workload:
    figure: str
    system: str  # "hypercorn", "ours", "etcd", "Chroma", "ceiling"
    service: object
    script: Path
    connections: int
    per_request: int = 1  # items a request carries (vectors for ingest)
    runs: list[wrk.WrkResult] = field(default_factory=list)

    def value(self, run: wrk.WrkResult) -> float:
        return run.p50_ms if self.figure == "put1" else run.rps * self.per_request


# ---- set-up -------------------------------------------------------------------------------------


def preload_etcd(base_url: str) -> None:
    """The GET keys, 100-byte values, through /v3/kv/txn (etcd allows 128 operations per txn)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    progress(f"preloading {GET_KEYS:,} keys into etcd ...")
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for start in range(0, GET_KEYS, 100):
            ops = [{"requestPut": {"key": b64(f"bench/get/{i:06d}"), "value": ETCD_VALUE_B64}}
                   for i in range(start, min(start + 100, GET_KEYS))]
            client.post("/v3/kv/txn", json={"success": ops}).raise_for_status()
        answer = client.post("/v3/kv/range", json={"key": b64(f"bench/get/{GET_KEYS - 1:06d}")}).json()
        assert answer.get("count") == "1", answer


def etcd_scripts(workdir: Path) -> dict[str, Path]:
    put_body = """'{"key":"' .. b64("bench/" .. run .. "/" .. tid .. "/" .. scattered()) .. '","value":"%s"}'""" % (
        ETCD_VALUE_B64)
    get_body = f"""'{{"key":"' .. b64(string.format("bench/get/%06d", rand(0, {GET_KEYS - 1}))) .. '"}}'"""
    headers = {"Content-Type": "application/json"}
    return {"put": wrk.write_script(workdir, "etcd-put", wrk.script('"/v3/kv/put"', method="POST", body=put_body,
                                                                     headers=headers)),
            "get": wrk.write_script(workdir, "etcd-get", wrk.script('"/v3/kv/range"', method="POST", body=get_body,
                                                                     headers=headers))}


def dataset_paths(prefix: str | None) -> tuple[Path, Path, Path] | None:
    candidates = [Path(prefix)] if prefix else [BENCH.parent.parent / "shared" / "data" / "minilm-docstrings-20k",
                                                BENCH.parent.parent.parent / "shared" / "data" / "minilm-docstrings-20k"]
    for p in candidates:
        paths = tuple(Path(f"{p}.{part}.npy") for part in ("base.f16", "queries.f16", "gt10"))
        if all(x.exists() for x in paths):
            return paths
    return None


def body_script(workdir: Path, name: str, target, path: str, lines: list[str], templated: bool) -> Path:
    """A wrk script replaying `lines` as bodies (with fresh ids for `@ID@` marks when templated)."""
    data = workdir / f"{name}.bodies"
    data.write_text("\n".join(lines) + "\n")
    if templated:
        prelude = (f"TEMPLATES = {{}}\nfor _, line in ipairs(read_lines({wrk.lua_str(str(data))})) do\n"
                   "  TEMPLATES[#TEMPLATES + 1] = split_ids(line)\nend")
        body = "fill_ids(cycle(TEMPLATES))"
    else:
        prelude, body = f"BODIES = read_lines({wrk.lua_str(str(data))})", "cycle(BODIES)"
    return wrk.write_script(workdir, name, wrk.script(wrk.lua_str(path), method="POST", body=body,
                                                      headers=target.headers, prelude=prelude))


@dataclass
class VectorSetup:
    ef: dict[str, int]  # system -> search ef
    recall: dict[str, float]
    load_s: dict[str, float]
    workloads: list[Workload]


def recall_ladder(target, queries, truth, target_recall: float) -> tuple[int, float]:
    for ef in EF_LADDER:
        target.set_ef("search", ef)
        recall = recall_at_k(target, "search", queries, truth, K)
        progress(f"  kissvdb ef={ef}: recall@{K} {recall:.4f}")
        if recall >= target_recall:
            return ef, recall
    return ef, recall


def setup_vectors(workdir: Path, kissvdbs: dict, chroma, paths, target_recall: float) -> VectorSetup:
    base, queries, truth = (np.load(p) for p in paths)
    base, queries = base.astype(np.float32), queries.astype(np.float32)
    dim = base.shape[1]
    targets = {name: KissvdbVectors(svc.base_url, API_KEY) for name, svc in kissvdbs.items()}
    setup = VectorSetup({}, {}, {}, [])
    for name, target in targets.items():
        progress(f"loading {len(base):,} x {dim} into kissvdb ({name}) HNSW (CBOR batches, then compaction) ...")
        t0 = time.monotonic()
        target.create("search", dim, EF_LADDER[0])
        target.load("search", base)
        setup.load_s[name] = time.monotonic() - t0
        target.create("ingest", dim, EF_LADDER[0])
    first = next(iter(targets))
    progress(f"choosing ef: the smallest at which kissvdb ({first}) reaches recall@{K} >= {target_recall}")
    ef, setup.recall[first] = recall_ladder(targets[first], queries, truth, target_recall)
    chroma_target = None
    if chroma is not None:
        chroma_target = ChromaVectors(chroma.base_url)
        progress(f"loading {len(base):,} into Chroma (ef_search={ef}; JSON batches of 1,000) ...")
        t0 = time.monotonic()
        chroma_target.create("search", dim, ef)
        chroma_target.load("search", base)
        setup.load_s["Chroma"] = time.monotonic() - t0
        chroma_target.create("ingest", dim, ef)
        setup.ef["Chroma"] = ef
        setup.recall["Chroma"] = recall_at_k(chroma_target, "search", queries, truth, K)
        progress(f"  Chroma ef={ef}: recall@{K} {setup.recall['Chroma']:.4f}")
    floor = max(target_recall, setup.recall.get("Chroma", 0.0))
    for name, target in targets.items():
        mine = ef
        target.set_ef("search", mine)
        recall = setup.recall.get(name) if name == first else recall_at_k(target, "search", queries, truth, K)
        while recall < floor and mine < 4 * ef:
            mine += 4
            target.set_ef("search", mine)
            recall = recall_at_k(target, "search", queries, truth, K)
            progress(f"  kissvdb ({name}) ef={mine}: recall@{K} {recall:.4f}")
        setup.ef[name], setup.recall[name] = mine, recall
    all_targets = dict(targets, **({"Chroma": chroma_target} if chroma_target else {}))
    services = dict(kissvdbs, **({"Chroma": chroma} if chroma else {}))
    templates = [base[(t * INGEST_ITEMS) % len(base):][:INGEST_ITEMS] for t in range(INGEST_TEMPLATES)]
    for name, target in all_targets.items():
        bodies = [target.search_body("search", q, K) for q in queries]
        setup.workloads.append(Workload("search", name, services[name], body_script(
            workdir, f"search-{name}", target, target.search_path("search"), bodies, templated=False), 8))
        ingest = body_script(workdir, f"ingest-{name}", target, target.upsert_path("ingest"),
                             [target.upsert_template(t) for t in templates], templated=True)
        setup.workloads += [Workload("ingest", name, services[name], ingest, conns, INGEST_ITEMS) for conns in (1, 4)]
    return setup


# ---- measuring ----------------------------------------------------------------------------------


def run_rounds(workloads: list[Workload], rounds: int, duration: float) -> None:
    """Every workload once per round, a figure's systems back to back; the order of the systems
    within a figure turns by one each round, so none always runs first (or last)."""
    figures = list(dict.fromkeys(w.figure for w in workloads))
    for r in range(rounds):
        progress(f"round {r + 1}/{rounds} (load average {os.getloadavg()[0]:.2f})")
        for figure in figures:
            group = [w for w in workloads if w.figure == figure]
            shift = r % len(group)
            for w in group[shift:] + group[:shift]:
                settle(w.service.pid)
                out = wrk.run(w.service.base_url, w.script, w.connections, duration, watch_pids=(w.service.pid,))
                w.runs.append(out)
                progress(f"  {figure:7} {w.system:10} @{w.connections:<3} {w.value(out):>10,.1f} {FIGURES[figure][3]}"
                         f"  p50 {out.p50_ms:.2f} ms  p99 {out.p99_ms:.2f} ms  errors {out.errors}/{out.bad_status}"
                         f"  server CPU {out.server_cpu or 0:.0%}  wrk CPU {out.client_cpu:.0%}")


def settle(pid: int, timeout_s: float = 15.0, window_s: float = 0.25, idle_share: float = 0.10) -> None:
    """Wait (bounded) until a server is idle: requests still in flight when wrk stopped (Chroma's
    concurrent upserts take seconds each) must not spend CPU inside the next measurement."""
    from report import process_cpu_seconds

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = process_cpu_seconds(pid)
        time.sleep(window_s)  # the measuring window of a bounded poll
        if process_cpu_seconds(pid) - before < idle_share * window_s:
            return


def warm_up(workloads: list[Workload]) -> None:
    progress("warm-up: 2 s of every workload, not recorded")
    for w in workloads:
        wrk.run(w.service.base_url, w.script, w.connections, 2)


@dataclass
class SseResult:
    quiet_ms: list[float] = field(default_factory=list)  # write latencies, no subscribers
    busy_ms: list[float] = field(default_factory=list)  # with subscribers
    per_round: list[tuple[float, float]] = field(default_factory=list)  # (p99 quiet, p99 busy)
    complete: bool = True  # every subscriber saw every write, every round
    server_cpu: list[tuple[float, float]] = field(default_factory=list)

    @staticmethod
    def p99(values: list[float]) -> float:
        return float(np.percentile(values, 99)) if values else float("nan")


def sse_figure(service, workdir: Path, rounds: int, subscribers: int, rate: float, seconds: float) -> SseResult:
    import sse_fanout

    result = SseResult()
    limits = httpx.Limits(max_connections=sse_fanout.WRITER_THREADS, max_keepalive_connections=sse_fanout.WRITER_THREADS)
    server = service.server
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30, limits=limits) as client:
        writer = sse_fanout.Writer(client)
        for r in range(rounds):
            quiet = writer.run_step(rate, seconds, True, service.pid)
            procs = sse_fanout.start_subscribers(server, client, subscribers, 2, workdir, tag=f"{service.name}{r}")
            try:
                busy = writer.run_step(rate, seconds, True, service.pid, procs)
                sse_fanout.stop_subscribers(client, procs)
            finally:
                sse_fanout.kill_subscribers(procs)
            result.complete &= busy["caught_up_s"] is not None
            result.quiet_ms += quiet["write_ms"]
            result.busy_ms += busy["write_ms"]
            result.per_round.append((SseResult.p99(quiet["write_ms"]), SseResult.p99(busy["write_ms"])))
            result.server_cpu.append((quiet["server_cpu"], busy["server_cpu"]))
            progress(f"  sse {service.name} round {r + 1}/{rounds}: PUT p99 {result.per_round[-1][0]:.1f} ms with no "
                     f"subscriber, {result.per_round[-1][1]:.1f} ms with {subscribers}; subscribers caught up: "
                     f"{busy['caught_up_s'] is not None}")
    return result


# ---- report -------------------------------------------------------------------------------------

BASELINE = {"health": "ceiling", "put64": "etcd", "get64": "etcd", "put1": "etcd", "search": "Chroma",
            "ingest": "Chroma"}
LABEL = {"hypercorn": "kissvdb (hypercorn, old path)", "ours": "kissvdb (own server)",
         "ceiling": "trio+httptools hello world"}  # start_services adds etcd's and Chroma's, with versions


def find(workloads: list[Workload], figure: str, system: str) -> Workload | None:
    return next((w for w in workloads if w.figure == figure and w.system == system and w.runs), None)


def round_values(workloads: list[Workload], figure: str, system: str) -> list[float] | None:
    """A system's value of a figure in each round: its best over the figure's connection counts."""
    mine = [w for w in workloads if w.figure == figure and w.system == system and w.runs]
    if not mine:
        return None
    best = max if FIGURES[figure][2] else min
    return [best(w.value(w.runs[r]) for w in mine) for r in range(min(len(w.runs) for w in mine))]


def figure_cells(workloads, figure: str, flavour: str, vec: VectorSetup | None, target_recall: float) -> list[str]:
    _, target, higher, unit = FIGURES[figure]
    mine, base = round_values(workloads, figure, flavour), round_values(workloads, figure, BASELINE[figure])
    if mine is None or base is None:
        return ["not run", "-", "n/a"]
    per_round = [a / b for a, b in zip(mine, base)]
    value = median(per_round)
    ok = value >= target if higher else value <= target
    shown = f"{median(mine):,.{2 if figure == 'put1' else 0}f} {unit}"
    if figure == "search" and vec is not None:
        recall, theirs = vec.recall[flavour], vec.recall.get("Chroma", 0.0)
        ok = ok and recall >= target_recall and recall >= theirs
        shown += f" (ef {vec.ef[flavour]}, recall {recall:.3f})"
    return [shown, f"{value:.2f}x ({' / '.join(f'{x:.2f}' for x in per_round)})", verdict(ok)]


def summary_table(workloads, flavours, vec, sse: dict[str, SseResult], target_recall: float) -> str:
    headers = ["figure", "target", "baseline (median)"]
    for flavour in flavours:
        headers += [LABEL[flavour], "ratio: median (per round)", "verdict"]
    rows = []
    for figure, (title, target, higher, unit) in FIGURES.items():
        base = round_values(workloads, figure, BASELINE[figure])
        base_cell = "not run" if base is None else (
            f"{LABEL.get(BASELINE[figure], BASELINE[figure])}: {median(base):,.{2 if figure == 'put1' else 0}f} {unit}")
        if figure == "search" and base is not None and vec is not None:
            base_cell += f" (ef {vec.ef['Chroma']}, recall {vec.recall['Chroma']:.3f})"
        row = [title, f"{'>=' if higher else '<='} {target:.2f}x", base_cell]
        for flavour in flavours:
            row += figure_cells(workloads, figure, flavour, vec, target_recall)
        rows.append(row)
    row = ["PUT p99 (sent -> ack), 100 SSE subscribers tailing 100 writes/s, vs no subscribers", "<= 2.00x",
           "same server, same load, no subscribers"]
    for flavour in flavours:
        s = sse.get(flavour)
        if s is None:
            row += ["not run", "-", "n/a"]
            continue
        value = s.p99(s.busy_ms) / s.p99(s.quiet_ms)
        row += [f"p99 {s.p99(s.busy_ms):.1f} ms vs {s.p99(s.quiet_ms):.1f} ms",
                f"{value:.2f}x ({' / '.join(f'{b / q:.2f}' for q, b in s.per_round)})",
                verdict(value <= 2.0 and s.complete) + ("" if s.complete else " (deliveries incomplete)")]
    rows.append(row)
    return table(headers, rows)


def detail_table(workloads: list[Workload]) -> str:
    rows = []
    for w in workloads:
        if not w.runs:
            continue
        unit = FIGURES[w.figure][3]
        cpu = [r.server_cpu for r in w.runs if r.server_cpu is not None]
        per_req = [r.server_us_per_request for r in w.runs if r.server_us_per_request is not None]
        rows.append([w.figure, LABEL.get(w.system, w.system), w.connections,
                     f"{median([w.value(r) for r in w.runs]):,.{2 if w.figure == 'put1' else 0}f} {unit}",
                     " / ".join(f"{w.value(r):,.{2 if w.figure == 'put1' else 0}f}" for r in w.runs),
                     f"{median([r.rps for r in w.runs]):,.0f}",
                     f"{median([r.p50_ms for r in w.runs]):.2f}", f"{median([r.p99_ms for r in w.runs]):.2f}",
                     f"{sum(r.errors for r in w.runs)}/{sum(r.bad_status for r in w.runs)}",
                     f"{median(cpu):.0%}" if cpu else "?", f"{median(per_req):,.0f}" if per_req else "?",
                     f"{median([r.client_cpu for r in w.runs]):.0%}"])
    return table(["figure", "server", "conns", "median", "per round", "req/s", "p50 ms", "p99 ms",
                  "errors (socket/status)", "server CPU", "server CPU us/req", "wrk CPU"], rows)


def ceiling_line(workloads: list[Workload]) -> str:
    ceiling = find(workloads, "health", "ceiling")
    if ceiling is None:
        return "The ceiling fixture was not run."
    top = median([r.rps for r in ceiling.runs])
    others = [(f"{LABEL.get(w.system, w.system)} {w.figure}@{w.connections}", median([r.rps for r in w.runs]))
              for w in workloads if w.runs and w.system != "ceiling" and w.connections >= 8]
    name, best = max(others, key=lambda x: x[1]) if others else ("-", 0.0)
    wrk_cpu = median([r.client_cpu for r in ceiling.runs])
    return (f"Client headroom: the plain trio + httptools hello world served {top:,.0f} req/s with the same wrk "
            f"(one thread, {wrk_cpu:.0%} of one core), {top / best:.1f}x the fastest server row above "
            f"({name}, {best:,.0f} req/s); so wrk is not what limits any server here." if best else "")


def vector_table(vec: VectorSetup) -> str:
    return table(["server", "search ef", f"recall@{K} (500 queries)", "load 20k vectors, s (not a figure)"],
                 [[LABEL.get(name, name), vec.ef[name], f"{vec.recall[name]:.4f}",
                   f"{vec.load_s[name]:.0f}" if name in vec.load_s else "-"] for name in vec.ef])


def sse_table(sse: dict[str, SseResult]) -> str:
    rows = []
    for name, s in sse.items():
        rows.append([LABEL[name], len(s.quiet_ms), f"{np.median(s.quiet_ms):.1f} / {s.p99(s.quiet_ms):.1f}",
                     f"{np.median(s.busy_ms):.1f} / {s.p99(s.busy_ms):.1f}",
                     " / ".join(f"{q:.0%} -> {b:.0%}" for q, b in s.server_cpu), "yes" if s.complete else "NO"])
    return table(["server", "writes per condition", "no subscribers: p50 / p99 ms", "100 subscribers: p50 / p99 ms",
                  "server CPU per round (none -> subscribers)", "every subscriber saw every write"], rows)


SSE_METHOD = (
    "How the SSE figure is measured: on each kissvdb server, {rounds} rounds of two steps, each {seconds:.0f} s "
    "of single `PUT /v1/state/fan/N` at {rate:.0f} writes/s sent open loop (each write at its due time, from "
    "a pool of 16 httpx threads in the bench process, bench/sse_fanout.py's `Writer`): first with no "
    "subscriber connected, then with {subs} subscribers (2 processes, raw sockets, Trio) tailing "
    "`GET /v1/stream?since=<durable offset>&key_prefix=fan/`, started before the step and stopped after it. "
    "Latency is sent -> ack at the writer; the figure is the p99 over all rounds' writes with subscribers "
    "divided by the p99 over all rounds' writes without. After each step with subscribers, every subscriber "
    "must have received the step's last write (bounded wait), or the step counts as incomplete.")


def render(args, workloads, flavours, vec, sse, notes, load_before, load_after) -> str:
    import subprocess

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    parts = [
        f"Every figure is a ratio of two measurements taken back to back in the same round of this run, on this "
        f"box; ratio cells show the median of {args.rounds} rounds and each round's ratio. {wrk_version}, one "
        f"thread, {args.duration:.0f} s per run, keep-alive; the systems of one figure run one after the other, "
        f"their order turned by one each round. Load average {load_before} before the run and {load_after} "
        f"after (1/5/15 min): the box is shared with other work, which shows up as spread between rounds.",
        "Set-up: `apt-get install -y wrk etcd-server etcd-client`, `.venv/bin/pip install -e '.[bench,chroma]'`; "
        "the dataset is ../shared/data/minilm-docstrings-20k (20,000 base vectors, 500 queries, dim 384).",
        "\n".join(f"- {n}" for n in notes),
        summary_table(workloads, flavours, vec, sse, args.target_recall),
        ceiling_line(workloads),
    ]
    if vec is not None:
        parts.append(vector_table(vec))
    parts.append("Every measurement (server CPU: the server process's CPU time over the run, as a share of one "
                 "core, and per request; wrk CPU: wrk's own, as a share of one core):")
    parts.append(detail_table(workloads))
    if sse:
        parts.append(SSE_METHOD.format(rounds=args.sse_rounds, seconds=args.sse_seconds, rate=args.sse_rate,
                                       subs=args.sse_subscribers))
        parts.append(sse_table(sse))
    return "\n\n".join(p for p in parts if p) + "\n"


# ---- main ---------------------------------------------------------------------------------------


def start_services(args, workdir: Path, notes: list[str]) -> tuple[dict, dict]:
    """(kissvdb services by server choice, other services by name); every one started."""
    has_flag = servers.serve_supports_server_flag()
    wanted = ["hypercorn", "ours"] if args.kissvdb_server == "both" else [args.kissvdb_server]
    flags = {"hypercorn": "hypercorn" if has_flag else None, "ours": None}
    if not has_flag:
        notes.append("`kissvdb serve` has no `--server` flag at this commit: its only server is hypercorn, measured "
                     "as the old path; kissvdb's own server is not available here.")
        wanted = [w for w in wanted if w != "ours"] or ["hypercorn"]
    others: dict = {}
    kissvdbs: dict = {}
    progress("starting the trio + httptools hello world ...")
    others["ceiling"] = servers.ceiling(workdir).start()
    etcd_bin = servers.etcd_binary()
    if etcd_bin:
        version = servers.etcd_version(etcd_bin)
        progress(f"starting etcd {version} ...")
        others["etcd"] = servers.etcd(workdir, etcd_bin).start()
        LABEL["etcd"] = f"etcd {version}"
        notes.append(f"etcd {version} (`{etcd_bin}`), one member, default settings; range reads linearizable "
                     "(etcd's default).")
    else:
        notes.append("etcd: no `etcd` binary on PATH, its figures were not run (apt-get install -y etcd-server).")
    chroma_bin = args.chroma_bin or servers.chroma_binary()
    if chroma_bin and not args.skip_vectors:
        progress("starting Chroma ...")
        others["Chroma"] = servers.chroma(workdir, chroma_bin).start()
        LABEL["Chroma"] = f"Chroma (chromadb {servers.chroma_version()})"
        shown = os.path.relpath(chroma_bin, BENCH.parent) if chroma_bin.startswith(str(BENCH.parent)) else chroma_bin
        notes.append(f"Chroma: chromadb {servers.chroma_version()} (`{shown} run`).")
    elif not args.skip_vectors:
        notes.append("Chroma: no `chroma` binary (pip install -e '.[chroma]'), its figures were not run.")
    for flavour in wanted:
        progress(f"starting kissvdb serve ({flavour}) ...")
        kissvdbs[flavour] = servers.kissvdb(flavour, workdir, flags[flavour], API_KEY, env=KISSVDB_ENV).start()
        answer = httpx.get(kissvdbs[flavour].base_url + "/v1/health")
        notes.append(f"{LABEL[flavour]}: `REQUEST_TIMEOUT_SECS=600 MAX_STREAMS_PER_KEY=256 kissvdb serve"
                     f"{' --server ' + flags[flavour] if flags[flavour] else ''}` (the long deadline only for the "
                     "compaction after the vector preload; the stream cap for the 100 SSE subscribers of one key), otherwise "
                     "default settings; "
                     f"/v1/health answered with `Server: {answer.headers.get('server', '(none)')}`.")
    return kissvdbs, others


def kv_workloads(workdir: Path, kissvdbs: dict, others: dict) -> list[Workload]:
    health = wrk.write_script(workdir, "health", wrk.script('"/v1/health"'))
    put = wrk.write_script(workdir, "put", put_script(API_KEY))
    get = wrk.write_script(workdir, "get", get_script(API_KEY))
    workloads = [Workload("health", "ceiling", others["ceiling"],
                          wrk.write_script(workdir, "hello", wrk.script('"/"')), 64)]
    for name, svc in kissvdbs.items():
        with httpx.Client(base_url=svc.base_url, headers=wrk.bearer(API_KEY), timeout=60) as client:
            preload(client)
        workloads += [Workload("health", name, svc, health, 64), Workload("put64", name, svc, put, 64),
                      Workload("get64", name, svc, get, 64), Workload("put1", name, svc, put, 1)]
    if "etcd" in others:
        preload_etcd(others["etcd"].base_url)
        scripts = etcd_scripts(workdir)
        workloads += [Workload("put64", "etcd", others["etcd"], scripts["put"], 64),
                      Workload("get64", "etcd", others["etcd"], scripts["get"], 64),
                      Workload("put1", "etcd", others["etcd"], scripts["put"], 1)]
    order = list(FIGURES)
    return sorted(workloads, key=lambda w: order.index(w.figure))


def server_errors(kissvdbs: dict) -> list[str]:
    lines = []
    for name, svc in kissvdbs.items():
        bad = [x for x in svc.server.log_lines() if "ERROR" in x or "Traceback" in x or "CRITICAL" in x]
        if bad:
            lines.append(f"{LABEL[name]} logged {len(bad)} error line(s), the first: `{bad[0][:160]}`")
    return lines


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kissvdb-server", choices=("ours", "hypercorn", "both"), default="both")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every wrk figure (ratios: median of rounds)")
    ap.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    ap.add_argument("--dataset", help="path prefix of the *.base.f16.npy / *.queries.f16.npy / *.gt10.npy files "
                                      "(default: ../shared/data/minilm-docstrings-20k)")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--chroma-bin", help="the `chroma` binary (default: beside this interpreter, else PATH)")
    ap.add_argument("--sse-rounds", type=int, default=3)
    ap.add_argument("--sse-subscribers", type=int, default=100)
    ap.add_argument("--sse-rate", type=float, default=100.0, help="writes/s")
    ap.add_argument("--sse-seconds", type=float, default=10.0, help="seconds per step")
    ap.add_argument("--skip-vectors", action="store_true")
    ap.add_argument("--skip-sse", action="store_true")
    ap.add_argument("--no-write-docs", action="store_true", help="do not update docs/BENCHMARKS.md")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    wrk.require_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="kissvdb-compare-http-"))
    notes: list[str] = []
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    kissvdbs: dict = {}
    others: dict = {}
    vec = None
    sse: dict[str, SseResult] = {}
    try:
        kissvdbs, others = start_services(args, workdir, notes)
        workloads = kv_workloads(workdir, kissvdbs, others)
        paths = None if args.skip_vectors else dataset_paths(args.dataset)
        if paths:
            vec = setup_vectors(workdir, kissvdbs, others.get("Chroma"), paths, args.target_recall)
            workloads += vec.workloads
        elif not args.skip_vectors:
            notes.append("vector figures not run: dataset not found (--dataset).")
        warm_up(workloads)
        run_rounds(workloads, args.rounds, args.duration)
        if not args.skip_sse:
            for name, svc in kissvdbs.items():
                progress(f"SSE figure on kissvdb ({name}) ...")
                sse[name] = sse_figure(svc, workdir, args.sse_rounds, args.sse_subscribers, args.sse_rate,
                                       args.sse_seconds)
        notes += server_errors(kissvdbs)
    finally:
        for svc in list(kissvdbs.values()) + list(others.values()):
            svc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = render(args, workloads, list(kissvdbs), vec, sse, notes, load_before, load_after)
    print(text)
    if not args.no_write_docs:
        write_section("compare_http", "HTTP front: kissvdb vs etcd vs Chroma (issue 8)", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Documents and SQL over real HTTP (issue 4), each next to a trivial route of the same app.

Starts `kissvdb serve` (subprocess, data on disk, 127.0.0.1, port 0) and drives it with `wrk`,
as bench/http_kv.py does. Measured in one run, each workload next to its trivial route:

- PUT /v1/doc/bench/{id} (a ~100-byte JSON document, distinct scattered ids) @ 64 connections
  vs POST /v1/_bench/echo @ 64 (same body parsed, nothing written). Target: >= 60%.
- GET /v1/doc/preload/{id} on 10,000 preloaded documents (each read once before, so the
  document cache is warm, as KV's is after its preload) @ 64 vs GET /v1/_bench/ping @ 64.
  Target: >= 80%.
- POST /v1/doc/big/find with an equality filter on an indexed field, over a 1,000,000-document
  collection, @ 16 vs POST /v1/_bench/echo @ 16 (the trivial POST: a body parsed, as find's is)
  and vs GET /v1/_bench/ping @ 16 (no body). Target: >= 50%. Also its p50 in-process (DocStore.find on the
  same state.sqlite, and Engine.doc_find through the actor), target < 5 ms.
- POST /v1/sql/query `SELECT * FROM items WHERE id = ?` on a 1,000,000-row table @ 16 vs echo
  @ 16 and vs ping @ 16. Target: >= 70%.

The 1,000,000 documents are written straight into state.sqlite with `DocStore.apply_docs` (the
docs materializer's own write path) before the server starts, and the 1,000,000 SQL rows straight
into sqlite/user.db: loading them through HTTP would take most of the run. The index is then
created over HTTP (`POST /v1/doc/big/_index`), and its build time is reported.

    .venv/bin/python bench/http_docs.py [--duration 5] [--rounds 2] [--docs 1000000] [--rows 1000000]

Needs `wrk` on PATH (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wrk  # noqa: E402
from report import median, progress, table, verdict, write_section  # noqa: E402

from tests.e2e.server import ServerProcess  # noqa: E402

GET_DOCS = 10_000
GROUP_SIZE = 10  # documents per value of the indexed field
TARGETS = {"put": 0.60, "get": 0.80, "find": 0.50, "sql": 0.70}
FIND_P50_TARGET_MS = 5.0

DOC_JSON = '{"name":"bench","n":12345,"tags":["a","b"],"text":"' + "v" * 50 + '"}'


def scripts_for(api_key: str, groups: int, rows: int) -> dict[str, str]:
    """The wrk scripts of every workload, by name."""
    json_auth = wrk.bearer(api_key, "application/json")
    return {
        "put": wrk.script('"/v1/doc/bench" .. run .. "/" .. tid .. "-" .. scattered()', method="PUT",
                          body=wrk.lua_str(DOC_JSON), headers=json_auth),
        "echo": wrk.script('"/v1/_bench/echo"', method="POST", body=wrk.lua_str(DOC_JSON), headers=json_auth),
        "get": wrk.script(f'string.format("/v1/doc/preload/d%06d", rand(0, {GET_DOCS - 1}))',
                          headers=wrk.bearer(api_key)),
        "ping": wrk.script('"/v1/_bench/ping"', headers=wrk.bearer(api_key)),
        "find": wrk.script('"/v1/doc/big/find"', method="POST", headers=json_auth,
                           body=f"""string.format('{{"filter":{{"user.group":"g%07d"}},"limit":20}}', rand(0, {groups - 1}))"""),
        "sql": wrk.script('"/v1/sql/query"', method="POST", headers=json_auth,
                          body=f"""string.format('{{"sql":"SELECT * FROM items WHERE id = ?","params":[%d]}}', rand(1, {rows}))"""),
    }


def big_doc(i: int) -> bytes:
    return (b'{"i":%d,"name":"item %d","price":%d.5,"user":{"group":"g%07d","region":"r%d"}}'
            % (i, i, i % 1000, i // GROUP_SIZE, i % 7))


def seed_docs(data_dir: Path, n: int) -> float:
    """n documents into state.sqlite through the materializer's apply path; returns seconds."""
    from kissvdb.documents.table import DocStore
    from kissvdb.documents.state import PUT

    t0 = time.monotonic()
    store = DocStore(str(data_dir / "state.sqlite"))
    chunk = 50_000
    for start in range(0, n, chunk):
        changes = [(PUT, "big", f"d{i:07d}", big_doc(i), 1, None, 0) for i in range(start, min(n, start + chunk))]
        store.apply_docs(changes, 0)
        progress(f"  {min(n, start + chunk):,} documents")
    # the GET workload's documents (collection `preload`), ~100 bytes each
    store.apply_docs([(PUT, "preload", f"d{i:06d}", b'{"i":%d,"text":"%s"}' % (i, b"v" * 80), 1, None, 0)
                      for i in range(GET_DOCS)], 0)
    store.checkpoint()
    store.close()
    return time.monotonic() - t0


def seed_sql(data_dir: Path, n: int) -> float:
    import apsw

    t0 = time.monotonic()
    path = data_dir / "sqlite" / "user.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    with conn:
        conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, qty INTEGER)")
        conn.executemany("INSERT INTO items VALUES (?,?,?,?)",
                         ((i, f"item {i}", (i % 1000) + 0.5, i % 97) for i in range(1, n + 1)))
    conn.close()
    return time.monotonic() - t0


def inprocess_find_p50(data_dir: Path, groups: int, samples: int = 2000) -> tuple[float, float]:
    """(p50 ms, p99 ms) of DocReader.find with an equality filter on the indexed field."""
    import random

    from kissvdb.documents.query import FindQuery, compile_find
    from kissvdb.documents.reader import DocReader

    store = DocReader(str(data_dir / "state.sqlite"))
    rng = random.Random(7)
    times = []
    for _ in range(samples):
        q = compile_find(FindQuery("big", {"user.group": f"g{rng.randrange(groups):07d}"}, (), 20), 0)
        t0 = time.perf_counter()
        rows = store.find(q)
        times.append((time.perf_counter() - t0) * 1000)
        assert 1 <= len(rows) <= GROUP_SIZE, len(rows)
    store.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def engine_find_p50(data_dir: Path, groups: int, samples: int = 2000) -> tuple[float, float]:
    """(p50 ms, p99 ms) of Engine.doc_find (actor + store thread), in one process, no HTTP."""
    import random

    import trio

    from kissvdb.actors.boot import open_engine
    from kissvdb.config import Settings
    from kissvdb.documents.query import FindQuery

    times: list[float] = []

    async def run():
        rng = random.Random(11)
        async with open_engine(Settings(data_dir=str(data_dir), api_key="bench")) as engine:
            for _ in range(samples):
                q = FindQuery("big", {"user.group": f"g{rng.randrange(groups):07d}"}, (), 20)
                t0 = time.perf_counter()
                rows, _ = await engine.doc_find(q)
                times.append((time.perf_counter() - t0) * 1000)
                assert rows

    trio.run(run)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--only", default="", help="comma list of workloads to run: put,get,find,sql (default all)")
    parser.add_argument("--no-write-docs", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = parser.parse_args()
    only = {w for w in args.only.split(",") if w}
    wrk.require_wrk()

    workdir = Path(tempfile.mkdtemp(prefix="kissvdb-bench-docs-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    api_key = "bench-key"
    groups = max(1, args.docs // GROUP_SIZE)
    scripts = {name: wrk.write_script(workdir, name, text)
               for name, text in scripts_for(api_key, groups, args.rows).items()}

    try:
        progress(f"seeding {args.docs:,} documents into state.sqlite ...")
        docs_s = seed_docs(data_dir, args.docs)
        progress(f"seeding {args.rows:,} SQL rows into sqlite/user.db ...")
        sql_s = seed_sql(data_dir, args.rows)
        server = ServerProcess(data_dir, api_key=api_key, log_path=workdir / "server.log", env={"BENCH_ROUTES": "1"})
        plan = [("put", 64), ("echo", 64), ("get", 64), ("ping", 64), ("find", 16), ("echo_f", 16),
                ("ping_f", 16), ("sql", 16), ("echo_s", 16), ("ping_s", 16)]
        names = {"put": "PUT /v1/doc/{c}/{id}", "echo": "POST /v1/_bench/echo", "get": "GET /v1/doc/{c}/{id}",
                 "ping": "GET /v1/_bench/ping", "ping_f": "GET /v1/_bench/ping", "ping_s": "GET /v1/_bench/ping",
                 "echo_f": "POST /v1/_bench/echo", "echo_s": "POST /v1/_bench/echo",
                 "find": "POST /v1/doc/big/find (indexed equality, 1M docs)",
                 "sql": "POST /v1/sql/query (WHERE id = ?, 1M rows)"}
        groups_of = {"put": "put", "echo": "put", "get": "get", "ping": "get", "find": "find", "echo_f": "find",
                     "ping_f": "find", "sql": "sql", "echo_s": "sql", "ping_s": "sql"}
        if only:
            plan = [step for step in plan if groups_of[step[0]] in only]
        results: dict[tuple[str, int], list] = {step: [] for step in plan}
        with server, httpx.Client(base_url=server.base_url, headers=server.headers, timeout=300) as client:
            progress(f"listening on {server.base_url}; creating the index on user.group ...")
            t0 = time.monotonic()
            resp = client.post("/v1/doc/big/_index", json={"field": "user.group"})
            resp.raise_for_status()
            index_s = time.monotonic() - t0
            progress(f"  index built in {index_s:.1f}s")
            check = client.post("/v1/doc/big/find", json={"filter": {"user.group": "g0000001"}}).json()
            assert len(check["documents"]) == GROUP_SIZE, check
            progress(f"reading the {GET_DOCS:,} GET documents once (the doc cache starts cold after a restart;"
                     " bench/http_kv.py's keys are cached by their preload puts) ...")
            for i in range(GET_DOCS):
                client.get(f"/v1/doc/preload/d{i:06d}").raise_for_status()
            progress("warm-up (2 s each, not recorded)")
            for kind, conns in (("put", 16), ("find", 16), ("sql", 16)):
                wrk.run(server.base_url, scripts[kind], conns, 2, threads=args.wrk_threads)
            for round_ in range(args.rounds):
                progress(f"round {round_ + 1}/{args.rounds}")
                for kind, conns in plan:
                    progress(f"{names[kind]} @ {conns} for {args.duration}s ...")
                    out = wrk.run(server.base_url, scripts[kind.split("_")[0]], conns, args.duration,
                                  threads=args.wrk_threads)
                    errors = out.errors + out.bad_status
                    results[(kind, conns)].append((out.rps, out.p50_ms, out.p99_ms, errors))
                    progress(f"  {out.rps:,.0f} req/s, p50 {out.p50_ms:.2f} ms, {errors} errors")
            server.stop()
        progress("in-process find p50 (DocStore.find, then Engine.doc_find) ...")
        store_p50, store_p99 = inprocess_find_p50(data_dir, groups)
        engine_p50, engine_p99 = engine_find_p50(data_dir, groups)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [[names[k], c, f"{median([r[0] for r in runs]):,.0f}", " / ".join(f"{r[0]:,.0f}" for r in runs),
             f"{median([r[1] for r in runs]):.2f}", f"{median([r[2] for r in runs]):.2f}", sum(r[3] for r in runs)]
            for (k, c), runs in results.items()]
    main_table = table(["workload", "connections", "req/s (median)", "req/s per round", "p50 ms", "p99 ms",
                        "errors"], rows)

    def ratio(label, ours, trivial, target):
        if ours not in results:
            return None
        per_round = [o[0] / t[0] for o, t in zip(results[ours], results[trivial])]
        value = median(per_round)
        return [label, f"{value:.0%}", " / ".join(f"{r:.0%}" for r in per_round), f">= {target:.0%}",
                verdict(value >= target)]

    ratio_rows = [row for row in (
        ratio("doc PUT@64 / echo@64", ("put", 64), ("echo", 64), TARGETS["put"]),
        ratio("doc GET@64 / ping@64", ("get", 64), ("ping", 64), TARGETS["get"]),
        ratio("find@16 / echo@16 (POST vs POST)", ("find", 16), ("echo_f", 16), TARGETS["find"]),
        ratio("find@16 / ping@16 (POST vs GET)", ("find", 16), ("ping_f", 16), TARGETS["find"]),
        ratio("sql query@16 / echo@16 (POST vs POST)", ("sql", 16), ("echo_s", 16), TARGETS["sql"]),
        ratio("sql query@16 / ping@16 (POST vs GET)", ("sql", 16), ("ping_s", 16), TARGETS["sql"]),
    ) if row is not None]
    ratios_table = table(["ratio (ours / trivial, same round)", "median", "per round", "target", "verdict"], ratio_rows)
    inproc_table = table(
        ["in-process find, equality on indexed field, 1M docs, limit 20", "p50 ms", "p99 ms", "target", "verdict"],
        [["DocStore.find (SQLite only)", f"{store_p50:.3f}", f"{store_p99:.3f}", f"< {FIND_P50_TARGET_MS} ms",
          verdict(store_p50 < FIND_P50_TARGET_MS)],
         ["Engine.doc_find (actor + store thread)", f"{engine_p50:.3f}", f"{engine_p99:.3f}",
          f"< {FIND_P50_TARGET_MS} ms", verdict(engine_p50 < FIND_P50_TARGET_MS)]])
    extra = (f"wrk {args.wrk_threads} thread(s), {args.rounds} rounds x {args.duration} s per row, each workload next "
             f"to its trivial route in the same round. {args.docs:,} documents seeded into state.sqlite through "
             f"`DocStore.apply_docs` in {docs_s:.0f} s; index on `user.group` built over HTTP in {index_s:.1f} s "
             f"({GROUP_SIZE} documents per value; find returns {GROUP_SIZE}). {args.rows:,} SQL rows seeded in "
             f"{sql_s:.0f} s. Server and wrk share the machine.")
    print(main_table, ratios_table, inproc_table, sep="\n\n")
    if not args.no_write_docs:
        write_section("http_docs", "Documents and SQL over HTTP (bench/http_docs.py)",
                      f"{extra}\n\n{main_table}\n\n{ratios_table}\n\n{inproc_table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

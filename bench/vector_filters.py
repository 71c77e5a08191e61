"""Filtered vector search: metadata columns against row-by-row filter evaluation, in one process.

Builds an HNSW and an IVF_FLAT_Q8 collection of --rows seeded vectors whose metas are
`{"user": "u<i % users>", "n": i % 1000, "tag": ...}`, then times single filtered searches
(k=10) with each filter two ways on the same collection, interleaved query by query:
- columns: the shipped path (kissvdb/vectors/metaindex.py answers the filter in numpy);
- rows: the same filter as a plain predicate, which the planner can only call row by row (how
  every filter was evaluated before the columns existed). Both then run the same search plan.
Reports p50 per search, the ratio, and the one-off cost of building a field's columns.

    .venv/bin/python bench/vector_filters.py --rows 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from report import progress, table, write_section  # noqa: E402
from kissvdb.vectors.collection import Collection, Upsert, VectorParams  # noqa: E402
from kissvdb.vectors.filters import compile_filter  # noqa: E402

FILTERS = [
    {"user": "u7"},
    {"user": {"$in": ["u1", "u2", "u3"]}},
    {"n": {"$lt": 500}},
    {"user": "u7", "n": {"$gte": 100}},
    {"tag": {"$exists": True}},
    {"user": {"$ne": "u7"}},
]


def build(kind: str, root: str, rows: int, dim: int, users: int) -> Collection:
    rng = np.random.default_rng(42)
    c = Collection.create(os.path.join(root, kind), kind, dim, "cosine", kind, VectorParams(fsync=False))
    last = time.monotonic()
    for s in range(0, rows, 2048):
        part = rng.standard_normal((min(2048, rows - s), dim)).astype(np.float32)
        ops = []
        for i in range(len(part)):
            r = s + i
            meta = {"user": f"u{r % users}", "n": r % 1000}
            if r % 10 == 0:
                meta["tag"] = "x"
            ops.append(Upsert(r + 1, str(r), part[i], orjson.dumps(meta)))
        c.apply(ops, s + len(part))
        if time.monotonic() - last > 2:
            progress(f"{kind}: inserted {s + len(part)}/{rows}")
            last = time.monotonic()
    progress(f"{kind}: {'merging segments' if kind == 'HNSW' else 'training'}")
    c.optimize() if kind == "HNSW" else c.train_now()
    return c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="kissvdb-bench-filters-")
    out = []
    try:
        for kind in ("HNSW", "IVF_FLAT_Q8"):
            c = build(kind, root, args.rows, args.dim, args.users)
            qs = np.random.default_rng(7).standard_normal((args.queries, args.dim)).astype(np.float32)
            for flt in FILTERS:
                shipped = compile_filter(flt)

                def rows_only(meta, f=shipped):
                    return f(meta)  # no `clauses`: the planner must call it row by row

                t = time.perf_counter()
                first = c.search(qs[0], 10, predicate=shipped)
                build_ms = (time.perf_counter() - t) * 1000
                lat = {"cols": [], "rows": []}
                for q in qs:
                    for name, pred in (("cols", shipped), ("rows", rows_only)):
                        t = time.perf_counter()
                        hits = c.search(q, 10, predicate=pred)
                        lat[name].append(time.perf_counter() - t)
                    assert [h.id for h in hits] == [h.id for h in c.search(q, 10, predicate=shipped)]
                p50c = float(np.median(lat["cols"])) * 1000
                p50r = float(np.median(lat["rows"])) * 1000
                progress(f"{kind} {orjson.dumps(flt).decode()}: {p50c:.2f} ms vs {p50r:.2f} ms")
                out.append([kind, f"`{orjson.dumps(flt).decode()}`", len(first), f"{build_ms:.1f}",
                            f"{p50c:.2f}", f"{p50r:.2f}", f"{p50r / p50c:.0f}x"])
            c.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    body = (f"{args.rows:,} x {args.dim} seeded vectors, {args.users} users, k=10, {args.queries} queries per "
            "filter, columns and row-by-row interleaved per query (same collection, same plan after the "
            "mask). `first search ms` includes building the columns of the fields it names (once per "
            "field; later searches only extend them by new rows).\n\n"
            + table(["index", "filter", "hits", "first search ms", "p50 ms columns", "p50 ms row by row", "speed-up"],
                    out))
    print(body)
    if not args.no_write:
        write_section("vector_filters", "Filtered vector search (bench/vector_filters.py)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

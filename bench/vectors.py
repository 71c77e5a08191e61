"""In-process vector benchmark: kissvdb's FLAT/HNSW/IVF_FLAT_Q8 collections against exact numpy
search, raw hnswlib and faiss IndexIVFScalarQuantizer (8-bit), on the same data in one run.

Flags follow the original's bench (`--rows --search-queries --dims --modes --ivf-clusters
--ivf-nprobe --q8-refine-topk --ivf-min-train-vectors --ivf-retrain-min-deltas --reuse-data
--keep-data --in-mem`) plus `--dataset FILE.npy --queries FILE.npy` for real embeddings.

Modes: baseline_f32 (exact numpy over an in-memory float32 matrix), flat, hnsw, ivf_flat_q8
(kissvdb collections, applied through Collection.apply in batches, run files written and
fsynced at each checkpoint), hnswlib (raw), faiss_ivf_sq8 (faiss-cpu, a bench-only extra).
For each: insert p50/p95/p99 per batch and vectors/s, search p50/p95/p99 per single query,
queries/s, recall@k against exact search, resident memory (RssAnon/RssFile delta) and disk.

    .venv/bin/python bench/vectors.py --dataset ../shared/data/minilm-docstrings-20k.base.f16.npy \
        --queries ../shared/data/minilm-docstrings-20k.queries.f16.npy
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kissvdb.vectors.collection import Collection, HnswParams, Upsert, VectorParams  # noqa: E402
from kissvdb.vectors.distance import unit_rows  # noqa: E402


def progress(msg: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - T0:7.1f}s] {msg}\n")
    sys.stderr.flush()


T0 = time.monotonic()


def rss() -> tuple[int, int]:
    anon = file_ = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith("RssFile:"):
                file_ = int(line.split()[1]) * 1024
    return anon, file_


def pct(xs, p) -> float:
    return float(np.percentile(np.asarray(xs), p)) if len(xs) else float("nan")


def du(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            total += st.st_blocks * 512
    return total


def load_data(args):
    if args.dataset:
        base = np.load(args.dataset).astype(np.float32)
        if args.rows:
            base = base[: args.rows]
        if args.queries:
            queries = np.load(args.queries).astype(np.float32)
        else:
            rng = np.random.default_rng(7)
            queries = base[rng.choice(len(base), args.search_queries, replace=False)]
        queries = queries[: args.search_queries]
        return base, queries, os.path.basename(args.dataset)
    cache = os.path.join(tempfile.gettempdir(), f"kissvdb-bench-{args.rows}x{args.dims}.npy")
    if args.reuse_data and os.path.exists(cache):
        base = np.load(cache)
    else:
        rng = np.random.default_rng(42)
        centres = rng.standard_normal((256, args.dims)).astype(np.float32)
        base = (centres[rng.integers(0, 256, args.rows)] +
                0.6 * rng.standard_normal((args.rows, args.dims)).astype(np.float32)).astype(np.float32)
        if args.reuse_data:
            np.save(cache, base)
    rng = np.random.default_rng(43)
    queries = base[rng.choice(len(base), args.search_queries, replace=False)] + \
        0.1 * rng.standard_normal((args.search_queries, args.dims)).astype(np.float32)
    return base, queries.astype(np.float32), f"synthetic seed 42 ({args.rows}x{args.dims}, 256 blobs)"


def exact_truth(base, queries, k):
    b = unit_rows(base)
    out = []
    for s in range(0, len(queries), 64):
        sc = unit_rows(queries[s:s + 64]) @ b.T
        out.extend(np.argsort(-sc, axis=1, kind="stable")[:, :k])
    return [set(r.tolist()) for r in out]


def recall(results, truth, k) -> float:
    return float(np.mean([len(set(r) & t) / k for r, t in zip(results, truth)]))


def time_queries(fn, queries):
    lat = []
    res = []
    for q in queries:
        t = time.perf_counter()
        res.append(fn(q))
        lat.append(time.perf_counter() - t)
    return res, lat


def row(name, **kw):
    kw["mode"] = name
    return kw


def bench_baseline(base, queries, truth, k):
    progress("baseline_f32: exact numpy search")
    a0, _ = rss()
    m = unit_rows(base)

    def search(q):
        qn = q / (np.linalg.norm(q) or 1)
        s = m @ qn
        top = np.argpartition(-s, k)[:k]
        return top[np.argsort(-s[top])].tolist()

    res, lat = time_queries(search, queries)
    a1, _ = rss()
    return row("baseline_f32", search_lat=lat, qps=len(queries) / sum(lat), recall=recall(res, truth, k),
               rss_anon=a1 - a0, disk=0)


def bench_collection(kind, base, queries, truth, args, params):
    name = {"FLAT": "flat", "HNSW": "hnsw", "IVF_FLAT_Q8": "ivf_flat_q8"}[kind]
    root = args.data_dir or tempfile.mkdtemp(prefix="kissvdb-bench-")
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    gc.collect()
    a0, f0 = rss()
    c = Collection.create(d, name, base.shape[1], "cosine", kind, params)
    ins = []
    n = len(base)
    t_all = time.perf_counter()
    last = time.monotonic()
    for s in range(0, n, args.batch):
        part = base[s:s + args.batch]
        ops = [Upsert(s + i + 1, str(s + i), part[i], None) for i in range(len(part))]
        t = time.perf_counter()
        c.apply(ops, s + len(part))
        ins.append(time.perf_counter() - t)
        if time.monotonic() - last > 2:
            progress(f"{name}: inserted {s + len(part)}/{n}")
            last = time.monotonic()
    t = time.perf_counter()
    c.checkpoint()
    ckpt_s = time.perf_counter() - t
    ingest_s = time.perf_counter() - t_all
    extra = {}
    if kind == "IVF_FLAT_Q8":
        progress(f"{name}: training (background work in the server)")
        t = time.perf_counter()
        c.train_now()
        extra["train_s"] = time.perf_counter() - t
        extra["lists"] = len(c.centroids)
        c.checkpoint()
    if kind == "HNSW":
        extra["segments_before_merge"] = c.hnsw.segment_count
        progress(f"{name}: merging segments (compactor work in the server)")
        t = time.perf_counter()
        c.optimize()
        extra["merge_s"] = time.perf_counter() - t
        c.checkpoint()
    results = {}
    sweep = args.nprobe_sweep if kind == "IVF_FLAT_Q8" else (args.ef_sweep if kind == "HNSW" else [None])
    for knob in sweep:
        progress(f"{name}: searching ({'nprobe' if kind == 'IVF_FLAT_Q8' else 'ef'}={knob})")

        def search(q, knob=knob):
            if kind == "IVF_FLAT_Q8":
                return [int(h.id) for h in c.search(q, args.k, nprobe=knob)]
            if kind == "HNSW":
                return [int(h.id) for h in c.search(q, args.k, ef=knob)]
            return [int(h.id) for h in c.search(q, args.k)]

        res, lat = time_queries(search, queries)
        results[knob] = (recall(res, truth, args.k), lat)
    a1, f1 = rss()
    disk = du(d)
    # Restart: open from disk (no rebuild, no retrain), time to first answer, measured in a fresh
    # process so its resident memory is the collection's alone (not this process's data set).
    c.close()
    del c
    gc.collect()
    extra.update(reopen_in_subprocess(d, queries[0], args))
    if not args.keep_data:
        shutil.rmtree(d, ignore_errors=True)
    out = []
    for knob, (rc, lat) in results.items():
        r = row(name, insert_lat=ins, insert_rate=n / sum(ins), ingest_s=ingest_s, ckpt_s=ckpt_s,
                search_lat=lat, qps=len(queries) / sum(lat), recall=rc, rss_anon=a1 - a0, rss_file=f1 - f0,
                disk=disk, knob=knob, **extra)
        out.append(r)
    return out


REOPEN = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from kissvdb.vectors.collection import Collection, HnswParams, VectorParams
t1 = time.perf_counter()
d, q, k, fsync = sys.argv[1], np.frombuffer(bytes.fromhex(sys.argv[2]), "<f4"), int(sys.argv[3]), sys.argv[4] == "1"
c = Collection.open(d, VectorParams(fsync=fsync))
c.search(q, k)
t2 = time.perf_counter()
anon = 0
for line in open("/proc/self/status"):
    if line.startswith("RssAnon:"):
        anon = int(line.split()[1]) * 1024
print(json.dumps({"reopen_s": t2 - t1, "imports_s": t1 - t0, "reopen_rss_anon_mib": anon / 2**20}))
"""


def reopen_in_subprocess(d, q, args) -> dict:
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", REOPEN, d, np.asarray(q, "<f4").tobytes().hex(), str(args.k),
                          "0" if args.in_mem else "1"], capture_output=True, text=True,
                         cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if out.returncode != 0:
        progress(f"reopen failed: {out.stderr[-2000:]}")
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_hnswlib(base, queries, truth, args):
    import hnswlib

    progress("hnswlib (raw): building")
    units = unit_rows(base)
    idx = hnswlib.Index(space="ip", dim=base.shape[1])
    idx.init_index(max_elements=len(base), M=args.hnsw_m, ef_construction=args.hnsw_ef_construction, random_seed=100)
    t = time.perf_counter()
    idx.add_items(units, np.arange(len(base)), num_threads=os.cpu_count())
    add_s = time.perf_counter() - t
    out = []
    for ef in args.ef_sweep:
        idx.set_ef(ef)

        def search(q):
            qn = (q / (np.linalg.norm(q) or 1)).reshape(1, -1)
            labels, _ = idx.knn_query(qn, k=args.k, num_threads=1)
            return labels[0].tolist()

        res, lat = time_queries(search, queries)
        out.append(row("hnswlib", insert_rate=len(base) / add_s, ingest_s=add_s, search_lat=lat,
                       qps=len(queries) / sum(lat), recall=recall(res, truth, args.k), knob=ef))
    return out


def bench_faiss(base, queries, truth, args, nlist):
    try:
        import faiss
    except ImportError:
        progress("faiss not installed (pip install -e '.[bench]'): skipped")
        return []
    progress(f"faiss IndexIVFScalarQuantizer QT_8bit nlist={nlist}: training")
    faiss.omp_set_num_threads(1)
    units = unit_rows(base)
    quant = faiss.IndexFlatIP(base.shape[1])
    idx = faiss.IndexIVFScalarQuantizer(quant, base.shape[1], nlist, faiss.ScalarQuantizer.QT_8bit,
                                        faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    idx.train(units)
    idx.add(units)
    add_s = time.perf_counter() - t
    out = []
    for nprobe in args.nprobe_sweep:
        idx.nprobe = nprobe

        def search(q):
            qn = (q / (np.linalg.norm(q) or 1)).reshape(1, -1).astype(np.float32)
            _, labels = idx.search(qn, args.k)
            return labels[0].tolist()

        res, lat = time_queries(search, queries)
        out.append(row("faiss_ivf_sq8", insert_rate=len(base) / add_s, ingest_s=add_s, search_lat=lat,
                       qps=len(queries) / sum(lat), recall=recall(res, truth, args.k), knob=nprobe))
    return out


def bench_engine_ingest(kind, base, args):
    """Ingest through the Engine in-process: decide, WAL group commit + fsync, apply, reply."""
    import trio

    from kissvdb.actors.boot import open_engine
    from kissvdb.config import Settings
    from kissvdb.vectors.state import Item

    name = {"IVF_FLAT_Q8": "engine_ivf_flat_q8", "HNSW": "engine_hnsw"}[kind]
    progress(f"{name}: ingest through the Engine ({args.engine_tasks} concurrent batch writers)")
    root = tempfile.mkdtemp(prefix="kissvdb-bench-engine-")
    lat = []

    async def run():
        settings = Settings(data_dir=root, api_key="bench", memory=args.in_mem,
                            ivf_min_train_vectors=args.ivf_min_train_vectors, ivf_clusters=args.ivf_clusters)
        async with open_engine(settings) as e:
            await e.vector_create("b", base.shape[1], "cosine", kind)
            starts = list(range(0, len(base), args.batch))

            async def writer(mine):
                for s0 in mine:
                    items = [Item(str(s0 + i), base[s0 + i], None) for i in range(min(args.batch, len(base) - s0))]
                    t = time.perf_counter()
                    await e.vector_upsert_batch("b", items)
                    lat.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            async with trio.open_nursery() as n:
                for w in range(args.engine_tasks):
                    n.start_soon(writer, starts[w::args.engine_tasks])
            return time.perf_counter() - t0

    elapsed = trio.run(run)
    shutil.rmtree(root, ignore_errors=True)
    return row(name, insert_lat=lat, insert_rate=len(base) / elapsed, search_lat=[], qps=float("nan"),
               recall=float("nan"), knob=f"{args.engine_tasks} writers")


def bench_interleaved(base, queries, truth, args, params):
    """Paired comparisons on one noisy shared machine, in two groups run one after the other:
    - graph: kissvdb HNSW against raw hnswlib searching the very graph file kissvdb saved (same
      graph, so same recall by construction: the ratio is the cost of kissvdb's code alone);
    - lists: kissvdb IVF_FLAT_Q8 against faiss IndexIVFScalarQuantizer and exact numpy search.
    Within a group each query runs on every system in a fresh random order, so load from other
    work on the box hits them all alike. The groups are kept apart so the exact scan (30 MB per
    query here) does not flush the caches of the graph walks it has nothing to do with."""
    import faiss

    from kissvdb.vectors.ivf_q8 import lists_for

    units = unit_rows(base)
    root = tempfile.mkdtemp(prefix="kissvdb-bench-il-")
    progress("interleaved: building kissvdb HNSW + IVF_FLAT_Q8, faiss IVF SQ8, exact")
    colls = {}
    for kind in ("HNSW", "IVF_FLAT_Q8"):
        c = Collection.create(os.path.join(root, kind), kind, base.shape[1], "cosine", kind, params)
        for s0 in range(0, len(base), 1024):
            part = base[s0:s0 + 1024]
            c.apply([Upsert(s0 + i + 1, str(s0 + i), part[i], None) for i in range(len(part))], s0 + len(part))
        if kind == "HNSW":
            c.optimize()
            c.checkpoint()
        else:
            c.train_now()
        colls[kind] = c
    segs = colls["HNSW"].hnsw.sealed
    assert len(segs) == 1 and not colls["HNSW"].hnsw.mutable.count, "one merged graph expected"
    # Raw hnswlib calls on the very index object kissvdb searches: same graph, same memory, so
    # neither side finds the other's copy in the caches and the ratio is kissvdb's code alone.
    h = segs[0].index
    faiss.omp_set_num_threads(1)
    nlist = lists_for(len(base), args.ivf_clusters)
    fi = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(base.shape[1]), base.shape[1], nlist,
                                       faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    fi.train(units)
    fi.add(units)

    def unitq(q):
        return (q / (np.linalg.norm(q) or 1)).reshape(1, -1).astype(np.float32)

    graph = []
    for ef in args.ef_sweep:
        graph.append(("hnsw", ef, lambda q, ef=ef: [int(x.id) for x in colls["HNSW"].search(q, args.k, ef=ef)]))

        def raw(q, ef=ef):
            h.set_ef(ef)
            out = h.knn_query(unitq(q), k=args.k, num_threads=1)[0][0].tolist()
            h.set_ef(1)  # kissvdb keeps its indexes at ef 1 and passes each query's breadth as k
            return out

        graph.append(("hnswlib", ef, raw))
    lists = [("baseline_f32", None, lambda q: np.argpartition(-(units @ unitq(q)[0]), args.k)[:args.k].tolist())]
    for nprobe in args.nprobe_sweep:
        lists.append(("ivf_flat_q8", nprobe,
                      lambda q, n=nprobe: [int(x.id) for x in colls["IVF_FLAT_Q8"].search(q, args.k, nprobe=n)]))

        def fs(q, n=nprobe):
            fi.nprobe = n
            return fi.search(unitq(q), args.k)[1][0].tolist()

        lists.append(("faiss_ivf_sq8", nprobe, fs))
    out = []
    order_rng = np.random.default_rng(11)
    for label, systems in (("graph", graph), ("lists", lists)):
        lat = {i: [] for i in range(len(systems))}
        res = {i: [] for i in range(len(systems))}
        progress(f"interleaved {label}: {len(queries)} queries x {len(systems)} systems, {args.rounds} round(s)")
        for _ in range(args.rounds):
            for q in queries:
                for i in order_rng.permutation(len(systems)).tolist():
                    _name, _knob, fn = systems[i]
                    t = time.perf_counter()
                    r = fn(q)
                    lat[i].append(time.perf_counter() - t)
                    if len(res[i]) < len(queries):
                        res[i].append(r)
        for i, (name, knob, _fn) in enumerate(systems):
            out.append(row(name, knob=knob, search_lat=lat[i], qps=len(lat[i]) / sum(lat[i]),
                           recall=recall(res[i], truth, args.k), group=label))
    for c in colls.values():
        c.close()
    shutil.rmtree(root, ignore_errors=True)
    return out


def fmt_ms(lat) -> str:
    return "/".join(f"{pct(lat, p) * 1000:.2f}" for p in (50, 95, 99))


def report(rows_, args, source, base):
    print()
    print(f"data: {source}, {len(base)} x {base.shape[1]}, k={args.k}, queries={args.search_queries}, "
          f"batch={args.batch}, cpus={os.cpu_count()}")
    print("| mode | knob | insert p50/p95/p99 ms (per batch) | insert vec/s | search p50/p95/p99 ms | QPS | "
          f"recall@{args.k} | RssAnon MiB | disk MiB | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows_:
        notes = []
        for key in ("group", "lists", "train_s", "segments_before_merge", "merge_s", "ckpt_s", "reopen_s",
                    "reopen_rss_anon_mib"):
            if key in r:
                v = r[key]
                notes.append(f"{key}={v:.2f}" if isinstance(v, float) else f"{key}={v}")
        knob = r.get("knob") if r.get("knob") is not None else ""
        ins = fmt_ms(r["insert_lat"]) if "insert_lat" in r else ""
        rate = f"{r['insert_rate']:.0f}" if "insert_rate" in r else ""
        print(f"| {r['mode']} | {knob} | {ins} | {rate} |", end="")
        print(f" {fmt_ms(r['search_lat'])} | {r['qps']:.0f} | {r['recall']:.4f} | "
              f"{r.get('rss_anon', 0) / 2**20:.1f} | {r.get('disk', 0) / 2**20:.1f} | {' '.join(notes)} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--search-queries", type=int, default=500)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--modes", default="baseline_f32,hnsw,ivf_flat_q8,hnswlib,faiss_ivf_sq8")
    ap.add_argument("--ivf-clusters", type=int, default=4096, help="upper bound; lists = ~4*sqrt(rows)")
    ap.add_argument("--ivf-nprobe", type=int, default=16)
    ap.add_argument("--nprobe-sweep", default="", help="comma list (default: --ivf-nprobe)")
    ap.add_argument("--q8-refine-topk", type=int, default=512)
    ap.add_argument("--ivf-min-train-vectors", type=int, default=1024)
    ap.add_argument("--ivf-retrain-min-deltas", type=int, default=50000)
    ap.add_argument("--ivf-training-sample", type=int, default=200000)
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef-construction", type=int, default=200)
    ap.add_argument("--ef-sweep", default="64", help="comma list of HNSW ef")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--engine-tasks", type=int, default=4, help="concurrent writers for engine_* modes")
    ap.add_argument("--interleave", action="store_true",
                    help="search-only paired comparison: kissvdb HNSW vs raw hnswlib on the same graph, "
                         "kissvdb IVF_FLAT_Q8 vs faiss IVF SQ8 vs exact; each query on each in turn")
    ap.add_argument("--rounds", type=int, default=1, help="passes over the queries (--interleave)")
    ap.add_argument("--dataset")
    ap.add_argument("--queries")
    ap.add_argument("--data-dir", help="where collections are written (default a temp dir)")
    ap.add_argument("--reuse-data", action="store_true", help="cache synthetic data in the temp dir")
    ap.add_argument("--keep-data", action="store_true", help="keep collection directories")
    ap.add_argument("--in-mem", action="store_true", help="skip fsync (run files still written)")
    args = ap.parse_args(argv)
    args.nprobe_sweep = [int(x) for x in (args.nprobe_sweep or str(args.ivf_nprobe)).split(",")]
    args.ef_sweep = [int(x) for x in args.ef_sweep.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    base, queries, source = load_data(args)
    progress(f"data: {source} {base.shape}, queries {queries.shape}; exact ground truth")
    truth = exact_truth(base, queries, args.k)
    params = VectorParams(
        ivf_clusters=args.ivf_clusters, ivf_nprobe=args.ivf_nprobe, q8_refine_topk=args.q8_refine_topk,
        ivf_min_train_vectors=args.ivf_min_train_vectors, ivf_retrain_min_deltas=args.ivf_retrain_min_deltas,
        ivf_training_sample=args.ivf_training_sample,
        hnsw=HnswParams(m=args.hnsw_m, ef_construction=args.hnsw_ef_construction, ef_search=args.ef_sweep[0]),
        fsync=not args.in_mem)
    out = []
    if args.interleave:
        out.extend(bench_interleaved(base, queries, truth, args, params))
        modes = []
    for mode in modes:
        if mode == "baseline_f32":
            out.append(bench_baseline(base, queries, truth, args.k))
        elif mode in ("flat", "hnsw", "ivf_flat_q8"):
            kind = {"flat": "FLAT", "hnsw": "HNSW", "ivf_flat_q8": "IVF_FLAT_Q8"}[mode]
            out.extend(bench_collection(kind, base, queries, truth, args, params))
        elif mode in ("engine_ivf_flat_q8", "engine_hnsw"):
            out.append(bench_engine_ingest("IVF_FLAT_Q8" if mode == "engine_ivf_flat_q8" else "HNSW", base, args))
        elif mode == "hnswlib":
            out.extend(bench_hnswlib(base, queries, truth, args))
        elif mode == "faiss_ivf_sq8":
            from kissvdb.vectors.ivf_q8 import lists_for
            out.extend(bench_faiss(base, queries, truth, args, lists_for(len(base), args.ivf_clusters)))
        else:
            ap.error(f"unknown mode {mode}")
    report(out, args, source, base)


if __name__ == "__main__":
    main()

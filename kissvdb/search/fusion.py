"""How a `/search` request turns its rankings into one: `mode` = vector, keyword or hybrid.

- `vector` (the default, as the original): the cosine ranking alone; score = cosine similarity.
- `keyword`: the BM25 ranking alone (SQLite FTS5); score = -bm25(), so higher is better, as
  for every other score in the API.
- `hybrid`: reciprocal rank fusion (Cormack et al., 2009), the fusion Elasticsearch, OpenSearch,
  Weaviate and Qdrant offer: score(d) = sum over rankings of weight / (RRF_K + rank(d)), ranks
  from 1, a ranking that lacks d adds nothing. Only ranks matter, so BM25's unbounded scores and
  cosines in [-1, 1] need no normalising.
Ties are broken by id ascending in every mode, so answers are deterministic.

DEFAULT_WEIGHTS were tuned on the tune split of bench/rag_set (bench/rag_set/hybrid.py) and are
reported on its held-out test split in docs/BENCHMARKS.md.
Never does: I/O; it ranks what it is given.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

RRF_K = 60
DEFAULT_WEIGHTS = (0.5, 0.5)  # (vector, keyword); see bench/rag_set/hybrid.py
Ranking = Sequence[tuple[int, float]]  # (id, score), best first


def rrf(rankings: Sequence[tuple[float, Ranking]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of weighted rankings -> [(id, fused score)], best first."""
    score: dict[int, float] = defaultdict(float)
    for weight, ranking in rankings:
        if weight <= 0.0:
            continue
        for rank, (doc_id, _) in enumerate(ranking, 1):
            score[doc_id] += weight / (k + rank)
    return sorted(score.items(), key=lambda item: (-item[1], item[0]))


def fuse(mode: str, vector: Ranking, keyword: Ranking,
         weights: tuple[float, float] | None = None) -> list[tuple[int, float]]:
    """The one ranking `mode` asks for, from the vector and keyword rankings (best first)."""
    if mode == "vector":
        return list(vector)
    if mode == "keyword":
        return list(keyword)
    if mode != "hybrid":
        raise ValueError(f"unknown mode {mode!r}")  # request.py admits only the three
    w_vec, w_kw = weights or DEFAULT_WEIGHTS
    return rrf(((w_vec, vector), (w_kw, keyword)))

"""One `/search` request answered: allowed ids -> the two rankings -> fusion -> groups -> body.

Owns: the order of the steps (ranking.py says what each does) and the answer's shape,
`{"query", "top_k", "results": [{"score", "document": {"id", "content", "metadata"}}]}`, and the
dimension rule of a collection whose vectors all have one length.

The dimension rule (a departure from the original, which stores any length per document and
skips, at query time, every document whose length differs from the query's):
- the first document ingested fixes the store's dimension; a document of another length is
  refused, 400 `dim_mismatch` naming `document.vector` (or `documents[i].vector`), nothing
  written. A batch whose documents disagree is refused the same way;
- a query vector the client sends in `vector` must have that length: 400 `dim_mismatch`
  naming `vector`;
- a query vector derived from the text (`TEST_VEC:` or the pseudo-embedding) of another length
  ranks nothing by vector, exactly what the original answers when no stored document has the
  query's length; keyword ranking is unaffected.

The vector side is a callable, `rank_vectors(query, limit, allowed) -> [(id, score)]` (exact.py
in the bench and tests; the vector collection's search in the server), so this module does no
I/O of its own beyond the store's reads.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from kissvdb.errors import InvalidArgument

from .fusion import fuse
from .ranking import select
from .request import SearchDocument, SearchRequest
from .store import SearchStore

RANK_DEPTH = 100  # hits taken from each ranking before fusion (bench/rag_set/baseline.py's depth)
DEPTH_GROWTH = 4  # a grouped search that needs more candidates asks for this many times more

VectorRanker = Callable[[np.ndarray, int, "set[int] | None"], list]


class SearchDimMismatch(InvalidArgument):
    """A vector whose length is not the store's dimension (400). Nothing was written."""

    code = "dim_mismatch"


def check_dims(docs: list[SearchDocument], dim: int | None) -> int:
    """The store's dimension after ingesting `docs` (the first fixes it when `dim` is None);
    raises SearchDimMismatch naming the first document of another length (`<path>.vector`)."""
    for doc in docs:
        if dim is None:
            dim = len(doc.vector)
        elif len(doc.vector) != dim:
            raise SearchDimMismatch(f"vector has {len(doc.vector)} values, the search store's dimension is {dim}",
                                    field=f"{doc.path}.vector")
    assert dim is not None, "an ingest holds at least one document"
    return dim


def _depth(req: SearchRequest) -> int:
    if req.mode == "hybrid":
        return max(RANK_DEPTH, req.top_k)
    return req.top_k if req.group_by is None else req.top_k * max(req.group_limit, 1)


def ranked_hits(req: SearchRequest, store: SearchStore, rank_vectors: VectorRanker, dim: int | None,
                deadline: float | None = None) -> list[tuple[int, float]]:
    """The (id, score) pairs to answer, best first."""
    if req.vector is not None and dim is not None and len(req.vector) != dim:
        raise SearchDimMismatch(f"vector has {len(req.vector)} values, the search store's dimension is {dim}",
                                field="vector")
    if req.top_k == 0 or (req.group_by is not None and req.group_limit == 0) or not len(store):
        return []
    allowed = store.allowed(req.filters)
    if allowed is not None and not allowed:
        return []
    qvec = req.query_vector() if req.mode != "keyword" else None
    candidates = len(store) if allowed is None else len(allowed)
    depth = min(_depth(req), candidates)
    while True:
        vec = rank_vectors(qvec, depth, allowed) if qvec is not None and len(qvec) == dim else []
        kw = store.query(req.query, depth, allowed, deadline) if req.mode != "vector" else []
        exhausted = depth >= candidates or max(len(vec), len(kw)) < depth
        hits = select(fuse(req.mode, vec, kw, req.weights), req.top_k, req.group_by, req.group_limit,
                      store.metadata, exhausted)
        if hits is not None:
            return hits
        depth = min(depth * DEPTH_GROWTH, candidates)  # at `candidates` the next pass is exhausted


def answer(req: SearchRequest, store: SearchStore, hits: list[tuple[int, float]]) -> dict:
    """The response body; scores are float32, as the original prints them."""
    docs = store.documents([doc_id for doc_id, _ in hits])
    results = [{"score": np.float32(score), "document": docs[doc_id]} for doc_id, score in hits if doc_id in docs]
    return {"query": req.query, "top_k": req.top_k, "results": results}


def search(req: SearchRequest, store: SearchStore, rank_vectors: VectorRanker, dim: int | None,
           deadline: float | None = None) -> dict:
    """Answer one parsed `/search` request from the store and the vector ranker."""
    return answer(req, store, ranked_hits(req, store, rank_vectors, dim, deadline))

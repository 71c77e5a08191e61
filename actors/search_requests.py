"""The /search requests (contract §3.10, §5.6): documents stored as the `_search` vector
collection, read back through the search index that follows it (actors/search.py).

Its own module because /search is a second model built on two others (a vector collection for
writes, the FTS follower for reads) with its own rules: the collection created on first ingest,
answers only once the index has applied the write, a query split between the index's thread
and the collection under one deadline. `Engine.search_limits`, `Engine.search_ingest`,
`Engine.search_delete` and `Engine.search` call into here.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import trio

from kissvdb.errors import AlreadyExists, InvalidArgument, PayloadTooLarge, Unavailable
from kissvdb.search.changes import SEARCH_COLLECTION, vector_items
from kissvdb.search.query import SearchDimMismatch, check_dims
from kissvdb.search.query import search as search_query
from kissvdb.search.request import DEFAULT_LIMITS as SEARCH_DEFAULT_LIMITS
from kissvdb.search.request import SearchDocument, SearchLimits, SearchRequest
from kissvdb.vectors.state import DeleteBatch, Item, UpsertBatch

from kissvdb.actors.search import SearchFollower

if TYPE_CHECKING:
    from kissvdb.actors.engine import Engine


def search_limits(engine: Engine) -> SearchLimits:
    """The /search caps, from the vector settings they mirror."""
    s = engine.settings
    return SearchLimits(content_bytes_max=min(SEARCH_DEFAULT_LIMITS.content_bytes_max, s.max_json_bytes),
                        docs_per_ingest_max=s.max_vector_batch, ids_per_delete_max=s.max_vector_batch,
                        top_k_max=s.max_k, group_limit_max=s.max_k, dim_max=s.max_vector_dim)


def _follower(engine: Engine) -> SearchFollower:
    if engine.search_index is None or engine.closing:
        raise Unavailable("search index unavailable, retry")
    return engine.search_index


def _collection(engine: Engine):
    return engine._vm().store.collections.get(SEARCH_COLLECTION)


async def search_ingest(engine: Engine, docs: list[SearchDocument]) -> None:
    """Upsert `docs` as one batch of the `_search` collection (created, cosine, with the first
    document's dimension); returns once the search index has applied them."""
    follower = _follower(engine)
    coll = _collection(engine)
    check_dims(docs, None if coll is None else coll.dim)
    items = vector_items(docs)
    json_max = engine.settings.max_json_bytes
    for doc, (_vid, _vec, meta) in zip(docs, items):
        if len(meta) > json_max:  # content escaped as JSON (\u0001 is 6 bytes) can pass its own cap
            raise PayloadTooLarge(f"content and metadata are {len(meta)} bytes as stored JSON, over "
                                  f"MAX_JSON_BYTES ({json_max})", field=f"{doc.path}.content")
    if coll is None:
        # The in-memory kinds only: /search filters need Collection.search(ids=) over its rows.
        kind = engine.settings.index_kind if engine.settings.index_kind in ("HNSW", "IVF_FLAT_Q8", "FLAT") else "HNSW"
        try:
            await engine._vm().create(SEARCH_COLLECTION, len(docs[0].vector), "cosine", kind)
        except AlreadyExists:  # another ingest created it meanwhile, maybe with another dim
            check_dims(docs, _collection(engine).dim)
    results = await engine._call_vector(SEARCH_COLLECTION, UpsertBatch(tuple(
        Item(vid, vec, meta) for vid, vec, meta in items)))
    await follower.catch_up()
    for doc, r in zip(docs, results):
        # Checked above; the collection refuses an item only if its dimension changed under
        # us (a `_search` made by hand before it was reserved). The other items are stored.
        if r["status"] == "error":
            error = SearchDimMismatch if r["error"]["error"] == "dim_mismatch" else InvalidArgument
            raise error(r["error"]["message"], field=f"{doc.path}.vector")


async def search_delete(engine: Engine, ids: list[int]) -> list[bool]:
    """Delete documents by id; per id, whether it existed. Returns once the index applied it."""
    follower = _follower(engine)
    if _collection(engine) is None:
        return [False] * len(ids)
    results = await engine._call_vector(SEARCH_COLLECTION, DeleteBatch(tuple(str(i) for i in ids)))
    await follower.catch_up()
    return [r["status"] == "deleted" for r in results]


async def search(engine: Engine, req: SearchRequest, deadline: float | None = None) -> dict:
    """One /search answer, computed on the search index's thread (BM25 there, vectors from
    the collection) and stopped at the request's deadline."""
    follower = _follower(engine)
    coll = _collection(engine)
    trio_deadline = trio.current_effective_deadline() if deadline is None else deadline
    until = None if math.isinf(trio_deadline) else time.monotonic() + (trio_deadline - trio.current_time())

    def rank_vectors(query, limit: int, allowed):
        if coll is None:
            return []
        ids = None if allowed is None else {str(i) for i in allowed}
        hits = coll.search(query, limit, ids=ids, deadline=until)
        return [(int(h.id), h.score) for h in hits if h.id.isdigit()]

    dim = None if coll is None else coll.dim
    return await follower.run(lambda store: search_query(req, store, rank_vectors, dim, until))

"""The original's RAG routes, `/search` and `/search/ingest` (contract §3.10, §5.6), plus a delete.

Every handler awaits one Engine method (actors/engine.py): `search_ingest(docs)` (durable and
searchable when it returns), `search_delete(ids) -> [bool]`, `search(req, deadline) -> body`.
The documents live in the `_search` vector collection (read-only through /v1/vector).

| route                 | role  | body                                   | answer                          |
|-----------------------|-------|----------------------------------------|---------------------------------|
| POST /search/ingest   | write | {"document": {...}} or {"documents": [...]} | 200, empty body, no content type |
| POST /search/delete   | write | {"id": u32} or {"ids": [u32, ...]}     | {"deleted": bool} / {"results": [{"id", "deleted"}]} |
| POST /search          | read  | {"query", "top_k", "filters", "group_by", "group_limit", "mode", "vector", "weights"} | {"query", "top_k", "results": [{"score", "document"}]} |

`/search` fields beyond the original's: `mode` ("vector" [default], "keyword", "hybrid"),
`vector` (the client's embedding of `query`; without it the original's TEST_VEC / pseudo-embedding
is used), `weights` ({"vector", "keyword"}, each clamped to [0, 1], default 0.5/0.5 as tuned on
bench/rag_set). `score` is the cosine in vector mode, -bm25() in keyword mode (higher is better)
and the reciprocal-rank-fusion score (k=60) in hybrid mode.

Shape and caps are checked here (kissvdb.search.request: 422 for a wrong type, 400 past a cap,
413 for `content`, each naming the field) before the engine is called; the store's dimension is
checked by the engine (400 `dim_mismatch`). A 4xx never writes. Ingesting an existing id
replaces it.
"""

from __future__ import annotations

import orjson

from kissvdb.search.request import DEFAULT_LIMITS, parse_delete, parse_ingest, parse_search

from ..codec import raw_json_response, read_json_object
from ..http.messages import Response
from ..routing import Route

_NUMPY = orjson.OPT_SERIALIZE_NUMPY  # scores are float32: printed shortest, as the original


def routes(app) -> list[Route]:
    engine = app.engine
    limits = getattr(engine, "search_limits", DEFAULT_LIMITS)  # a test double may have none

    async def search_ingest(request):
        docs = parse_ingest(await read_json_object(request), limits)
        await engine.search_ingest(docs)
        return Response(b"", 200, [])  # the original: 200 with an empty body and no content type

    async def search_delete(request):
        body = await read_json_object(request)
        ids = parse_delete(body, limits)
        deleted = await engine.search_delete(ids)
        if body.get("ids") is None:
            return raw_json_response(orjson.dumps({"deleted": deleted[0]}))
        return raw_json_response(orjson.dumps({"results": [{"id": i, "deleted": d} for i, d in zip(ids, deleted)]}))

    async def search(request):
        req = parse_search(await read_json_object(request), limits)
        answer = await engine.search(req, getattr(request, "deadline", None))
        return raw_json_response(orjson.dumps(answer, option=_NUMPY))

    return [
        Route("POST", "/search/ingest", search_ingest, "write", "search_ingest"),
        Route("POST", "/search/delete", search_delete, "write", "search_delete"),
        Route("POST", "/search", search, "read", "search"),
    ]

"""The vector routes, `/v1/vector*`, as the contract's §3.5-§3.7, plus kissvdb's additions.

| route                                     | answer                                            |
|-------------------------------------------|---------------------------------------------------|
| GET    /v1/vector                         | {"collections": [VectorCollectionInfo...]}        |
| GET    /v1/vector/<c>                     | detail (count, manifest, notes, segments, deleted)|
| POST   /v1/vector/<c>                     | {"collection","dim","metric"} (+ "index")         |
| DELETE /v1/vector/<c>                     | {"deleted": true}                  (kissvdb only) |
| POST   /v1/vector/<c>/add|upsert|update   | {"ok": true}                                      |
| POST   /v1/vector/<c>/delete              | {"deleted": true}                                 |
| POST   /v1/vector/<c>/upsert_batch        | {"results": [...]}  (JSON or CBOR body)           |
| POST   /v1/vector/<c>/delete_batch        | {"results": [...]}                                |
| GET    /v1/vector/<c>/get?id=             | {"id","vector","meta"}                            |
| POST   /v1/vector/<c>/search              | {"hits": [{"id","score","meta"}]} (JSON or CBOR)  |
| POST   /v1/vector/<c>/search_batch        | {"results": [{"hits": [...]}...]} (kissvdb only)  |
| POST   /v1/vector/<c>/compact             | {"ok": true, ...counts}            (kissvdb only) |

Shape is checked here (422 naming the field, 415/400 for the body) before the engine is called;
meaning (lengths, sizes, dimension, existence) is checked by the engine before anything is
logged. A 4xx never writes. `application/cbor` bodies are accepted by upsert_batch, search and
search_batch, with vectors as little-endian float32 byte strings (or CBOR arrays of numbers); a request with
`Accept: application/cbor` gets a CBOR answer. A search or search_batch answer is held to
VECTOR_RESULT_BYTES_MAX (400 naming `k` / `queries`) and, when large, built in pieces with
yields to the loop (`_search_answer`, api/pieces.py).
"""

from __future__ import annotations

import cbor2
import numpy as np
import orjson

from kissvdb.errors import InvalidArgument, KissError, UnprocessableEntity
from kissvdb.events import RawJson
from kissvdb.vectors.state import KEEP, Item, ItemError

from ..codec import (
    JSON,
    canonical_json,
    json_chunks_response,
    optional_uint,
    raw_json_response,
    read_json_object,
    require,
    require_list,
    require_str,
    require_uint,
)
from ..http.messages import Response
from ..pieces import (CBOR_PIECE_BYTES, PIECE_BYTES, PieceWriter, add_cbor_items, add_json_items,
                      cbor_array_head, cbor_map_head)
from ..routing import Route

CBOR = "application/cbor"
METRICS = ("cosine", "dot")
INDEXES = ("HNSW", "IVF_FLAT_Q8", "FLAT", "DISKANN")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_NUMBER_TYPES = frozenset((int, float))
_Fragment = orjson.Fragment
HIT_JSON_MIN_BYTES = len('{"id":"","score":0,"meta":}')  # a hit's JSON beside its id and meta
HIT_WEIGHT_EXTRA = 48  # ... about, with a float score and a comma


def _is_cbor(request) -> bool:
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower() == CBOR


def _wants_cbor(request) -> bool:
    return CBOR in request.headers.get("Accept", "")


async def read_body(request) -> dict:
    """A JSON or (where accepted) CBOR object body."""
    if _is_cbor(request):
        raw = await request.body()
        try:
            body = cbor2.loads(raw)
        except Exception as exc:  # cbor2 raises several types for malformed input
            raise InvalidArgument(f"invalid CBOR body: {exc}", field="body") from None
        if type(body) is not dict:
            raise UnprocessableEntity("request body must be a CBOR map", field="body")
        return body
    return await read_json_object(request)


def parse_vector(value, path: str) -> np.ndarray:
    """A JSON array of numbers (ints or floats) or little-endian float32 bytes -> float32 array."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) % 4:
            raise UnprocessableEntity("vector bytes must be a multiple of 4 (float32 LE)", field=path)
        return np.frombuffer(bytes(value), dtype="<f4").astype(np.float32)
    if type(value) is not list:
        raise UnprocessableEntity(f"`{path}` must be an array of numbers", field=path)
    if not set(map(type, value)) <= _NUMBER_TYPES:  # bool is not a number here (serde agrees)
        raise UnprocessableEntity(f"`{path}` must be an array of numbers", field=path)
    try:
        with np.errstate(over="ignore"):
            return np.asarray(value, dtype=np.float64).astype(np.float32)
    except OverflowError:  # a CBOR integer past float64's range (JSON parses those as floats)
        raise InvalidArgument("vector has a non-finite component", field=path) from None


def _search_args(body: dict, prefix: str) -> tuple:
    """(vector, k, engine keywords) of one search body; 422s name `prefix` + the field."""
    vector = parse_vector(require(body, "vector", prefix + "vector"), prefix + "vector")
    k = require_uint(body, "k", prefix + "k")
    filters = body.get("filters")
    filters_size = len(_json_bytes(filters, prefix + "filters")) if filters is not None else 0
    include_meta = body.get("include_meta", False)
    if include_meta is None:
        include_meta = False
    if type(include_meta) is not bool:
        raise UnprocessableEntity("`include_meta` must be a boolean", field=prefix + "include_meta")
    group_by = body.get("group_by")
    if group_by is not None and type(group_by) is not str:
        raise UnprocessableEntity("`group_by` must be a string", field=prefix + "group_by")
    group_limit = optional_uint(body, "group_limit", prefix + "group_limit")
    nprobe = optional_uint(body, "nprobe", prefix + "nprobe")
    ef = optional_uint(body, "ef", prefix + "ef")
    return vector, k, dict(filters=filters, filters_size=filters_size, include_meta=include_meta,
                           group_by=group_by, group_limit=1 if group_limit is None else group_limit,
                           nprobe=nprobe or None, ef=ef or None)


_SEARCH_FIELDS = frozenset(("vector", "k", "filters", "include_meta", "group_by", "group_limit", "nprobe", "ef"))


def _hit_json(h) -> dict:
    return {"id": h.id, "score": np.float32(h.score), "meta": _meta_json(h.meta)}


def _hits_json(hits) -> list:
    return [_hit_json(h) for h in hits]


def _hit_cbor(h) -> dict:
    meta = None if h.meta is None else orjson.loads(h.meta)
    return {"id": h.id, "score": float(np.float32(h.score)), "meta": meta}


def _hit_weight(h) -> int:
    """About the bytes of a hit's JSON: what a large answer is cut into pieces by."""
    return len(h.id) + HIT_WEIGHT_EXTRA + (4 if h.meta is None else len(h.meta))


def _hits_weight(hits) -> int:
    return sum(map(_hit_weight, hits))


def parse_meta(value, path: str) -> RawJson | None:
    if value is None:
        return None
    return RawJson(_json_bytes(value, path, orjson.OPT_SORT_KEYS))


def _json_bytes(value, path: str, option: int = 0) -> bytes:
    """`value` as JSON; what cannot be written is a 4xx naming `path`, never a 500."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:
        if "recursion" in str(exc).lower():
            canonical_json(value, path)  # raises the codec's "nested too deeply" 400
        # A CBOR body can hold what JSON cannot (byte strings, tags, non-string map keys,
        # integers past 64 bits): 422 naming the field.
        raise UnprocessableEntity(f"`{path}` must be JSON", field=path) from None


def _item(obj, path: str) -> Item:
    if type(obj) is not dict:
        raise UnprocessableEntity("item must be an object", field=path)
    vid = require_str(obj, "id", f"{path}.id")
    vector = parse_vector(require(obj, "vector", f"{path}.vector"), f"{path}.vector")
    return Item(vid, vector, parse_meta(obj.get("meta"), f"{path}.meta"))


class _Meta(bytes):
    """A stored meta (canonical JSON text): embedded as is in JSON, parsed for CBOR."""

    __slots__ = ()


def _default(value):
    if isinstance(value, _Meta):
        return _Fragment(bytes(value))
    raise TypeError(type(value).__name__)


def _respond(request, obj, status: int = 200) -> Response:
    if _wants_cbor(request):
        return Response(cbor2.dumps(_cbor_ready(obj)), status, [("Content-Type", CBOR)])
    return raw_json_response(orjson.dumps(obj, option=_NUMPY, default=_default), status)


def _cbor_ready(obj):
    if isinstance(obj, dict):
        return {k: _cbor_ready(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cbor_ready(v) for v in obj]
    if isinstance(obj, _Meta):
        return orjson.loads(bytes(obj))
    if isinstance(obj, np.ndarray):
        return obj.astype("<f4").tobytes()
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _meta_json(meta: bytes | None):
    return _Meta(meta) if meta is not None else None


async def _search_answer(request, hit_lists: list, weights: list[int], *, batch: bool,
                         bytes_max: int) -> Response:
    """`{"hits": [...]}` of one search (batch: `{"results": [{"hits": [...]}, ...]}`), in JSON or
    CBOR.

    A small answer is one encoder call. A large one (up to MAX_VECTOR_BATCH x MAX_K metas of
    MAX_JSON_BYTES: 4 GB) is built in pieces, yielding to the loop (api/pieces.py), and refused
    with 400 naming `k` (a batch: `queries`) once it passes `bytes_max` (VECTOR_RESULT_BYTES_MAX):
    at once for JSON, from a lower bound of its size; for CBOR, which re-encodes every meta and
    may come out smaller or larger, as the bytes are produced. `weights[i]` is
    `_hits_weight(hit_lists[i])`, summed by each search's own task (65,536 hits take 15 ms).
    """
    hits_n = sum(map(len, hit_lists))
    weight = sum(weights)
    cbor = _wants_cbor(request)
    # A small answer fits any cap: escaping makes it at most 6x its weight (an id of control
    # characters), CBOR less, and the cap is at least 2 MiB (kissvdb/config.py).
    if weight <= (CBOR_PIECE_BYTES if cbor else PIECE_BYTES):
        if batch:
            return _respond(request, {"results": [{"hits": _hits_json(hits)} for hits in hit_lists]})
        return _respond(request, {"hits": _hits_json(hit_lists[0])})

    def too_large(cap: int) -> InvalidArgument:
        fewer = "fewer hits (k) or queries" if batch else "fewer hits (k)"
        return InvalidArgument(f"search answer larger than {cap} bytes (VECTOR_RESULT_BYTES_MAX); "
                               f"ask for {fewer}, or leave include_meta off", field="queries" if batch else "k")

    out = PieceWriter(bytes_max, too_large)
    if cbor:
        if batch:
            out.add(cbor_map_head(1) + cbor2.dumps("results") + cbor_array_head(len(hit_lists)))
        for hits in hit_lists:
            out.add(cbor_map_head(1) + cbor2.dumps("hits") + cbor_array_head(len(hits)))
            await add_cbor_items(out, hits, _hit_cbor, _hit_weight)
        return json_chunks_response(out.finish(), content_type=CBOR)
    out.reserve(weight - hits_n * (HIT_WEIGHT_EXTRA - HIT_JSON_MIN_BYTES))
    if batch:
        out.add(b'{"results":[')
    for i, hits in enumerate(hit_lists):
        out.add(b',{"hits":[' if i else b'{"hits":[')
        await add_json_items(out, hits, _hit_json, _hit_weight, option=_NUMPY, default=_default)
        out.add(b"]}")
    if batch:
        out.add(b"]}")
    return json_chunks_response(out.finish(), content_type=JSON)


def _create_args(body: dict) -> tuple[int, str, str | None]:
    dim = require_uint(body, "dim")
    metric = require(body, "metric")
    if metric not in METRICS:
        raise UnprocessableEntity("`metric` must be \"cosine\" or \"dot\"", field="metric")
    index = body.get("index")
    if index is not None:
        if type(index) is not str or index.upper() not in INDEXES:
            raise UnprocessableEntity("`index` must be HNSW, IVF_FLAT_Q8, FLAT or DISKANN", field="index")
        index = index.upper()
    return dim, metric, index


def _batch_items(body: dict) -> list:
    """Items of an upsert_batch; a bad item becomes an inline ItemError (it needs its id)."""
    items = []
    for i, obj in enumerate(require_list(body, "items")):
        path = f"items[{i}]"
        if type(obj) is not dict:
            raise UnprocessableEntity("item must be an object", field=path)
        vid = require_str(obj, "id", f"{path}.id")  # an item without an id cannot be reported inline
        try:
            items.append(_item(obj, path))
        except KissError as exc:
            items.append(ItemError(vid, exc))
    return items


def _batch_ids(body: dict) -> list[str]:
    ids = require_list(body, "ids")
    for i, vid in enumerate(ids):
        if type(vid) is not str:
            raise UnprocessableEntity("ids must be strings", field=f"ids[{i}]")
    return ids


def _batch_queries(body: dict, max_queries: int) -> list:
    queries = require_list(body, "queries")
    if not queries:
        raise InvalidArgument("queries required", field="queries")
    if len(queries) > max_queries:
        raise InvalidArgument("too many queries", field="queries")
    args = []
    for i, q in enumerate(queries):
        if type(q) is not dict:
            raise UnprocessableEntity("query must be an object", field=f"queries[{i}]")
        args.append(_search_args(q, f"queries[{i}]."))
    return args


def _raise_first_query_error(results: list) -> None:
    """The whole search_batch fails, naming the first bad query's field."""
    errors = {i: r for i, r in enumerate(results) if isinstance(r, KissError)}
    if errors:
        i = min(errors)
        exc = errors[i]
        if exc.field is not None and exc.field.split(".")[0] in _SEARCH_FIELDS:
            exc.field = f"queries[{i}].{exc.field}"
        raise exc


def routes(app) -> list[Route]:
    return _collection_routes(app) + _row_routes(app) + _search_routes(app)


def _collection_routes(app) -> list[Route]:
    engine = app.engine

    async def vector_list(request):
        return _respond(request, {"collections": await engine.vector_list()})

    async def vector_info(request, collection: str):
        return _respond(request, await engine.vector_info(collection))

    async def vector_create(request, collection: str):
        dim, metric, index = _create_args(await read_json_object(request))
        return _respond(request, await engine.vector_create(collection, dim, metric, index))

    async def vector_drop(request, collection: str):
        await engine.vector_drop(collection)
        return raw_json_response(b'{"deleted":true}')

    async def vector_compact(request, collection: str):
        return _respond(request, await engine.vector_compact(collection))

    c = "/v1/vector/{collection}"
    return [
        Route("GET", "/v1/vector", vector_list, "read", "vector_list"),
        Route("GET", c, vector_info, "read", "vector_info"),
        Route("POST", c, vector_create, "write", "vector_create"),
        Route("DELETE", c, vector_drop, "write", "vector_drop"),
        Route("POST", c + "/compact", vector_compact, "write", "vector_compact"),
    ]


def _row_routes(app) -> list[Route]:
    engine = app.engine

    async def put(request, collection: str, add: bool):
        body = await read_json_object(request)
        item = Item(require_str(body, "id"), parse_vector(require(body, "vector"), "vector"),
                    parse_meta(body.get("meta"), "meta"))
        await engine.vector_put(collection, item, add=add)
        return raw_json_response(b'{"ok":true}')

    async def vector_add(request, collection: str):
        return await put(request, collection, True)

    async def vector_upsert(request, collection: str):
        return await put(request, collection, False)

    async def vector_update(request, collection: str):
        body = await read_json_object(request)
        vid = require_str(body, "id")
        raw_vec = body.get("vector")
        vector = KEEP if raw_vec is None else parse_vector(raw_vec, "vector")
        raw_meta = body.get("meta")
        meta = KEEP if raw_meta is None else parse_meta(raw_meta, "meta")
        await engine.vector_update(collection, vid, vector, meta)
        return raw_json_response(b'{"ok":true}')

    async def vector_delete(request, collection: str):
        body = await read_json_object(request)
        await engine.vector_delete(collection, require_str(body, "id"))
        return raw_json_response(b'{"deleted":true}')

    async def vector_upsert_batch(request, collection: str):
        items = _batch_items(await read_body(request))
        return _respond(request, {"results": await engine.vector_upsert_batch(collection, items)})

    async def vector_delete_batch(request, collection: str):
        ids = _batch_ids(await read_body(request))
        return _respond(request, {"results": await engine.vector_delete_batch(collection, ids)})

    async def vector_get(request, collection: str):
        vid = request.args.get("id")
        if vid is None:
            raise InvalidArgument("missing query parameter `id`", field="id")
        vector, meta = await engine.vector_get(collection, vid)
        return _respond(request, {"id": vid, "vector": vector, "meta": _meta_json(meta)})

    c = "/v1/vector/{collection}"
    return [
        Route("POST", c + "/add", vector_add, "write", "vector_add"),
        Route("POST", c + "/upsert", vector_upsert, "write", "vector_upsert"),
        Route("POST", c + "/update", vector_update, "write", "vector_update"),
        Route("POST", c + "/delete", vector_delete, "write", "vector_delete"),
        Route("POST", c + "/upsert_batch", vector_upsert_batch, "write", "vector_upsert_batch"),
        Route("POST", c + "/delete_batch", vector_delete_batch, "write", "vector_delete_batch"),
        Route("GET", c + "/get", vector_get, "read", "vector_get"),
    ]


def _search_routes(app) -> list[Route]:
    engine = app.engine
    result_bytes_max = app.settings.vector_result_bytes_max

    async def vector_search(request, collection: str):
        vector, k, kw = _search_args(await read_body(request), "")
        hits = await engine.vector_search(collection, vector, k, **kw)
        return await _search_answer(request, [hits], [_hits_weight(hits)], batch=False,
                                    bytes_max=result_bytes_max)

    async def vector_search_batch(request, collection: str):
        args = _batch_queries(await read_body(request), engine.settings.max_vector_batch)
        results = await engine.vector_search_many(collection, args)
        _raise_first_query_error(results)
        return await _search_answer(request, results, [_hits_weight(r) for r in results], batch=True,
                                    bytes_max=result_bytes_max)

    # Searches are POSTs that write nothing: the read role may use them.
    c = "/v1/vector/{collection}"
    return [
        Route("POST", c + "/search", vector_search, "read", "vector_search"),
        Route("POST", c + "/search_batch", vector_search_batch, "read", "vector_search_batch"),
    ]

"""The document routes, `/v1/doc/*`, as the contract's §3.4 plus CAS, TTL, find operators.

| route                                 | answer                                                  |
|---------------------------------------|---------------------------------------------------------|
| GET    /v1/doc                        | {"collections": [{"name", "count"}]} by name (live docs) |
| PUT    /v1/doc/<c>/<id>[?if_revision=&ttl_ms=] | {"id", "revision", "doc", "expires_at_ms"}     |
| GET    /v1/doc/<c>/<id>               | {"id", "revision", "doc", "expires_at_ms"}; 404 "document not found" |
| DELETE /v1/doc/<c>/<id>[?if_revision=] | {"deleted": bool} (false when absent; never 404)       |
| POST   /v1/doc/<c>/find               | {"documents": [{"id", "doc", "revision"}], "next_cursor"} |
| POST   /v1/doc/<c>/_index             | {"collection", "field", "index", "created"}              |

The PUT body is the document itself (any JSON value), so the additions the original lacks travel
in the query string: `if_revision` (409 revision_mismatch when stale or absent, as KV's CAS) and
`ttl_ms` (expiry is a logged `doc_deleted` event with reason "ttl"). DELETE takes `if_revision`.
`find` takes `{"filter", "limit" [20, at most MAX_DOC_FIND, at least 1], "sort", "cursor"}`;
its semantics live in kissvdb/documents/query.py. Checks in the contract's order: collection length
(and name characters), id length, doc size. A document id equal to a static segment (`find`,
`_index`) cannot be used (405), as in the original.
"""

from __future__ import annotations

import orjson

from kissvdb.documents.query import FindQuery, parse_sort
from kissvdb.documents.state import RESERVED_IDS
from kissvdb.errors import PayloadTooLarge, UnprocessableEntity

from ..codec import canonical_json, optional_uint, query_uint, raw_json_response, read_json, read_json_object, require_str
from ..routing import Route

FIND_LIMIT_DEFAULT = 20
DOC_COLLECTIONS_MAX = 10_000  # collections listed by GET /v1/doc (a few hundred KB of JSON)

_dumps = orjson.dumps
_Fragment = orjson.Fragment


def doc_json(item) -> dict:
    return {"id": item.id, "revision": item.revision, "doc": _Fragment(item.doc),
            "expires_at_ms": item.expires_at_ms}


def routes(app) -> list[Route]:
    engine = app.engine
    settings = app.settings
    max_find = settings.max_doc_find
    max_json = settings.max_json_bytes

    async def doc_collections(request):
        found = await engine.doc_collections(DOC_COLLECTIONS_MAX)
        return raw_json_response(_dumps({"collections": [{"name": n, "count": c} for n, c in found]}))

    async def doc_put(request, collection: str, id: str):
        engine.check_doc_address(collection, id)
        if_revision = query_uint(request.args, "if_revision")
        ttl_ms = query_uint(request.args, "ttl_ms")
        doc = canonical_json(await read_json(request), "body")
        item = await engine.doc_put(collection, id, doc, ttl_ms=ttl_ms, if_revision=if_revision)
        return raw_json_response(_dumps(doc_json(item)))

    async def doc_get(request, collection: str, id: str):
        item = await engine.doc_get(collection, id)
        return raw_json_response(_dumps(doc_json(item)))

    async def doc_delete(request, collection: str, id: str):
        engine.check_doc_address(collection, id)
        if_revision = query_uint(request.args, "if_revision")
        deleted = await engine.doc_delete(collection, id, if_revision=if_revision)
        return raw_json_response(b'{"deleted":true}' if deleted else b'{"deleted":false}')

    async def doc_find(request, collection: str):
        engine.check_doc_address(collection)
        body = await read_json_object(request)
        flt = body.get("filter")
        if flt is not None and len(canonical_json(flt, "filter")) > max_json:
            raise PayloadTooLarge("filter too large", field="filter")
        limit = optional_uint(body, "limit")
        limit = FIND_LIMIT_DEFAULT if limit is None else max(1, min(limit, max_find))
        cursor = body.get("cursor")
        if cursor is not None and type(cursor) is not str:
            raise UnprocessableEntity("`cursor` must be a string or null", field="cursor")
        query = FindQuery(collection, flt, parse_sort(body.get("sort")), limit, cursor)
        rows, next_cursor = await engine.doc_find(query)
        documents = [{"id": id_, "doc": _Fragment(doc), "revision": revision} for id_, doc, revision, _exp in rows]
        return raw_json_response(_dumps({"documents": documents, "next_cursor": next_cursor}))

    async def doc_index(request, collection: str):
        engine.check_doc_address(collection)
        body = await read_json_object(request)
        field = require_str(body, "field")
        name, created = await engine.doc_create_index(collection, field)
        return raw_json_response(_dumps({"collection": collection, "field": field, "index": name, "created": created}))

    # `/v1/doc/{c}/find` and `/_index` are POST-only static routes; they win over `{id}`.
    doc = "/v1/doc/{collection}/{id:path}"
    static = tuple(sorted(RESERVED_IDS))
    return [
        Route("GET", "/v1/doc", doc_collections, "read", "doc_collections"),
        Route("PUT", doc, doc_put, "write", "doc_put", exclude=static),
        Route("GET", doc, doc_get, "read", "doc_get", exclude=static),
        Route("DELETE", doc, doc_delete, "write", "doc_delete", exclude=static),
        Route("POST", "/v1/doc/{collection}/find", doc_find, "read", "doc_find"),
        Route("POST", "/v1/doc/{collection}/_index", doc_index, "write", "doc_index"),
    ]

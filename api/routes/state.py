"""The key-value routes, `/v1/state*`, exactly as the contract's §3.3.

| route                          | answer                                                     |
|--------------------------------|------------------------------------------------------------|
| GET    /v1/state               | bare JSON array of StateItem (prefix, limit [100, max 1000], start_after)|
| POST   /v1/state/batch_put     | {"results": [...]} in input order, one result per operation |
| GET    /v1/state/<key>         | StateItem, or 404 "key not found"                          |
| PUT    /v1/state/<key>         | {"key", "revision", "expires_at_ms"}                       |
| DELETE /v1/state/<key>         | {"deleted": bool} (never 404); ?if_revision= CAS (409)     |

StateItem = {"key", "value", "revision", "expires_at_ms", "mod_offset"}; `mod_offset` is the
offset of the key's last write (beyond the original, which clients ignore).
Additions for paging and CAS (issue 12): `start_after=K` lists only keys strictly after K in
UTF-8 byte order (the last key of a page is the next page's cursor), combined with `prefix` and
`limit`; `DELETE ?if_revision=N` deletes only while the live revision is N (409
revision_mismatch otherwise, or when the key is absent), as PUT's `if_revision` does.

Shape is checked here (422 naming the field) before the engine is called; meaning (key length,
value size, revisions) is checked by the engine. Either way a 4xx writes nothing.
Differences from the original, on purpose: `limit=0` returns `[]` (the original returned up to
one item); `ttl_ms: 0` answers 200 with `expires_at_ms` = now (the original answered 500).
`<key>` is the percent-decoded segment and may contain '/' (`%2F`); as in the original, the
static `batch_put` wins, so GET/PUT/DELETE `/v1/state/batch_put` is 405 (the `{key:path}`
template excludes it, so routing answers 405 and OPTIONS alike: Allow: OPTIONS, POST).
"""

from __future__ import annotations

import orjson

from kissvdb.errors import InvalidArgument, KissError, UnprocessableEntity
from kissvdb.kv.state import Put, check_user_writable

from ..codec import (
    canonical_json,
    optional_uint,
    query_uint,
    raw_json_response,
    read_json_object,
    require,
    require_list,
    require_str,
)
from ..pieces import json_array_body
from ..routing import Route

LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000  # silently capped, as the original
ITEM_JSON_BYTES = 96  # a StateItem's JSON beyond its key and value (names, numbers, braces)

_dumps = orjson.dumps
_Fragment = orjson.Fragment


def item_json(item) -> dict:
    """A StateItem as the response object; its value (RawJson) is embedded, not re-parsed."""
    return {
        "key": item.key,
        "value": _Fragment(item.value),
        "revision": item.revision,
        "expires_at_ms": item.expires_at_ms,
        "mod_offset": item.mod_offset,
    }


def item_weight(item) -> int:
    """About the bytes of an item's JSON: what a list answer is cut into pieces by."""
    return len(item.value) + len(item.key) + ITEM_JSON_BYTES


def _put_op(op: object, index: int) -> Put:
    """One batch operation's fields, checked. Raises UnprocessableEntity naming the field."""
    path = f"operations[{index}]"
    key = op["key"]  # type: ignore[index]  (checked by the caller)
    value = require(op, "value", f"{path}.value")  # type: ignore[arg-type]
    ttl_ms = optional_uint(op, "ttl_ms", f"{path}.ttl_ms")  # type: ignore[arg-type]
    if_revision = optional_uint(op, "if_revision", f"{path}.if_revision")  # type: ignore[arg-type]
    return Put(key, canonical_json(value, f"{path}.value"), ttl_ms, if_revision)


def routes(app) -> list[Route]:
    engine = app.engine
    settings = app.settings
    max_batch = settings.max_state_batch

    async def state_list(request):
        args = request.args
        limit = min(query_uint(args, "limit", LIST_LIMIT_DEFAULT), LIST_LIMIT_MAX)
        # The engine checks the prefix length ("prefix too long") and answers [] for limit 0.
        items = await engine.kv_list(args.get("prefix", ""), limit, args.get("start_after"))
        # Up to LIST_LIMIT_MAX values of MAX_JSON_BYTES (64 MB): encoded in pieces, yielding.
        return raw_json_response(await json_array_body(items, item_json, item_weight))

    async def state_get(request, key: str):
        item = await engine.kv_get(key)
        return raw_json_response(_dumps(item_json(item)))

    async def state_put(request, key: str):
        body = await read_json_object(request)
        value = require(body, "value")
        ttl_ms = optional_uint(body, "ttl_ms")
        if_revision = optional_uint(body, "if_revision")
        item = await engine.kv_put(
            key, canonical_json(value, "value"), ttl_ms=ttl_ms, if_revision=if_revision
        )
        return raw_json_response(
            _dumps({"key": item.key, "revision": item.revision, "expires_at_ms": item.expires_at_ms})
        )

    async def state_delete(request, key: str):
        if_revision = query_uint(request.args, "if_revision") if request.query_string else None
        deleted = await engine.kv_delete(key, if_revision=if_revision)
        return raw_json_response(b'{"deleted":true}' if deleted else b'{"deleted":false}')

    async def state_batch_put(request):
        body = await read_json_object(request)
        operations = _checked_operations(require_list(body, "operations"), max_batch)
        return raw_json_response(_dumps({"results": await _batch_put(engine, operations)}))

    # `/v1/state/batch_put` is a POST-only static route; it wins over `{key}` (contract §1.4).
    key = "/v1/state/{key:path}"
    static = ("batch_put",)
    return [
        Route("GET", "/v1/state", state_list, "read", "state_list"),
        Route("GET", key, state_get, "read", "state_get", exclude=static),
        Route("PUT", key, state_put, "write", "state_put", exclude=static),
        Route("DELETE", key, state_delete, "write", "state_delete", exclude=static),
        Route("POST", "/v1/state/batch_put", state_batch_put, "write", "state_batch_put"),
    ]


def _checked_operations(operations: list, max_batch: int) -> list:
    """The batch's own shape. An operation without a string key cannot be reported inline (its
    result names the key), so it fails the whole request before anything is written; every other
    shape error is that operation's inline error."""
    if not operations:
        raise InvalidArgument("operations required", field="operations")
    if len(operations) > max_batch:
        raise InvalidArgument("too many operations", field="operations")
    for index, op in enumerate(operations):
        if type(op) is not dict:
            raise UnprocessableEntity("operation must be a JSON object", field=f"operations[{index}]")
        path = f"operations[{index}].key"
        check_user_writable(require_str(op, "key", path), path)
    return operations


async def _batch_put(engine, operations: list) -> list[dict]:
    """One result per operation, in order: its inline error, or the engine's outcome."""
    results: list[dict | None] = [None] * len(operations)
    valid: list[Put] = []
    positions: list[int] = []
    for index, op in enumerate(operations):
        try:
            valid.append(_put_op(op, index))
        except KissError as error:
            results[index] = {"status": "error", "key": op["key"], "error": error.body()}
            continue
        positions.append(index)

    outcomes = await engine.kv_batch_put(valid) if valid else []
    for index, put, outcome in zip(positions, valid, outcomes, strict=True):
        if isinstance(outcome, KissError):
            error = outcome.body()
            if "field" in error:  # name it as the shape checks do: a path into the body
                error["field"] = f"operations[{index}].{error['field']}"
            results[index] = {"status": "error", "key": put.key, "error": error}
        else:
            results[index] = {"status": "ok", "key": outcome.key, "revision": outcome.revision,
                              "expires_at_ms": outcome.expires_at_ms}
    return results

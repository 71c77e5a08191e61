"""Request bodies in, JSON responses out: the HTTP hot path's encoding, with orjson.

Owns: reading a request body once (`await request.body()`), parsing it with orjson, the
shape/type checks that name the bad field, query-string number parsing, and building JSON
responses (`api.http.messages.Response`).

Guarantees:
- Every shape or type failure raises a `KissError` whose `field` names what was wrong (the JSON
  path, e.g. `operations[2].ttl_ms`), before anything reaches the engine: a 4xx never writes.
- Status codes follow the contract's framework table (§1.3): no/other content type -> 415,
  body not JSON -> 400, JSON of the wrong shape or type -> 422, bad query value -> 400.
- User values are made canonical once (`canonical_json`: compact, keys sorted) and travel as
  `RawJson` bytes; StateItem values are embedded in responses with `orjson.Fragment`, never
  re-parsed.
Never does: semantic checks (key length, value size, revisions). The engine owns those, so a
single put and a batch operation share them.
"""

from __future__ import annotations

from typing import Any

import orjson

from kissvdb.errors import InvalidArgument, UnprocessableEntity, UnsupportedMediaType
from kissvdb.events import RawJson

from .http.messages import Response

JSON = "application/json"
U64_MAX = (1 << 64) - 1

_Fragment = orjson.Fragment
_dumps = orjson.dumps
_loads = orjson.loads
_SORT = orjson.OPT_SORT_KEYS


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


# ---- bodies -------------------------------------------------------------------------------


def _is_json_content_type(content_type: str) -> bool:
    """application/json or application/<x>+json, parameters (charset) allowed, any case."""
    mime = content_type.partition(";")[0].strip().lower()
    return mime == JSON or (mime.startswith("application/") and mime.endswith("+json"))


async def read_json(request) -> Any:
    """The request body parsed as JSON (any JSON value). Raises 415/400 (field `body`)."""
    content_type = request.headers.get("Content-Type")
    if content_type is None or not _is_json_content_type(content_type):
        raise UnsupportedMediaType(
            "expected request with `Content-Type: application/json`", field="body"
        )
    raw = await request.body()
    try:
        return _loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid JSON body: {exc}", field="body") from None


async def read_json_object(request) -> dict:
    """The request body, which must be a JSON object (else 422, field `body`)."""
    body = await read_json(request)
    if type(body) is not dict:
        raise UnprocessableEntity("request body must be a JSON object", field="body")
    return body


# ---- field checks (422: the JSON parsed but has the wrong shape) ---------------------------


def require(obj: dict, name: str, path: str | None = None) -> Any:
    """`obj[name]`, which must be present (it may be null). Missing -> 422 naming it."""
    value = obj.get(name, MISSING)
    if value is MISSING:
        raise UnprocessableEntity(f"missing field `{name}`", field=path or name)
    return value


def optional_uint(obj: dict, name: str, path: str | None = None) -> int | None:
    """`obj[name]` as an unsigned 64-bit integer, or None when absent or null."""
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 0 or value > U64_MAX:
        raise UnprocessableEntity(
            f"`{name}` must be a non-negative integer or null", field=path or name
        )
    return value


def require_uint(obj: dict, name: str, path: str | None = None) -> int:
    """`obj[name]` as an unsigned 64-bit integer; missing or null -> 422 naming it."""
    value = require(obj, name, path)
    if type(value) is not int or value < 0 or value > U64_MAX:
        raise UnprocessableEntity(f"`{name}` must be a non-negative integer", field=path or name)
    return value


def require_str(obj: dict, name: str, path: str | None = None) -> str:
    """`obj[name]` as a string; missing, null or another type -> 422 naming it."""
    value = require(obj, name, path)
    if type(value) is not str:
        raise UnprocessableEntity(f"`{name}` must be a string", field=path or name)
    return value


def require_list(obj: dict, name: str, path: str | None = None) -> list:
    """`obj[name]` as a JSON array; missing, null or another type -> 422 naming it."""
    value = require(obj, name, path)
    if type(value) is not list:
        raise UnprocessableEntity(f"`{name}` must be an array", field=path or name)
    return value


# ---- query strings (400: the original's query extractor answers 400) -----------------------


def query_uint(args, name: str, default: int | None = None) -> int | None:
    """Query parameter `name` as an unsigned 64-bit integer; absent -> `default`."""
    text = args.get(name)
    if text is None:
        return default
    value = parse_u64(text)
    if value is None:
        raise InvalidArgument(f"`{name}` must be a non-negative integer", field=name)
    return value


_U64_DIGITS_MAX = len(str(U64_MAX))


def parse_u64(text: str | None) -> int | None:
    """`text` as an unsigned 64-bit integer, or None if it is not one."""
    if text is None or not text.isdigit() or not text.isascii():
        return None
    # Python refuses to convert more than 4300 digits (ValueError): too many is no u64 anyway.
    if len(text.lstrip("0")) > _U64_DIGITS_MAX:
        return None
    value = int(text)
    return value if value <= U64_MAX else None


# ---- values and responses ------------------------------------------------------------------


# orjson reads JSON nested up to 1024 levels (deeper: 400 `body`) but writes at most 254, so a
# user value between the two parses and then cannot be stored: refused here, naming its field.
JSON_DEPTH_MAX = 254


def canonical_json(value: Any, field: str) -> RawJson:
    """A user JSON value as canonical bytes: compact, object keys sorted (as serde's BTreeMap).

    Raises InvalidArgument naming `field` when `value` is nested deeper than JSON_DEPTH_MAX.
    """
    try:
        return RawJson(_dumps(value, option=_SORT))
    except orjson.JSONEncodeError:
        # A parsed body holds only JSON types, so depth is the one thing that can fail here.
        raise InvalidArgument(
            f"`{field}` nested too deeply (at most {JSON_DEPTH_MAX} levels)", field=field
        ) from None


def fragment(raw: bytes) -> orjson.Fragment:
    """Embed already-encoded JSON bytes (a RawJson) in a response without re-parsing them."""
    return _Fragment(raw)


def json_response(obj: Any, status: int = 200) -> Response:
    """A JSON response built with orjson (dict keys keep their insertion order)."""
    return Response(_dumps(obj), status, [("Content-Type", JSON)])


def raw_json_response(body: bytes | list[bytes], status: int = 200) -> Response:
    """A response whose body is already JSON bytes (or pieces of them, sent in order)."""
    return Response(body, status, [("Content-Type", JSON)])


JOIN_BYTES_MAX = 256 << 10  # a body in pieces up to this size is joined: cheaper than sending pieces


def json_chunks_response(body, status: int = 200, content_type: str = JSON) -> Response:
    """A response whose body is JSON (or `content_type`) already encoded in pieces
    (`kissvdb.sql.result.JsonChunks`).

    A large body is sent piece by piece under its Content-Length and never joined: joining
    megabytes is one copy that holds the GIL (and so the event loop) for tens of milliseconds,
    and doubles the memory. The server releases each piece once it has been written.
    """
    if body.length <= JOIN_BYTES_MAX:
        return Response(body.join(), status, [("Content-Type", content_type)])
    return Response(body.chunks, status, [("Content-Type", content_type)])

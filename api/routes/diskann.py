"""The DiskANN control routes (contract §2 rows 33-35, §3.8), for collections created with
`"index": "DISKANN"` (or INDEX_KIND=DISKANN).

| route                                      | role  | answer                                  |
|--------------------------------------------|-------|-----------------------------------------|
| POST /v1/vector/<c>/diskann/build[?wait=]  | write | {"ok": true, "params", "status"}        |
| POST /v1/vector/<c>/diskann/tune           | write | {"ok": true, "params", "status"}        |
| GET  /v1/vector/<c>/diskann/status         | read  | DiskAnnStatus (+ building, progress...) |

Body of build and tune: a JSON object (may be `{}`) with `max_degree`, `build_threads`,
`search_list_size` (non-negative integers or null; clamped as §3.8 says) and, for build, `wait`
(bool; or `?wait=true`). Unlike the original, a build runs in the background and answers at once;
`wait` answers when it is done, as the original's synchronous build did. Build and tune on a
collection of another index kind answer 409 naming `collection`; status answers there with
`available: false`. Shape errors are 422 naming the field, before anything is stored.
"""

from __future__ import annotations

from kissvdb.errors import InvalidArgument, UnprocessableEntity
from kissvdb.vectors.diskann.params import FIELDS

from ..codec import optional_uint, read_json_object, raw_json_response
from ..routing import Route

import orjson

_KNOWN = frozenset(FIELDS) | {"wait"}


def parse_params(body: dict, *, build: bool) -> dict:
    """The three params (absent or null = keep the stored or configured value)."""
    for name in body:
        if name not in _KNOWN or (name == "wait" and not build):
            raise UnprocessableEntity(f"unknown field `{name}` (expected {', '.join(FIELDS)}"
                                      f"{', wait' if build else ''})", field=name)
    return {name: optional_uint(body, name) for name in FIELDS if body.get(name) is not None}


def parse_wait(body: dict, args) -> bool:
    wait = body.get("wait")
    if wait is not None and type(wait) is not bool:
        raise UnprocessableEntity("`wait` must be true or false", field="wait")
    text = args.get("wait")
    if text is not None:
        if text.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument("`wait` must be true or false", field="wait")
        wait = wait or text.lower() in ("true", "1")
    return bool(wait)


def routes(app) -> list[Route]:
    engine = app.engine

    async def diskann_build(request, collection: str):
        body = await read_json_object(request)
        params = parse_params(body, build=True)
        wait = parse_wait(body, request.args)
        return _json(await engine.diskann_build(collection, params, wait=wait))

    async def diskann_tune(request, collection: str):
        body = await read_json_object(request)
        return _json(await engine.diskann_tune(collection, parse_params(body, build=False)))

    async def diskann_status(request, collection: str):
        return _json(await engine.diskann_status(collection))

    c = "/v1/vector/{collection}/diskann"
    return [
        Route("POST", c + "/build", diskann_build, "write", "vector_diskann_build"),
        Route("POST", c + "/tune", diskann_tune, "write", "vector_diskann_tune"),
        Route("GET", c + "/status", diskann_status, "read", "vector_diskann_status"),
    ]


def _json(obj) -> object:
    return raw_json_response(orjson.dumps(obj))

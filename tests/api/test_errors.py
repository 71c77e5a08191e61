"""The error shape: every error is `{"error", "message"}` (+ `field`), framework ones included.

Covers the contract's §1.3 tables (codes, and the framework failures kissvdb answers in JSON),
the translation table in api/errors.py for every KissError subclass, 503 + Retry-After, the
request timeout (408), the body limit (413), 500s being counted, HEAD and CORS.
Routes that raise on purpose are added to the real app by the tests themselves.
"""

from __future__ import annotations

import logging

import pytest
import trio

from kissvdb import errors as kerr
from tests.helpers import assert_error

JSON_HEADERS = {"Content-Type": "application/json"}


def add_route(api, path: str, handler, methods=("GET",), role: str = "read") -> None:
    """Add a route to the running app's table (the router is rebuilt with it)."""
    from kissvdb.api.routing import Route, Router

    added = [Route(m, path, handler, role, f"test:{m}:{path}") for m in methods]
    api.app.router = Router([*api.app.routes, *added])


def raising(error: BaseException):
    async def handler(request):
        raise error

    return handler


# ---- framework failures (contract §1.3, second table) ---------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_body_without_json_content_type_is_415(api, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    reply = await api.put("/v1/state/k", data=b'{"value": 1}', headers=headers)
    assert_error(reply, 415, "unsupported_media_type", field="body")
    assert_error(await api.get("/v1/state/k"), 404)


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/merge+json"]
)
async def test_json_content_type_variants_are_accepted(api, content_type):
    reply = await api.put("/v1/state/k", data=b'{"value": 1}', headers={"Content-Type": content_type})
    assert reply.status_code == 200, reply.content


@pytest.mark.parametrize("body", [b"", b"{", b"{'value': 1}", b'{"value": NaN}', b"\xff\xfe", b'{"value":1e999}'])
async def test_invalid_json_is_400_naming_body(api, body):
    reply = await api.put("/v1/state/k", data=body, headers=JSON_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="body")
    assert_error(await api.get("/v1/state/k"), 404)


@pytest.mark.parametrize("body", [b"[]", b"1", b'"value"', b"null"])
async def test_json_that_is_not_an_object_is_422_naming_body(api, body):
    reply = await api.put("/v1/state/k", data=body, headers=JSON_HEADERS)
    assert_error(reply, 422, "invalid_argument", field="body")
    assert_error(await api.get("/v1/state/k"), 404)


async def test_unparseable_query_is_400_naming_the_parameter(api):
    assert_error(await api.get("/v1/state?limit=abc"), 400, "invalid_argument", field="limit")


async def test_body_over_max_body_bytes_is_413_and_writes_nothing(make_api):
    async with make_api(max_body_bytes=200) as api:
        body = b'{"value": "' + b"x" * 300 + b'"}'
        reply = await api.put("/v1/state/k", data=body, headers=JSON_HEADERS)
        assert_error(reply, 413, "payload_too_large", field="body", message="request body too large")
        assert_error(await api.get("/v1/state/k"), 404)
        ops = b'{"operations": [{"key": "a", "value": "' + b"y" * 300 + b'"}]}'
        reply = await api.post("/v1/state/batch_put", data=ops, headers=JSON_HEADERS)
        assert_error(reply, 413, "payload_too_large")
        assert (await api.get("/v1/state")).json() == []
        # Just under the limit passes.
        assert (await api.put("/v1/state/k", json={"value": "x" * 100})).status_code == 200


async def test_no_route_is_404_json(api):
    assert_error(await api.get("/v1/nothing/here"), 404, "not_found", message="route not found")
    assert_error(await api.get("/v1/state/"), 404, "not_found")


async def test_wrong_method_is_405_with_allow(api):
    reply = await api.post("/v1/state", json={})
    assert_error(reply, 405, "method_not_allowed")
    assert set(reply.headers["Allow"].split(", ")) >= {"GET", "HEAD"}
    reply = await api.request("PATCH", "/v1/state/k", json={"value": 1})
    assert_error(reply, 405, "method_not_allowed")
    assert {"GET", "PUT", "DELETE"} <= set(reply.headers["Allow"].split(", "))
    assert_error(await api.get("/v1/state/k"), 404)


async def test_request_timeout_is_408(make_api):
    async with make_api(request_timeout_secs=1) as api:
        add_route(api, "/v1/_test/slow", raising_after_sleep())
        with trio.fail_after(10):
            reply = await api.get("/v1/_test/slow")
        assert_error(reply, 408, "timeout", message="request timed out")


def raising_after_sleep():
    async def handler(request):
        await trio.sleep_forever()

    return handler


# ---- the translation table ------------------------------------------------------------------

KISS_ERRORS = [
    (kerr.InvalidArgument("bad thing", field="f"), 400, "invalid_argument"),
    (kerr.PayloadTooLarge("value too large", field="value"), 413, "payload_too_large"),
    (kerr.UnprocessableEntity("wrong type", field="x"), 422, "invalid_argument"),
    (kerr.UnsupportedMediaType("no json", field="body"), 415, "unsupported_media_type"),
    (kerr.Unauthorized("nope"), 401, "unauthorized"),
    (kerr.Forbidden("role"), 403, "forbidden"),
    (kerr.NotFound("key not found"), 404, "not_found"),
    (kerr.MethodNotAllowed("method not allowed"), 405, "method_not_allowed"),
    (kerr.RevisionMismatch("if_revision mismatch"), 409, "revision_mismatch"),
    (kerr.AlreadyExists("collection already exists"), 409, "already_exists"),
    (kerr.Conflict("index is HNSW", field="collection"), 409, "conflict"),
    (kerr.RequestTimeout("request timed out"), 408, "timeout"),
    (kerr.PersistenceError("failed to persist event"), 500, "persistence_error"),
    (kerr.PersistenceError("no space", status=507), 507, "persistence_error"),
    (kerr.KissError("internal"), 500, "internal"),
    (kerr.NotEnabled("sqlite module is disabled"), 404, "not_enabled"),
    (kerr.SqliteError("no such table: x", field="sql"), 400, "sqlite_error"),
    (kerr.ClientGone("client disconnected"), 400, "client_gone"),
    (kerr.TooManyRequests("too many streams"), 429, "too_many_requests"),
]


@pytest.mark.parametrize("error, status, code", KISS_ERRORS, ids=lambda v: type(v).__name__)
async def test_each_kiss_error_maps_to_its_status_and_body(api, error, status, code):
    add_route(api, "/v1/_test/raise", raising(error))
    reply = await api.get("/v1/_test/raise")
    assert_error(reply, status, code, field=error.field, message=error.message)
    if error.field is None:
        assert "field" not in reply.json()


def test_every_kiss_error_subclass_is_covered():
    covered = {type(error) for error, _, _ in KISS_ERRORS}
    subclasses = set()
    stack = [kerr.KissError]
    while stack:
        cls = stack.pop()
        subclasses.add(cls)
        stack.extend(cls.__subclasses__())
    subclasses = {cls for cls in subclasses if cls.__module__ == "kissvdb.errors"}
    missing = subclasses - covered - {kerr.Overloaded, kerr.Unavailable}
    assert not missing, f"add these to KISS_ERRORS: {sorted(c.__name__ for c in missing)}"


@pytest.mark.parametrize("error", [kerr.Overloaded("kv inbox full"), kerr.Unavailable("restarting")])
async def test_overloaded_and_unavailable_are_503_with_retry_after(api, error):
    add_route(api, "/v1/_test/busy", raising(error))
    reply = await api.get("/v1/_test/busy")
    assert_error(reply, 503, "unavailable", message=error.message)
    assert int(reply.headers["Retry-After"]) >= 1


async def test_unknown_exception_is_500_internal_logged_and_counted(api, caplog):
    add_route(api, "/v1/_test/bug", raising(RuntimeError("secret detail")))
    before = await api.metric("http_internal_errors_total")
    with caplog.at_level(logging.ERROR, logger="kissvdb.api"):
        reply = await api.get("/v1/_test/bug")
    body = assert_error(reply, 500, "internal")
    assert "secret detail" not in body["message"]
    assert await api.metric("http_internal_errors_total") == before + 1
    records = [r for r in caplog.records if r.name == "kissvdb.api"]
    assert records and records[-1].exc_info is not None
    assert "RuntimeError" in caplog.text and "/v1/_test/bug" in caplog.text


async def test_one_error_inside_an_exception_group_is_unwrapped(api):
    add_route(api, "/v1/_test/group", raising(ExceptionGroup("nursery", [kerr.NotFound("key not found")])))
    assert_error(await api.get("/v1/_test/group"), 404, "not_found", message="key not found")


async def test_several_errors_in_a_group_are_a_500(api):
    group = ExceptionGroup("nursery", [ValueError("a"), KeyError("b")])
    add_route(api, "/v1/_test/group2", raising(group))
    assert_error(await api.get("/v1/_test/group2"), 500, "internal")


# ---- HEAD and OPTIONS -----------------------------------------------------------------------


async def test_head_is_answered_for_get_routes_without_a_body(api):
    await api.put("/v1/state/k", json={"value": 1})
    reply = await api.request("HEAD", "/v1/state/k")
    assert reply.status_code == 200 and reply.content == b""
    assert reply.headers["content-type"] == "application/json"
    reply = await api.request("HEAD", "/v1/health", auth=False)
    assert reply.status_code == 200 and reply.content == b""
    reply = await api.request("HEAD", "/v1/state/absent")
    assert reply.status_code == 404 and reply.content == b""
    assert reply.headers["content-type"] == "application/json"


async def test_plain_options_lists_allowed_methods(api):
    reply = await api.request("OPTIONS", "/v1/state/k")
    assert reply.status_code == 204
    assert {"GET", "PUT", "DELETE", "HEAD", "OPTIONS"} <= set(reply.headers["Allow"].split(", "))


# ---- CORS -----------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_cors_any_origin_when_unset(api):
    reply = await api.get("/v1/state", headers={"Origin": "https://app.example"})
    assert reply.status_code == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    # Without an Origin (not a browser cross-origin call) no CORS headers are added.
    assert "Access-Control-Allow-Origin" not in (await api.get("/v1/state")).headers


async def test_preflight_is_answered_before_auth(api):
    reply = await api.request("OPTIONS", "/v1/state/k", headers=PREFLIGHT, auth=False)
    assert reply.status_code == 204, reply.content  # the original answered 401 (QUIRK)
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in reply.headers["Access-Control-Allow-Methods"]
    assert reply.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert reply.content == b""
    assert_error(await api.get("/v1/state/k"), 404)


async def test_errors_and_401s_carry_cors_headers(api):
    origin = {"Origin": "https://app.example"}
    reply = await api.get("/v1/state/k", headers=origin, auth=False)
    assert_error(reply, 401)
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    reply = await api.get("/v1/state/k", headers=origin)
    assert_error(reply, 404)
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in reply.headers["Access-Control-Expose-Headers"]


async def test_cors_allow_list_echoes_only_listed_origins(make_api):
    async with make_api(cors_allowed_origins="https://a.example, https://b.example") as api:
        reply = await api.get("/v1/state", headers={"Origin": "https://b.example"})
        assert reply.headers["Access-Control-Allow-Origin"] == "https://b.example"
        assert "Origin" in reply.headers.get_list("Vary")
        reply = await api.get("/v1/state", headers={"Origin": "https://evil.example"})
        assert reply.status_code == 200
        assert "Access-Control-Allow-Origin" not in reply.headers
        assert "Origin" in reply.headers.get_list("Vary")

        allowed = dict(PREFLIGHT, Origin="https://a.example")
        reply = await api.request("OPTIONS", "/v1/state/k", headers=allowed, auth=False)
        assert reply.status_code == 204
        assert reply.headers["Access-Control-Allow-Origin"] == "https://a.example"

        denied = dict(PREFLIGHT, Origin="https://evil.example")
        reply = await api.request("OPTIONS", "/v1/state/k", headers=denied, auth=False)
        assert_error(reply, 403, "forbidden", message="origin not allowed")
        assert "Access-Control-Allow-Origin" not in reply.headers

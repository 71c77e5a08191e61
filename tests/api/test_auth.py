"""Authentication, contract §1.2: public paths, credential sources and their order, messages.

Every refused write is read back to prove nothing was written.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from kissvdb.api.app import create_app
from kissvdb.api.auth import ADMIN, Principal, StaticKeyChecker
from tests.api.conftest import API_KEY, open_client
from tests.helpers import assert_error, raw_request

PUBLIC_OK = ["/", "/index.html", "/v1/health", "/docs", "/docs/openapi.yaml", "/openapi.yaml"]


@pytest.mark.parametrize("path", PUBLIC_OK)
async def test_public_paths_need_no_credential(api, path):
    reply = await api.get(path, auth=False)
    assert reply.status_code == 200, reply.content


@pytest.mark.parametrize("path", ["/assets/app.js", "/docs/missing", "/v1/other/openapi.yaml", "/docsx"])
async def test_paths_that_only_look_public_need_a_key(api, path):
    """Public is an attribute of a route, not a pattern of the path: no route, no exception."""
    assert_error(await api.get(path, auth=False), 401, "unauthorized")
    assert_error(await api.get(path), 404, "not_found")


async def test_public_routes_are_exactly_the_contracts_public_pages(api):
    public = sorted(r.path for r in api.app.routes if r.public)
    # Plus the pages' own files (a fixed table, tests/api/test_static_files.py).
    assert public == sorted(PUBLIC_OK + ["/static/{file:path}"])


async def test_missing_credential_is_401(api):
    reply = await api.get("/v1/state", auth=False)
    assert_error(reply, 401, "unauthorized", message="missing authorization header")


async def test_unknown_path_without_credential_is_401_not_404(api):
    reply = await api.get("/v1/no/such/route", auth=False)
    assert_error(reply, 401, "unauthorized", message="missing authorization header")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {API_KEY}"},
        {"X-Api-Key": API_KEY},
        {"x-api-key": API_KEY},
    ],
)
async def test_each_credential_header_is_accepted(api, headers):
    reply = await api.get("/v1/state", headers=headers, auth=False)
    assert reply.status_code == 200, reply.content


async def test_the_rest_of_a_bearer_header_is_trimmed(api):
    # Sent raw: client libraries refuse a header value with trailing spaces.
    reply = await raw_request(api.url, "GET", "/v1/state", [("Authorization", f"Bearer    {API_KEY}  ")])
    assert reply.status_code == 200, reply.content


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/events"])
async def test_query_key_is_accepted_on_the_stream_routes(api, path):
    reply = await api.request("HEAD", f"{path}?api_key={quote(API_KEY)}", auth=False)
    assert reply.status_code == 200


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/state"), ("PUT", "/v1/state/k"), ("POST", "/v1/vector/x/compact"),
    ("POST", "/v1/sql/query"), ("GET", "/v1/metrics"), ("POST", "/v1/stream"),
])
async def test_query_key_is_refused_everywhere_else(api, method, path):
    """Regression: `?api_key=` on every route let any web page send a "simple" request (a form
    POST, no custom header, so no CORS preflight) carrying the well-known key."""
    before = api.engine.durable_offset
    reply = await api.request(method, f"{path}?api_key={quote(API_KEY)}", json={"value": 1}, auth=False)
    assert reply.status_code == 401 if method != "POST" or path != "/v1/stream" else reply.status_code in (401, 405)
    assert api.engine.durable_offset == before


@pytest.mark.parametrize(
    "authorization",
    ["Bearer ", f"bearer {API_KEY}", f"Basic {API_KEY}", API_KEY, f"Bearer{API_KEY}", f"BEARER {API_KEY}"],
)
async def test_other_authorization_schemes_are_401_format(api, authorization):
    # "Bearer " loses its trailing space like any header value (RFC 9110 §5.5), leaving no scheme.
    reply = await raw_request(api.url, "GET", "/v1/state", [("Authorization", authorization)])
    assert_error(reply, 401, "unauthorized", message="invalid authorization header format")


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "Bearer wrong")],
        [("X-Api-Key", "wrong")],
        [("X-Api-Key", "")],
        [("Authorization", f"Bearer {API_KEY}x")],
        [("Authorization", "Bearer clé".encode())],  # non-ASCII never crashes the comparison
    ],
)
async def test_wrong_key_is_401_invalid(api, headers):
    reply = await raw_request(api.url, "GET", "/v1/state", headers)
    assert_error(reply, 401, "unauthorized", message="invalid api key")
    reply = await api.request("HEAD", "/v1/stream?api_key=wrong", auth=False)
    assert reply.status_code == 401


async def test_first_present_source_wins_without_fallback(api):
    # A wrong Authorization is not rescued by a right x-api-key or ?api_key=.
    headers = {"Authorization": "Bearer wrong", "X-Api-Key": API_KEY}
    reply = await api.get(f"/v1/stream?api_key={API_KEY}", headers=headers, auth=False)
    assert_error(reply, 401, message="invalid api key")
    # A wrong x-api-key is not rescued by a right ?api_key=.
    reply = await api.get(f"/v1/stream?api_key={API_KEY}", headers={"X-Api-Key": "no"}, auth=False)
    assert_error(reply, 401, message="invalid api key")
    # A malformed Authorization is a format error even with a right x-api-key.
    headers = {"Authorization": "Token x", "X-Api-Key": API_KEY}
    assert_error(await api.get("/v1/state", headers=headers, auth=False), 401,
                 message="invalid authorization header format")
    # A right Authorization wins over a wrong x-api-key.
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Api-Key": "wrong"}
    assert (await api.get("/v1/state", headers=headers, auth=False)).status_code == 200


async def test_refused_writes_write_nothing(api):
    reply = await api.put("/v1/state/k", json={"value": 1}, auth=False)
    assert_error(reply, 401)
    reply = await api.put("/v1/state/k", json={"value": 1}, auth=False, headers={"X-Api-Key": "bad"})
    assert_error(reply, 401)
    reply = await api.post(
        "/v1/state/batch_put", json={"operations": [{"key": "k", "value": 1}]}, auth=False
    )
    assert_error(reply, 401)
    reply = await api.delete("/v1/state/k", auth=False)
    assert_error(reply, 401)
    assert_error(await api.get("/v1/state/k"), 404)
    assert await api.metric("events_total") == 0


@pytest.mark.parametrize(
    "path", ["/v1/metrics", "/v1/stream", "/v1/events", "/v1/_bench/ping", "/v1/state/k"]
)
async def test_protected_routes_need_a_key(api, path):
    assert_error(await api.get(path, auth=False), 401, "unauthorized")


def test_static_checker_compares_exactly():
    checker = StaticKeyChecker("s3cret")
    assert checker.check("s3cret") is ADMIN
    assert checker.check("s3cret ") is None
    assert checker.check("S3CRET") is None
    assert checker.check("") is None


class TwoKeys:
    """A KeyChecker with stored keys and roles: the seam a later issue fills."""

    def check(self, token: str) -> Principal | None:
        return {"reader-key": Principal("r", "read"), "admin-key": ADMIN}.get(token)


async def test_a_key_checker_can_be_plugged_in(api):
    app = create_app(api.engine, api.app.settings, key_checker=TwoKeys())
    async with open_client(app, api.app.settings) as client:
        for key in ("reader-key", "admin-key"):
            reply = await client.get("/v1/state", auth=False, headers={"X-Api-Key": key})
            assert reply.status_code == 200
        reply = await client.get("/v1/state", auth=False, headers={"X-Api-Key": API_KEY})
        assert_error(reply, 401, message="invalid api key")

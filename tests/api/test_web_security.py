"""What a web page in the user's browser can and cannot make this server do (api/origins.py),
and the headers every answer carries.

A page from another site can send "simple" requests without a CORS preflight (a form POST), and
the default key `dev` is public knowledge; DNS rebinding lets a foreign name resolve to
127.0.0.1. Each refusal is read back: nothing was written.
"""

from __future__ import annotations

import pytest

from tests.helpers import assert_error, raw_request

PREFLIGHT = {"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"}


@pytest.fixture
async def dev_api(make_api):
    """The out-of-the-box server: key `dev`, bound to loopback."""
    async with make_api(api_key="dev") as api:
        yield api


def dev(headers: dict | None = None) -> dict:
    return {"headers": {"Authorization": "Bearer dev", **(headers or {})}, "auth": False}


# ---- with the default key `dev` --------------------------------------------------------------


@pytest.mark.parametrize("origin", ["https://evil.example", "http://192.168.1.9:9917", "null",
                                    "http://localhost.evil.example"])
async def test_dev_key_refuses_cross_origin_pages(dev_api, origin):
    """Regression: with CORS `*` and the key `dev`, any page could preflight, then PUT and query."""
    reply = await dev_api.request("OPTIONS", "/v1/state/k", headers={**PREFLIGHT, "Origin": origin}, auth=False)
    assert_error(reply, 403, "forbidden", field="Origin")
    assert "Access-Control-Allow-Origin" not in reply.headers
    before = dev_api.engine.durable_offset
    reply = await dev_api.put("/v1/state/k", json={"value": 1}, **dev({"Origin": origin}))
    assert_error(reply, 403, "forbidden", field="Origin")
    reply = await dev_api.post("/v1/sql/exec", json={"sql": "CREATE TABLE t(x)"}, **dev({"Origin": origin}))
    assert_error(reply, 403, "forbidden", field="Origin")
    assert dev_api.engine.durable_offset == before
    # A read is answered (the key is right) but the browser is given no CORS grant to read it.
    reply = await dev_api.get("/v1/state", **dev({"Origin": origin}))
    assert reply.status_code == 200 and "Access-Control-Allow-Origin" not in reply.headers


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5173",
                                    "http://app.localhost:3000"])
async def test_dev_key_allows_loopback_pages(dev_api, origin):
    reply = await dev_api.request("OPTIONS", "/v1/state/k", headers={**PREFLIGHT, "Origin": origin}, auth=False)
    assert reply.status_code == 204 and reply.headers["Access-Control-Allow-Origin"] == origin
    reply = await dev_api.put("/v1/state/k", json={"value": 1}, **dev({"Origin": origin}))
    assert reply.status_code == 200 and reply.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9917", "10.0.0.8:9917", "127.0.0.1.nip.io"])
async def test_dev_key_refuses_foreign_host_names(dev_api, host):
    """DNS rebinding: the page's own name arrives as Host while the socket is loopback."""
    before = dev_api.engine.durable_offset
    reply = await raw_request(dev_api.url, "PUT", "/v1/state/k",
                              [("Host", host), ("Authorization", "Bearer dev"),
                               ("Content-Type", "application/json")], b'{"value": 1}')
    assert_error(reply, 403, "forbidden", field="Host")
    assert dev_api.engine.durable_offset == before


@pytest.mark.parametrize("host", ["localhost:9917", "127.0.0.1", "[::1]:1", "LOCALHOST"])
async def test_dev_key_accepts_loopback_host_names(dev_api, host):
    reply = await raw_request(dev_api.url, "GET", "/v1/state", [("Host", host), ("Authorization", "Bearer dev")])
    assert reply.status_code == 200


async def test_allowed_hosts_extends_the_host_check(make_api):
    async with make_api(api_key="dev", allowed_hosts="kiss.internal, other") as api:
        reply = await raw_request(api.url, "GET", "/v1/state", [("Host", "kiss.internal:9917"),
                                                                ("Authorization", "Bearer dev")])
        assert reply.status_code == 200
        reply = await raw_request(api.url, "GET", "/v1/state", [("Host", "evil.example"),
                                                                ("Authorization", "Bearer dev")])
        assert_error(reply, 403, field="Host")


async def test_a_real_key_leaves_host_and_cors_as_configured(api):
    reply = await raw_request(api.url, "GET", "/v1/state", [("Host", "db.example.com"),
                                                            ("Authorization", "Bearer test-key-0123")])
    assert reply.status_code == 200
    reply = await api.request("OPTIONS", "/v1/state/k", headers={**PREFLIGHT, "Origin": "https://app.example"},
                              auth=False)
    assert reply.status_code == 204 and reply.headers["Access-Control-Allow-Origin"] == "*"


# ---- cross-site writes, whatever the key ------------------------------------------------------


async def test_cross_site_writes_are_refused_unless_the_origin_is_allowed(make_api):
    async with make_api(cors_allowed_origins="https://app.example") as api:
        before = api.engine.durable_offset
        for headers, field in (({"Origin": "https://evil.example"}, "Origin"),
                               ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site")):
            assert_error(await api.put("/v1/state/k", json={"value": 1}, headers=headers), 403, field=field)
            assert_error(await api.post("/v1/vector/x/compact", json={}, headers=headers), 403, field=field)
            assert_error(await api.delete("/v1/state/k", headers=headers), 403, field=field)
        assert api.engine.durable_offset == before
        # Reads from anywhere are answered (CORS decides whether the page may read them).
        assert (await api.get("/v1/state", headers={"Sec-Fetch-Site": "cross-site"})).status_code == 200
        # The allowed origin, the server's own page, and same-site tools may write.
        ok = [{"Origin": "https://app.example"}, {"Origin": api.url}, {"Sec-Fetch-Site": "same-origin"},
              {"Sec-Fetch-Site": "none"}]
        for headers in ok:
            assert (await api.put("/v1/state/k", json={"value": 1}, headers=headers)).status_code == 200, headers


# ---- headers on every answer ---------------------------------------------------------------------


@pytest.mark.parametrize("method, path, auth", [
    ("GET", "/v1/health", False), ("GET", "/v1/state", True), ("GET", "/v1/state", False),
    ("GET", "/nope", True), ("GET", "/", False), ("GET", "/openapi.yaml", False), ("POST", "/v1/health", False),
])
async def test_every_answer_says_nosniff(api, method, path, auth):
    reply = await api.request(method, path, auth=auth)
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/index.html", "/docs"])
async def test_pages_may_not_be_framed(api, path):
    reply = await api.get(path, auth=False)
    csp = reply.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp


async def test_key_listing_and_creation_are_not_cached(api):
    reply = await api.post("/v1/auth/keys", json={"name": "n"})
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "no-store"
    reply = await api.get("/v1/auth/keys")
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "no-store"

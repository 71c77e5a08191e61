"""Bad input the server answers by itself (JSON error, then close), without calling the app."""

from __future__ import annotations

import pytest

from .wire_client import request, served


async def _refused(srv, data: bytes, status: int, code: str = "invalid_argument"):
    """Send `data`, expect `status` with kissvdb's JSON error shape, `Connection: close`, EOF."""
    connection = await srv.connect()
    await connection.send(data)
    response = await connection.response()
    assert response.status == status, response
    assert response.header("content-type") == "application/json"
    body = response.json()
    assert body["error"] == code and body["message"]
    assert response.closes
    await connection.expect_eof()
    return body


@pytest.mark.parametrize("data", [
    b"GET\r\n\r\n",  # no target, no version
    b"GET / HTTP/1.1\r\nHost: test\r\nBad Header: x\r\n\r\n",  # space in a header name
    b"GET / HTTP/1.1\r\nHost: test\r\nX: a\x00b\r\n\r\n",  # NUL in a value
    b"GET / HTTP/1.1\nHost: test\n\n",  # bare LF
    b"GET /a b HTTP/1.1\r\nHost: test\r\n\r\n",
    b"FOO / HTTP/1.1\r\nHost: test\r\n\r\n",  # a method httptools does not know
    b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\nabc",
])
async def test_malformed_requests_get_400_and_close(app, data):
    async with served(app) as srv:
        await _refused(srv, data, 400)
    assert app.calls == 0


async def test_content_length_with_transfer_encoding_is_400(app):
    data = (b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n")
    async with served(app) as srv:
        await _refused(srv, data, 400)
    assert app.calls == 0


async def test_a_bad_request_after_good_ones_is_answered_in_turn(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/hello") + b"NOT HTTP AT ALL\r\n\r\n")
        assert (await connection.response()).status == 200
        bad = await connection.response()
        assert bad.status == 400 and bad.closes
        await connection.expect_eof()


@pytest.mark.parametrize("headers", [
    [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
     ("Sec-WebSocket-Version", "13")],
    [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"), ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")],
])
async def test_upgrade_requests_get_a_clean_error(app, headers):
    async with served(app) as srv:
        body = await _refused(srv, request("GET", "/hello", headers=headers), 400)
        assert "upgrade" in body["message"]
        assert (await srv.exchange(request("GET", "/hello"))).status == 200
    assert app.calls == 1


async def test_connect_method_is_refused(app):
    async with served(app) as srv:
        await _refused(srv, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400)


async def test_http2_prior_knowledge_preface_is_closed_without_a_crash(app):
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" + b"\x00" * 18
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(preface)
        await connection.expect_eof()  # an HTTP/2 client could not read an HTTP/1.1 answer
        assert (await srv.exchange(request("GET", "/hello"))).status == 200


@pytest.mark.parametrize("version", ["2.0", "0.9"])
async def test_other_http_versions_get_505(app, version):
    async with served(app) as srv:
        await _refused(srv, f"GET /hello HTTP/{version}\r\nHost: test\r\n\r\n".encode(), 505)


async def test_url_too_long_is_414(app):
    async with served(app, max_url_bytes=100) as srv:
        body = await _refused(srv, request("GET", "/" + "a" * 200), 414)
        assert body["field"] == "url"
        assert (await srv.exchange(request("GET", "/" + "a" * 50))).status == 404


async def test_header_block_too_large_is_431(app):
    async with served(app, max_header_bytes=1024) as srv:
        body = await _refused(srv, request("GET", "/hello", headers=[("X-Big", "v" * 2000)]), 431)
        assert body["field"] == "headers"
        many = [(f"X-{n}", "v" * 20) for n in range(60)]
        await _refused(srv, request("GET", "/hello", headers=many), 431)


async def test_a_header_block_that_never_ends_is_431(app):
    # One header value sent in pieces and never finished: bounded by the bytes received.
    async with served(app, max_header_bytes=4096) as srv:
        connection = await srv.connect()
        await connection.send(b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        response = None
        try:
            for _ in range(100):
                await connection.send(b"v" * 1024)
        except Exception:
            pass  # the server may close while we still send; the answer is already queued
        response = await connection.response()
        assert response.status == 431 and response.closes
    assert app.calls == 0

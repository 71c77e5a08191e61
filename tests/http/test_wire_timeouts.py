"""Every wait on a client ends. Each test sets the timeout under test short and every other one
longer than the test's own fail_after, so only the limit under test can close the connection."""

from __future__ import annotations

from kissvdb.api.http import BodyTimeout

from .wire_client import request, served

LONG = 60.0  # longer than any test runs: a wait bounded by this would fail the test
TEST_S = 10.0


async def test_slow_headers_get_408_then_close(app):
    async with served(app, timeout_s=TEST_S, header_timeout_s=0.3, keep_alive_timeout_s=LONG) as srv:
        connection = await srv.connect()
        await connection.send(b"GET /hello HTTP/1.1\r\nHost: te")
        response = await connection.response()
        assert response.status == 408 and response.closes
        assert response.json()["error"] == "timeout"
        await connection.expect_eof()
    assert app.calls == 0


async def test_a_connection_that_never_sends_is_closed(app):
    async with served(app, timeout_s=TEST_S, header_timeout_s=0.3, keep_alive_timeout_s=LONG) as srv:
        connection = await srv.connect()
        await connection.expect_eof()


async def test_idle_keep_alive_is_closed(app):
    async with served(app, timeout_s=TEST_S, keep_alive_timeout_s=0.3, header_timeout_s=LONG) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/hello"))
        assert (await connection.response()).status == 200
        await connection.expect_eof()


async def test_a_stalled_body_gets_408_and_is_closed(app):
    async with served(app, timeout_s=TEST_S, body_timeout_s=0.3, keep_alive_timeout_s=LONG,
                      header_timeout_s=LONG, drain_timeout_s=LONG) as srv:
        connection = await srv.connect()
        await connection.send(b"PUT /echo-or-error HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789")
        response = await connection.response()
        assert response.status == 408 and response.closes
        assert response.json() == {"error": "timeout", "message": "request body not received in time"}
        await connection.expect_eof()
    assert isinstance(app.body_errors[0], BodyTimeout)


async def test_a_stalled_body_after_an_early_answer_is_closed(app):
    # e.g. a 401 before the body was read: the drain is bounded, so the socket still closes.
    async with served(app, timeout_s=TEST_S, drain_timeout_s=0.3, body_timeout_s=LONG,
                      keep_alive_timeout_s=LONG, header_timeout_s=LONG) as srv:
        connection = await srv.connect()
        await connection.send(b"PUT /early/401 HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789")
        response = await connection.response()
        assert response.status == 401
        await connection.expect_eof()


async def test_a_stalled_chunked_body_gets_408(app):
    async with served(app, timeout_s=TEST_S, body_timeout_s=0.3, keep_alive_timeout_s=LONG,
                      header_timeout_s=LONG) as srv:
        connection = await srv.connect()
        await connection.send(b"POST /echo-or-error HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        response = await connection.response()
        assert response.status == 408 and response.closes
        await connection.expect_eof()

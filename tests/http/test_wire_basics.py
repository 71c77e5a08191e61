"""Keep-alive, HTTP/1.0, pipelining, what the app sees, and what the server writes back."""

from __future__ import annotations

import logging

import trio

from .wire_client import request, served


async def test_keep_alive_serves_many_requests_on_one_connection(app):
    async with served(app) as srv:
        connection = await srv.connect()
        for _ in range(3):
            await connection.send(request("GET", "/hello"))
            response = await connection.response()
            assert (response.status, response.body) == (200, b"hello")
            assert not response.closes
        assert response.header("content-length") == "5"
        assert response.header("content-type") == "text/plain"
        assert response.header("date")


async def test_http10_closes_by_default(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/hello", version="1.0"))
        response = await connection.response()
        assert (response.status, response.body) == (200, b"hello")
        assert response.closes
        await connection.expect_eof()


async def test_http10_keep_alive_when_asked(app):
    async with served(app) as srv:
        connection = await srv.connect()
        for _ in range(2):
            await connection.send(request("GET", "/hello", version="1.0", headers=[("Connection", "keep-alive")]))
            response = await connection.response()
            assert response.status == 200
            assert response.header("connection") == "keep-alive"


async def test_connection_close_is_echoed_then_closed(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/hello", headers=[("Connection", "close")]) + request("GET", "/hello"))
        response = await connection.response()
        assert response.status == 200 and response.closes
        await connection.expect_eof()


async def test_pipelined_requests_are_answered_in_order(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(
            request("GET", "/info?n=1") + request("POST", "/echo", body=b"second") + request("GET", "/info?n=3")
        )
        first, second, third = [await connection.response() for _ in range(3)]
        assert first.json()["args"] == [["n", "1"]]
        assert second.body == b"second"
        assert third.json()["args"] == [["n", "3"]]


async def test_pipelined_queue_is_bounded(app):
    # Past the cap the queued requests are answered, the last with `Connection: close`; the
    # client retries the rest (RFC 9112 section 9.3.2).
    async with served(app, max_pipelined_requests=4) as srv:
        connection = await srv.connect()
        await connection.send(b"".join(request("GET", f"/info?n={n}") for n in range(10)))
        answered = []
        while True:
            response = await connection.response()
            answered.append(response.json()["args"][0][1])
            if response.closes:
                break
        assert answered == ["0", "1", "2", "3"]
        await connection.expect_eof()


async def test_request_target_and_headers_arrive_whole_when_sent_byte_by_byte(app):
    data = request("GET", "/info/a%2Fb?x=1&x=2&y=%C3%A9", headers=[("X-Long", "v" * 300), ("X-Rep", "1"), ("x-rep", "2")])
    async with served(app) as srv:
        connection = await srv.connect()
        for byte in data:
            await connection.send(bytes([byte]))
        info = (await connection.response()).json()
    assert info["raw_path"] == "/info/a%2Fb"
    assert info["path"] == "/info/a/b"
    assert info["query_string"] == "x=1&x=2&y=%C3%A9"
    assert info["args"] == [["x", "1"], ["x", "2"], ["y", "é"]]
    assert ["x-long", "v" * 300] in info["headers"]
    assert [pair for pair in info["headers"] if pair[0] == "x-rep"] == [["x-rep", "1"], ["x-rep", "2"]]
    assert info["http_version"] == "1.1"
    assert info["has_deadline"] and info["client_is_loopback"]


async def test_a_path_that_is_not_utf8_is_flagged(app):
    async with served(app) as srv:
        info = (await srv.exchange(request("GET", "/info/%FF"))).json()
    assert info["path_is_utf8"] is False
    assert info["raw_path"] == "/info/%FF"


async def test_absolute_form_target_is_reduced_to_its_path(app):
    async with served(app) as srv:
        info = (await srv.exchange(request("GET", "http://test/info/x?q=1"))).json()
    assert (info["raw_path"], info["query_string"]) == ("/info/x", "q=1")


async def test_head_gets_the_length_but_no_body(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("HEAD", "/hello") + request("GET", "/hello"))
        head = await connection.response(method="HEAD")
        assert head.status == 200 and head.header("content-length") == "5"
        # The next response starts right after the head: no body bytes were sent for HEAD.
        assert (await connection.response()).body == b"hello"


async def test_204_has_no_length_and_no_body(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/empty") + request("GET", "/hello"))
        empty = await connection.response()
        assert empty.status == 204 and empty.header("content-length") is None
        assert empty.header("transfer-encoding") is None
        assert (await connection.response()).body == b"hello"


async def test_app_exception_is_a_logged_500_and_the_server_goes_on(app, caplog):
    caplog.set_level(logging.ERROR, logger="kissvdb.http")
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/boom"))
        response = await connection.response()
        assert response.status == 500
        assert response.json() == {"error": "internal", "message": "internal error"}
        await connection.send(request("GET", "/hello"))
        assert (await connection.response()).status == 200
    assert any("boom" in (record.exc_text or "") for record in caplog.records)


async def test_header_injection_from_the_app_is_refused(app, caplog):
    caplog.set_level(logging.ERROR, logger="kissvdb.http")
    async with served(app) as srv:
        response = await srv.exchange(request("GET", "/inject"))
    assert response.status == 500
    assert response.header("set-cookie") is None and response.header("x-ok") is None
    assert any("control character" in record.getMessage() for record in caplog.records)


async def test_missing_host_on_http11_is_400(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(b"GET /hello HTTP/1.1\r\n\r\n")
        response = await connection.response()
        assert response.status == 400 and response.json()["field"] == "host"
        assert response.closes
        await connection.expect_eof()
    assert app.calls == 0


async def test_a_big_body_arrives_whole(app):
    body = bytes(range(256)) * 8192  # 2 MiB: written beside its head, and past the socket buffer
    async with served(app, max_body_bytes=4 * 1024 * 1024) as srv:
        connection = await srv.connect()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.send, request("POST", "/echo", body=body))
            response = await connection.response()
        assert response.body == body
        await connection.send(request("GET", "/hello"))
        assert (await connection.response()).body == b"hello"

"""Request bodies: chunked, caps, early answers, 100-continue, half-close, disconnects."""

from __future__ import annotations

import pytest
import trio

from kissvdb.api.http import BodyTooLarge, InvalidBody

from .wire_client import request, served

EARLY_STATUSES = [400, 401, 403, 404, 405, 413, 415]


def chunked(path: str, pieces: list[bytes], trailers: bytes = b"", headers: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n".encode() + headers + b"\r\n"
    body = b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces)
    return head + body + b"0\r\n" + trailers + b"\r\n"


async def test_chunked_body_is_joined(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(chunked("/echo", [b"hel", b"lo ", b"world"]) + request("GET", "/hello"))
        assert (await connection.response()).body == b"hello world"
        assert (await connection.response()).body == b"hello"


async def test_chunked_trailers_never_reach_the_headers(app):
    trailers = b"Authorization: Bearer smuggled\r\nX-Trailer: 1\r\n"
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(chunked("/echo", [b"abc"], trailers))
        assert (await connection.response()).body == b"abc"
    request_seen = app.seen[0]
    assert "authorization" not in request_seen.headers and "x-trailer" not in request_seen.headers
    assert request_seen.headers.get("transfer-encoding") == "chunked"


async def test_chunked_body_over_the_cap_is_413_then_close(app):
    async with served(app, max_body_bytes=1000) as srv:
        connection = await srv.connect()
        await connection.send(chunked("/echo-or-error", [b"a" * 600, b"b" * 600]))
        response = await connection.response()
        assert response.status == 413 and response.closes
        assert response.json() == {"error": "payload_too_large", "field": "body",
                                   "message": "request body too large"}
        await connection.expect_eof()
    assert isinstance(app.body_errors[0], BodyTooLarge)


async def test_content_length_over_the_cap_is_413_before_any_body(app):
    async with served(app, max_body_bytes=1000) as srv:
        connection = await srv.connect()
        # Only the head: the answer must not wait for a body it will never read.
        await connection.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n")
        response = await connection.response()
        assert response.status == 413 and response.closes
        assert response.json()["field"] == "body"
    assert app.calls == 0


async def test_413_survives_a_client_that_sends_the_whole_big_body(app):
    # Closing without lingering would reset the connection under the unread upload, and the
    # client would see a reset instead of the 413.
    big = b"x" * (2 * 1024 * 1024)
    async with served(app, max_body_bytes=1024 * 1024) as srv:
        connection = await srv.connect()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.send, request("POST", "/echo", body=big))
            response = await connection.response()
        assert response.status == 413 and response.closes
        await connection.expect_eof()


@pytest.mark.parametrize("status", EARLY_STATUSES)
async def test_early_answer_keeps_the_connection_usable(app, status):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("PUT", f"/early/{status}", body=b"x" * 5000))
        response = await connection.response()
        assert response.status == status and not response.closes
        await connection.send(request("GET", "/hello"))
        assert (await connection.response()).body == b"hello"


@pytest.mark.parametrize("status", [401, 413])
async def test_early_answer_drains_a_body_still_on_its_way(app, status):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(b"PUT /early/%d HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n" % status)
        response = await connection.response()  # answered before the body was sent
        assert response.status == status and not response.closes
        await connection.send(b"0123456789" + request("GET", "/hello"))
        assert (await connection.response()).body == b"hello"


@pytest.mark.parametrize("status", [401, 413])
async def test_early_answer_to_a_big_body_closes_without_losing_the_answer(app, status):
    async with served(app, max_drain_bytes=64 * 1024) as srv:
        connection = await srv.connect()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.send, request("PUT", f"/early/{status}", body=b"x" * (900 * 1024)))
            response = await connection.response()
        assert response.status == status and response.closes
        await connection.expect_eof()


async def test_early_answer_to_an_unread_chunked_body_closes(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(chunked("/early/401", [b"abc"])[:-5])  # the last chunk not sent yet
        response = await connection.response()
        assert response.status == 401 and response.closes


async def test_100_continue_is_sent_when_the_app_reads_the_body(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = await connection.response()
        assert interim.status == 100
        await connection.send(b"hello")
        final = await connection.response()
        assert (final.status, final.body) == (200, b"hello")
        assert not final.closes


async def test_100_continue_is_not_sent_when_the_app_answers_first(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(b"PUT /early/401 HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        response = await connection.response()
        assert response.status == 401  # no 100 before it
        assert response.closes  # the client may never send that body: the connection is done
        await connection.expect_eof()


async def test_100_continue_is_not_sent_for_a_body_over_the_cap(app):
    async with served(app, max_body_bytes=1000) as srv:
        connection = await srv.connect()
        await connection.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        response = await connection.response()
        assert response.status == 413 and response.closes


async def test_half_close_after_a_complete_request_still_gets_the_answer(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("POST", "/echo", body=b"payload"))
        await connection.stream.send_eof()
        response = await connection.response()
        assert response.body == b"payload"
        await connection.expect_eof()


async def test_half_close_mid_body_is_answered_400(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(b"POST /echo-or-error HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nonly-part")
        await connection.stream.send_eof()
        response = await connection.response()
        assert response.status == 400 and response.json()["field"] == "body"
    assert isinstance(app.body_errors[0], InvalidBody)


async def test_a_client_gone_mid_body_does_not_disturb_the_server(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(b"POST /echo-or-error HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\npart")
        await connection.aclose()
        for _ in range(3):
            assert (await srv.exchange(request("GET", "/hello"))).status == 200


async def test_bad_chunk_framing_is_400_then_close(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(b"POST /echo-or-error HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n")
        response = await connection.response()
        assert response.status == 400 and response.closes


async def test_a_body_cut_at_the_cap_closes_even_with_requests_queued_behind_it(app):
    async with served(app, max_body_bytes=1000) as srv:
        connection = await srv.connect()
        await connection.send(chunked("/echo-or-error", [b"a" * 1200]) + request("GET", "/hello"))
        response = await connection.response()
        assert response.status == 413 and response.closes
        await connection.expect_eof()

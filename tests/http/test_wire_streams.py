"""StreamResponse (SSE): chunks as they come, backpressure, and every way a stream ends."""

from __future__ import annotations

import logging
import socket

import trio

from .conftest import FLOOD_CHUNK
from .wire_client import RawConnection, request, served


async def test_each_chunk_is_written_as_it_is_yielded(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/sse"))
        head = await connection.head()
        assert head.status == 200 and head.header("transfer-encoding") == "chunked"
        assert head.header("content-type") == "text/event-stream"
        for n in range(3):
            event = b"data: %d\n\n" % n
            await app.events_send.send(event)
            assert await connection.chunk() == event


async def test_a_stream_that_ends_finishes_the_body_and_keeps_the_connection(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/sse"))
        await connection.head()
        await app.events_send.send(b"data: last\n\n")
        assert await connection.chunk() == b"data: last\n\n"
        await app.events_send.aclose()
        assert await connection.chunk() is None  # the last chunk
        await app.stream_closed.wait()
        await connection.send(request("GET", "/hello"))
        assert (await connection.response()).body == b"hello"


async def test_a_client_that_disconnects_ends_the_stream_and_its_finally_runs(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/sse"))
        await connection.head()
        await app.events_send.send(b"data: 1\n\n")
        assert await connection.chunk() == b"data: 1\n\n"
        await connection.aclose()
        # A write fails (reset or broken pipe); the first ones may still land in the kernel.
        try:
            while True:
                await app.events_send.send(b"data: more\n\n")
        except trio.BrokenResourceError:
            pass  # the iterator was closed
        assert app.stream_closed.is_set()
        assert (await srv.exchange(request("GET", "/hello"))).status == 200


async def test_a_stream_nobody_reads_is_pulled_no_further_and_closed_on_stall(app):
    async with served(app, write_stall_timeout_s=0.5) as srv:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", srv.port))
        connection = RawConnection(trio.SocketStream(sock))
        srv.opened.append(connection)
        await connection.send(request("GET", "/flood"))
        await app.stream_closed.wait()  # the stall timeout closed it, and the iterator's finally ran
        # Backpressure: an infinite iterator was pulled only as fast as the kernel took bytes.
        assert app.pulled * len(FLOOD_CHUNK) < 64 * 1024 * 1024
        assert (await srv.exchange(request("GET", "/hello"))).status == 200


async def test_shutdown_ends_a_stream(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/sse"))
        await connection.head()
        srv.shutdown.set()
        await app.stream_closed.wait()
        rest = await connection.until_eof()
        assert b"0\r\n\r\n" not in rest  # cut, not finished: the client reconnects later


async def test_a_failing_iterator_cuts_the_stream_and_is_logged(app, caplog):
    caplog.set_level(logging.ERROR, logger="kissvdb.http")
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/sse-fails"))
        await connection.head()
        assert await connection.chunk() == b"data: one\n\n"
        assert await connection.until_eof() == b""  # no last chunk: the body is visibly cut
        await app.stream_closed.wait()
    assert any("stream iterator failed" in record.getMessage() for record in caplog.records)


async def test_http10_stream_is_delimited_by_close(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("GET", "/sse", version="1.0"))
        head = await connection.head()
        assert head.header("transfer-encoding") is None and head.closes
        await app.events_send.send(b"data: a\n\n")
        await app.events_send.aclose()
        assert await connection.until_eof() == b"data: a\n\n"


async def test_head_of_a_stream_sends_no_body_and_never_pulls(app):
    async with served(app) as srv:
        connection = await srv.connect()
        await connection.send(request("HEAD", "/sse") + request("GET", "/hello"))
        head = await connection.response(method="HEAD")
        assert head.status == 200 and head.header("content-type") == "text/event-stream"
        assert (await connection.response()).body == b"hello"
        assert app.pulled == 0

"""The server as a whole: graceful shutdown, the connection cap, and containment of failures."""

from __future__ import annotations

import resource
from dataclasses import replace
from functools import partial

import pytest
import trio
import trio.testing

from kissvdb.api.http import HttpLimits, serve_http
from kissvdb.api.http.server import connection_cap

from .wire_client import FAST_LIMITS, RawConnection, request, served


async def _start(nursery: trio.Nursery, app, limits: HttpLimits, shutdown: trio.Event, returned: trio.Event) -> int:
    async def run(task_status=trio.TASK_STATUS_IGNORED):
        await serve_http(app, host="127.0.0.1", port=0, limits=limits, shutdown=shutdown, task_status=task_status)
        returned.set()

    urls = await nursery.start(run)
    return int(urls[0].rsplit(":", 1)[1])


async def test_graceful_shutdown_closes_idle_finishes_in_flight_and_returns(app):
    with trio.fail_after(10):
        shutdown, returned = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            port = await _start(nursery, app, FAST_LIMITS, shutdown, returned)
            idle = await RawConnection.open(port)
            await idle.send(request("GET", "/hello"))
            assert not (await idle.response()).closes
            busy = await RawConnection.open(port)
            await busy.send(request("GET", "/wait"))
            await app.entered.wait()

            shutdown.set()
            await idle.expect_eof()  # closed at once, while the other request still runs
            assert not returned.is_set()
            with pytest.raises(OSError):  # no longer accepting
                await RawConnection.open(port)

            app.release.set()
            response = await busy.response()
            assert (response.status, response.body) == (200, b"done")
            assert response.closes
            await busy.expect_eof()
            await busy.aclose()
            await returned.wait()


async def test_shutdown_grace_period_cancels_what_still_runs(app):
    with trio.fail_after(10):
        shutdown, returned = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            port = await _start(nursery, app, replace(FAST_LIMITS, shutdown_grace_s=0.2), shutdown, returned)
            busy = await RawConnection.open(port)
            await busy.send(request("GET", "/wait"))
            await app.entered.wait()
            shutdown.set()
            await returned.wait()  # /wait is never released: the grace period ends it
            assert await busy.until_eof() == b""


async def test_past_the_connection_cap_new_connections_get_503(app):
    async with served(app, max_connections=2) as srv:
        first, second = await srv.connect(), await srv.connect()
        for connection in (first, second):
            await connection.send(request("GET", "/hello"))
            assert (await connection.response()).status == 200
        third = await srv.connect()
        await third.send(request("GET", "/hello"))
        response = await third.response()
        assert response.status == 503 and response.closes
        assert response.json()["error"] == "unavailable"
        assert response.header("retry-after") == "1"
        await third.expect_eof()

        await first.aclose()
        # The slot frees when the server notices the close; a new connection is then served.
        while (answer := await srv.exchange(request("GET", "/hello"))).status == 503:
            await trio.testing.wait_all_tasks_blocked()
        assert answer.status == 200
        stats = srv.server.statistics()
        assert stats.max_connections == 2 and stats.connections_peak == 2
        assert stats.rejected_total >= 1 and stats.connections_total >= 3
    assert app.calls == 3


def test_the_connection_cap_stays_under_the_file_descriptor_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (400, hard))
        limits = HttpLimits(max_connections=1000, reserved_fds=128, max_rejecting_connections=32)
        assert connection_cap(limits) == 400 - 128 - 32
        assert connection_cap(replace(limits, max_connections=100)) == 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_no_request_stops_the_server(app):
    garbage = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\r\n" * 1000,
        bytes(range(256)) * 4,
        b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    ]
    async with served(app, header_timeout_s=0.3, keep_alive_timeout_s=0.3) as srv:
        for data in garbage:
            connection = await srv.connect()
            try:
                await connection.send(data)
                await connection.until_eof()
            except trio.BrokenResourceError:
                pass  # a reset is a fine answer to garbage
            await connection.aclose()
        assert (await srv.exchange(request("GET", "/hello"))).status == 200


async def test_serve_http_reports_every_bound_address():
    async def app(request):
        raise AssertionError("not called")

    with trio.fail_after(10):
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(partial(serve_http, app, host="127.0.0.1", port=0, shutdown=shutdown))
            assert len(urls) == 1 and urls[0].startswith("http://127.0.0.1:")
            assert int(urls[0].rsplit(":", 1)[1]) > 0
            shutdown.set()

"""How our server carries a stream when its client goes away or half-closes (issue 8, item 4).

Not in the hypercorn conformance subset: hypercorn ends a stream on any EOF from the client,
where ours treats an EOF as a possible half-close and checks before ending it.
"""

from __future__ import annotations

import logging
import socket
import struct

import trio

from tests.api.conftest import API_KEY
from tests.api.test_stream_routes import STREAM_TIMEOUT_S, _gauge, put_keys
from tests.helpers import wait_until


async def _raw_stream(api):
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + API_KEY.encode() + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return stream


async def test_a_client_that_goes_away_mid_stream_is_unsubscribed_at_once(api):
    """Not at the next event or keep-alive (15 s away): the server notices the close."""
    with trio.fail_after(STREAM_TIMEOUT_S):
        stream = await _raw_stream(api)
        await wait_until(lambda: _gauge(api, "sse_clients", 1))
        await stream.aclose()
        await wait_until(lambda: _gauge(api, "sse_clients", 0))


async def test_a_half_closed_stream_client_still_gets_events(api):
    """A client that shut its sending side (it has nothing more to send) is still reading."""
    with trio.fail_after(STREAM_TIMEOUT_S):
        stream = await _raw_stream(api)
        await stream.send_eof()
        await put_keys(api, "half")
        got = b""
        while b"half" not in got:
            got += await stream.receive_some(4096)
        assert await api.metric("sse_clients") == 1
        await stream.aclose()


async def test_a_client_reset_while_its_stream_is_written_is_not_logged_as_a_failure(api, caplog):
    """A reader that dies with unread data resets the connection; the write that meets the reset
    ends the stream quietly (it used to be logged as a failed connection, with a traceback)."""
    with trio.fail_after(STREAM_TIMEOUT_S):
        stream = await _raw_stream(api)
        await wait_until(lambda: _gauge(api, "sse_clients", 1))
        value = "v" * 60_000
        ops = [{"key": f"reset/{i}", "value": value} for i in range(15)]
        for _ in range(20):  # ~18 MB of events: more than the socket buffers hold
            assert (await api.post("/v1/state/batch_put", json={"operations": ops})).status_code == 200
        sock = stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        await stream.aclose()
        await wait_until(lambda: _gauge(api, "sse_clients", 0))
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]

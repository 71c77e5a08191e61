"""A raw-socket HTTP/1.1 client for the wire-level tests, and the server they run against.

The client parses responses by hand (status line, headers, Content-Length, chunked or
close-delimited body), independent of httptools, so the tests do not check the server with the
parser it is built on. Every wait is bounded by the `fail_after` that `served()` opens around the
test body; nothing sleeps.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import AsyncIterator

import trio

from kissvdb.api.http import HttpLimits, HttpServer

TEST_TIMEOUT_S = 15.0
# Limits small enough that the timeout tests end quickly; each test overrides what it checks.
FAST_LIMITS = HttpLimits(
    header_timeout_s=5.0, body_timeout_s=5.0, keep_alive_timeout_s=5.0, drain_timeout_s=5.0,
    linger_timeout_s=2.0, write_stall_timeout_s=5.0, shutdown_grace_s=5.0,
)


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


class RawConnection:
    """One TCP connection, driven byte by byte."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _more(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self._more():
                raise EOFError(f"EOF before {marker!r}; got {self.buffer!r}")
        line, _, self.buffer = self.buffer.partition(marker)
        return line

    async def _read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not await self._more():
                raise EOFError(f"EOF after {len(self.buffer)} of {n} bytes")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def head(self) -> RawResponse:
        """Status line and headers only (the body is left to read)."""
        block = await self._read_until(b"\r\n\r\n")
        status_line, *lines = block.decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return RawResponse(int(status), headers, b"")

    async def response(self, *, method: str = "GET") -> RawResponse:
        """One whole response (a 1xx is returned as its own response)."""
        response = await self.head()
        if method == "HEAD" or response.status < 200 or response.status in (204, 304):
            return response
        length = response.header("content-length")
        if length is not None:
            response.body = await self._read_exactly(int(length))
        elif (response.header("transfer-encoding") or "").lower() == "chunked":
            while (data := await self.chunk()) is not None:
                response.chunks.append(data)
            response.body = b"".join(response.chunks)
        else:
            response.body = await self.until_eof()
        return response

    async def chunk(self) -> bytes | None:
        """The next chunk of a chunked body; None for the last (empty) one."""
        size = int((await self._read_until(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await self._read_until(b"\r\n")  # no trailers from this server
            return None
        data = await self._read_exactly(size)
        assert await self._read_exactly(2) == b"\r\n"
        return data

    async def until_eof(self) -> bytes:
        """Everything until the server closes (raises on a reset)."""
        while await self._more():
            pass
        data, self.buffer = self.buffer, b""
        return data

    async def expect_eof(self) -> None:
        rest = await self.until_eof()
        assert rest == b"", f"expected the server to close, got {rest!r}"

    async def aclose(self) -> None:
        await self.stream.aclose()


def request(method: str = "GET", target: str = "/hello", *, body: bytes | None = None,
            headers: list[tuple[str, str]] | None = None, version: str = "1.1") -> bytes:
    """A request's bytes: Host (on 1.1) and Content-Length (with a body) are added."""
    lines = [f"{method} {target} HTTP/{version}"]
    if version == "1.1":
        lines.append("Host: test")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


@dataclass
class Served:
    port: int
    shutdown: trio.Event
    limits: HttpLimits
    server: HttpServer
    opened: list[RawConnection] = field(default_factory=list)

    async def connect(self) -> RawConnection:
        """A new connection, closed when the `served` block ends."""
        connection = await RawConnection.open(self.port)
        self.opened.append(connection)
        return connection

    async def exchange(self, data: bytes, *, method: str = "GET") -> RawResponse:
        """A fresh connection, one request, its response; the connection is closed after."""
        connection = await self.connect()
        try:
            await connection.send(data)
            return await connection.response(method=method)
        finally:
            await connection.aclose()


@asynccontextmanager
async def served(app, *, timeout_s: float = TEST_TIMEOUT_S, **limits) -> AsyncIterator[Served]:
    """Serve `app` on 127.0.0.1:0 for the body of the `async with`, all under fail_after.

    On exit the server is stopped gracefully and must return (so a stuck shutdown fails the test).
    """
    with trio.fail_after(timeout_s):
        shutdown = trio.Event()
        chosen = replace(FAST_LIMITS, **limits)
        server = HttpServer(app, chosen)
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(partial(server.serve, "127.0.0.1", 0, shutdown))
            port = int(urls[0].rsplit(":", 1)[1])
            srv = Served(port, shutdown, chosen, server)
            try:
                yield srv
            finally:
                for connection in srv.opened:
                    await connection.aclose()
                shutdown.set()

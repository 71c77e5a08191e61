"""One HTTP/1.1 connection: read requests, call the app, write answers in order, close with care.

Owns: the life of one client socket, run as one task under the server's nursery. The app is
called in this same task, so pipelined requests are answered in order without a queue of tasks,
and the body is read only while the app awaits `request.body()`.

Guarantees:
- every wait on the client has a deadline: header_timeout_s from a request's first byte to the
  end of its head (then 408 + close), body_timeout_s for a body the app reads (BodyTimeout, then
  close), keep_alive_timeout_s while idle (silent close), write_stall_timeout_s for each send;
- a keep-alive connection is never left with unread body bytes: after an early answer a small
  Content-Length body is drained (drain bounds), anything else is answered `Connection: close`;
- an answer that closes the connection is not lost to a reset: the server shuts its write side,
  reads and drops what the client still sends (linger bounds), then closes;
- a client's half-close is not a disconnect: a complete request is answered; only EOF while
  idle, or a failed write, ends the connection. A running handler is never cancelled because
  of the client (only graceful shutdown's grace period cancels it);
- an exception from the app becomes a 500 JSON answer and a log line; nothing from one
  connection escapes to the server.
Never does: routing, auth, or enforcing Request.deadline (the app's job).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, AsyncIterator

import socket

import trio

from kissvdb.errors import KissError, RequestTimeout

from .errors import BodyTimeout, ClientDisconnected
from .messages import Request, Response, StreamResponse
from .reader import RequestReader
from .transport import Transport
from .wire import CONTINUE, LAST_CHUNK, NO_BODY_STATUSES, InvalidResponse, chunk, error_response, framing, status_line

if TYPE_CHECKING:
    from .server import HttpServer

log = logging.getLogger("kissvdb.http")

# The app's stream iterator gets this long to run its `finally` when the stream ends.
ITERATOR_CLOSE_TIMEOUT_S = 5.0
# What a client that went away raises on its connection: closed quietly, never logged.
_GONE = (ClientDisconnected, trio.BrokenResourceError, trio.ClosedResourceError)
PROBE_INTERVAL_S = 0.5  # between the two heartbeats that tell a gone stream client from a half-close


class Connection:
    """See the module docstring. `run()` serves until the connection should close."""

    __slots__ = (
        "transport", "reader", "closing", "stream_scope", "_server", "_app", "_limits",
        "_linger", "_peer_eof", "_idle", "_idle_deadline", "_head_deadline", "_reading",
    )

    def __init__(self, stream: trio.SocketStream, server: HttpServer):
        self.transport = Transport(stream)
        self._server = server
        self._app = server.app
        self._limits = server.limits
        try:
            client = stream.socket.getpeername()
        except OSError:  # the peer reset before we looked
            client = None
        self.reader = RequestReader(server.limits, tuple(client) if client else None, self, trio.current_time)
        self.closing = False  # graceful shutdown: answer what is in flight with `close`, then stop
        self.stream_scope: trio.CancelScope | None = None  # set while an SSE stream runs
        self._linger = False  # an answer was sent on a closing connection: linger before close
        self._peer_eof = False
        self._idle = False  # waiting for the first byte of a request
        self._idle_deadline = trio.current_time() + server.limits.header_timeout_s
        self._head_deadline = self._idle_deadline
        self._reading = False

    def begin_shutdown(self) -> bool:
        """Graceful stop: close if idle, end a stream, let a running request finish.
        True when a request is still in flight."""
        self.closing = True
        if self._idle and self.transport.interrupt_read():
            return False
        if self.stream_scope is not None:
            self.stream_scope.cancel()
            return False
        return True

    async def run(self) -> None:
        try:
            await self._serve()
        except _GONE:
            self._linger = False
        except ExceptionGroup as group:
            # A stream's pump and peer watcher share a nursery: a client that left mid-stream
            # arrives wrapped. That is not a failure; anything else in the group is.
            _, failed = group.split(_GONE)
            if failed is not None:
                log.error("connection from %s failed", self.reader._client, exc_info=failed)
            self._linger = False
        except Exception:
            log.exception("connection from %s failed", self.reader._client)
            self._linger = False
        finally:
            if self._linger and not self._peer_eof:
                limits = self._limits
                await self.transport.linger_then_close(
                    limits.linger_timeout_s, limits.linger_max_bytes, limits.receive_bytes)
            else:
                await self.transport.aclose()

    async def _serve(self) -> None:
        reader = self.reader
        while True:
            # The one scheduling point per request: reads and writes that succeed at once do
            # not yield, so this keeps a busy connection fair to the others.
            await trio.lowlevel.checkpoint()
            if reader.ready:
                request = reader.ready.popleft()
            else:
                request = await self._next_request()
                if request is None:
                    return
            if request.refusal is not None:
                await self._send_error(request.refusal, request)
                return
            response = await self._call_app(request)
            if isinstance(response, StreamResponse):
                keep = await self._stream(request, response)
            else:
                keep = await self._respond(request, response)
            if not keep:
                return
            self._idle_deadline = trio.current_time() + self._limits.keep_alive_timeout_s

    # ------------------------------------------------------------------ reading

    async def _next_request(self) -> Request | None:
        """Read until a request's head is complete. None: close (after any error answer)."""
        reader = self.reader
        while not reader.ready:
            if reader.dead:
                if reader.error is not None:
                    await self._send_error(reader.error, None)
                return None
            idle = not reader.in_head
            if idle and (self.closing or self._server.closing):
                return None
            self._idle = idle
            data = await self.transport.receive(
                self._limits.receive_bytes, self._idle_deadline if idle else self._head_deadline)
            self._idle = False
            if data is None:  # timed out, or shutdown interrupted an idle wait
                if reader.in_head and not self.closing:
                    await self._send_error(RequestTimeout("request headers not received in time"), None)
                return None
            if not data:
                self._peer_eof = True
                reader.feed_eof()
                return None
            if idle:
                self._head_deadline = trio.current_time() + self._limits.header_timeout_s
            reader.feed(data)
        return reader.ready.popleft()

    async def read_body(self, request: Request) -> None:
        """Parse `request`'s body to its end (Request.body() calls this)."""
        if self._reading:
            raise RuntimeError("request.body() is already being read")
        self._reading = True
        try:
            if request.expect_continue and not request.continue_sent:
                request.continue_sent = True
                await self._send(CONTINUE)
            deadline = trio.current_time() + self._limits.body_timeout_s
            while await self._feed_body(request, deadline):
                pass
        finally:
            self._reading = False
        if request.body_error is not None:
            raise request.body_error

    async def _feed_body(self, request: Request, deadline: float) -> bool:
        """One read for an incomplete body; False once it is complete or failed."""
        if request.complete or request.body_error is not None:
            return False
        data = await self.transport.receive(self._limits.receive_bytes, deadline)
        if data is None:
            request.body_error = BodyTimeout()
            return False
        if not data:
            self._peer_eof = True
            self.reader.feed_eof()
            return False
        self.reader.feed(data)
        return True

    async def _drain(self, request: Request) -> bool:
        """Read and drop the rest of a body the app did not read. True: the connection is fine."""
        request.discard = True
        request._chunks = []
        deadline = trio.current_time() + self._limits.drain_timeout_s
        while await self._feed_body(request, deadline):
            pass
        return request.complete and request.body_error is None

    # ------------------------------------------------------------------ the app

    async def _call_app(self, request: Request) -> Response | StreamResponse:
        try:
            response = await self._app(request)
        except ClientDisconnected:  # a KissError too, but there is nobody to answer
            raise
        except KissError as exc:  # the body errors we raised, or the app's own, unhandled
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.raw_path, exc)
            return error_response(exc)
        except Exception:
            log.exception("app failed on %s %s", request.method, request.raw_path)
            return error_response(KissError("internal error"))
        if not isinstance(response, (Response, StreamResponse)):
            log.error("app returned %r for %s %s, not a Response", response, request.method, request.raw_path)
            return error_response(KissError("internal error"))
        return response

    # ------------------------------------------------------------------ writing

    def _keep_alive(self, request: Request) -> tuple[bool, bool]:
        """(keep the connection, drain the unread body first) for the answer to `request`."""
        if request.body_error is not None:
            return False, False  # the body was cut, timed out or broken: the framing is lost
        keep = request.keep_alive and not self.closing and not self._server.closing
        reader = self.reader
        if reader.dead and not reader.ready and reader.error is None:
            keep = False  # nothing after this request will be parsed
        if request.complete:
            return keep, False
        # An early answer: the body is still (partly) on the wire.
        drainable = (
            request.content_length is not None
            and request.content_length - request.received <= self._limits.max_drain_bytes
            and not (request.expect_continue and not request.continue_sent)  # it may never come
        )
        return keep and drainable, keep and drainable

    def _head(self, request: Request | None, response: Response | StreamResponse, *,
              length: int | None, keep: bool) -> tuple[bytes, bool]:
        header_lines, app_close = self._server.headers.encode(response.headers)
        keep = keep and not app_close
        http10 = request is not None and request.http_version == "1.0"
        # A 1xx/204/304 has no body, so no framing either: `transfer-encoding: chunked` there
        # would leave a client waiting for a last chunk that never comes (RFC 9112 6.3).
        chunked = length is None and not http10 and response.status not in NO_BODY_STATUSES
        head = b"".join((
            status_line(response.status), self._server.date.line(), header_lines,
            framing(length=length, chunked=chunked, keep_alive=keep, http10=http10),
        ))
        return head, keep

    async def _respond(self, request: Request, response: Response) -> bool:
        keep, drain = self._keep_alive(request)
        pieces = None
        try:
            body = response.body
            if type(body) is list:  # a body in pieces: sent one by one, never joined
                pieces, body = body, b""
                length = sum(map(len, pieces))
            else:
                if type(body) is not bytes:
                    body = bytes(body)  # bytearray / memoryview; anything else is an app bug
                length = len(body)
            if response.status in NO_BODY_STATUSES:
                head, keep = self._head(request, response, length=None, keep=keep)
                body, pieces = b"", None
            else:
                head, keep = self._head(request, response, length=length, keep=keep)
                if request.method == "HEAD":
                    body, pieces = b"", None
        except (InvalidResponse, TypeError) as exc:
            log.error("app answered %s %s with an invalid response: %s", request.method, request.raw_path, exc)
            return await self._respond(request, error_response(KissError("internal error")))
        stall = self._limits.write_stall_timeout_s
        await self.transport.send_head_and_body(head, body, stall)
        if pieces:
            for i in range(len(pieces)):
                piece, pieces[i] = pieces[i], b""  # release each piece once it is written
                await self.transport.send_all(piece, stall)
        if drain and keep:
            keep = await self._drain(request)
        if not keep:
            self._linger = True
        return keep

    async def _send_error(self, error: KissError, request: Request | None) -> None:
        """Answer an error the server found itself, then close."""
        response = error_response(error)
        head, _ = self._head(request, response, length=len(response.body), keep=False)
        await self._send(head + response.body)
        self._linger = True

    async def _send(self, data: bytes) -> None:
        await self.transport.send_all(data, self._limits.write_stall_timeout_s)

    # ------------------------------------------------------------------ streams (SSE)

    async def _stream(self, request: Request, response: StreamResponse) -> bool:
        """Write each chunk as the app yields it; pull the next only once it was sent."""
        chunks = response.chunks
        keep, _ = self._keep_alive(request)
        http10 = request.http_version == "1.0"
        if not request.complete or http10:
            keep = False  # 1.0: the body ends at close; an unread body: no drain while streaming
        try:
            head, keep = self._head(request, response, length=None, keep=keep)
        except InvalidResponse as exc:
            log.error("app answered %s %s with an invalid stream: %s", request.method, request.raw_path, exc)
            await _close_iterator(chunks)
            return await self._respond(request, error_response(KissError("internal error")))
        if request.method == "HEAD":  # the head a GET would get, and no body
            await _close_iterator(chunks)
            await self._send(head)
            self._linger = not keep
            return keep
        try:
            await self._send(head)
            lock = trio.Lock()  # the pump and the peer watcher's probes never interleave writes
            with trio.CancelScope() as scope:
                self.stream_scope = scope
                if self.closing or self._server.closing:
                    scope.cancel()
                async with trio.open_nursery() as nursery:
                    if response.heartbeat is not None:
                        probe = response.heartbeat if http10 else chunk(response.heartbeat)
                        nursery.start_soon(self._watch_peer, scope, probe, lock)
                    ended = await self._pump(aiter(chunks), chunked=not http10, lock=lock)
                    nursery.cancel_scope.cancel()
        finally:
            self.stream_scope = None
            await _close_iterator(chunks)
        if scope.cancelled_caught or not ended:
            return False  # shutdown (maybe mid-write) or a failed iterator: close, no last chunk
        if not http10:
            await self._send(LAST_CHUNK)
        if not keep:
            self._linger = True
        return keep

    async def _pump(self, chunks: AsyncIterator[bytes], *, chunked: bool, lock: trio.Lock) -> bool:
        """Send chunks until the iterator ends (True) or raises (False, logged)."""
        while True:
            try:
                data = await chunks.__anext__()
            except StopAsyncIteration:
                return True
            except Exception:
                log.exception("stream iterator failed")
                return False
            if data:
                async with lock:
                    await self._send(chunk(data) if chunked else bytes(data))

    async def _watch_peer(self, scope: trio.CancelScope, probe: bytes, lock: trio.Lock) -> None:
        """End a stream soon after its client goes away, not at the next event or keep-alive.

        A stream's client sends nothing; when its socket turns readable it either sent bytes
        (left unread: not a disconnect) or an EOF. An EOF alone may be a half-close (the client
        still reads), so it is not taken as a disconnect: the app's heartbeat (an SSE comment)
        is written twice, PROBE_INTERVAL_S apart; a client that is gone has answered the first
        with a reset, so the second fails and the stream ends. Peeks, never reads.
        """
        try:
            peeked = await self.transport.stream.socket.recv(1, socket.MSG_PEEK)
        except OSError:
            scope.cancel()  # reset: gone
            return
        if peeked:
            return  # bytes from the client (a pipelined request): it is still there
        for _ in range(2):
            try:
                async with lock:
                    await self._send(probe)
            except ClientDisconnected:
                scope.cancel()
                return
            await trio.sleep(PROBE_INTERVAL_S)


async def _close_iterator(chunks: object) -> None:
    """Run the app iterator's `finally` (unsubscribe), bounded, even while being cancelled."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is None:
        return
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + ITERATOR_CLOSE_TIMEOUT_S
        try:
            await aclose()
        except Exception:
            log.exception("closing a stream iterator failed")

"""The ASGI face of the app, for hypercorn (`kissvdb serve --server hypercorn`: HTTP/2, TLS).

`asgi_app(app, max_body_bytes)` turns each ASGI HTTP scope into the same light request our own
server builds (method, decoded path, query, headers, `await body()`), calls the same `KissApp`,
and writes its `Response` or `StreamResponse` back as ASGI messages. No handler exists twice;
no framework request or response object is made.

Guarantees: a body over MAX_BODY_BYTES is refused from Content-Length before it is read, or as
soon as the streamed body passes the cap (413, field `body`); HEAD keeps the GET answer's
Content-Length and sends no body; a stream's chunk iterator is always closed (`aclose`), so a
subscription never outlives its response. Lifespan and websocket scopes get nothing to do.
"""

from __future__ import annotations

import trio

from kissvdb.errors import ClientGone, InvalidArgument, PayloadTooLarge

from .errors import kiss_error_response
from .http.messages import Headers, QueryArgs, StreamResponse, decode_path


class AsgiRequest:
    __slots__ = ("method", "path", "path_is_utf8", "raw_path", "query_string", "headers", "http_version",
                 "client", "deadline", "principal", "route", "_receive", "_body", "_args", "_max_body")

    def __init__(self, scope: dict, receive, max_body: int, deadline: float):
        self.method = scope["method"]
        self.raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        # Decoded as our own server does (bad UTF-8 kept as surrogates, refused by the app), not
        # with hypercorn's replacement characters, which would make `%FF` and `%FE` one key.
        self.path, self.path_is_utf8 = decode_path(self.raw_path)
        self.query_string = scope.get("query_string", b"")
        self.headers = Headers([(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in scope["headers"]])
        self.http_version = scope.get("http_version", "1.1")
        self.client = scope.get("client")
        self.deadline = deadline
        self.principal = None
        self.route = None
        self._receive = receive
        self._body: bytes | None = None
        self._args: QueryArgs | None = None
        self._max_body = max_body

    @property
    def args(self) -> QueryArgs:
        args = self._args
        if args is None:
            args = self._args = QueryArgs(self.query_string)
        return args

    async def body(self) -> bytes:
        if self._body is not None:
            return self._body
        declared = self.headers.get("Content-Length")
        if declared is not None:
            if not declared.isdigit():
                raise InvalidArgument("invalid Content-Length", field="Content-Length")
            if int(declared) > self._max_body:
                raise PayloadTooLarge("request body too large", field="body")
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise PayloadTooLarge("request body too large", field="body")
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(parts)
        return self._body

    async def drain(self) -> None:
        """Read and drop a body the app answered without reading (up to MAX_BODY_BYTES), so
        hypercorn can keep the connection; past that it closes the connection itself."""
        if self._body is not None:
            return
        try:
            await self.body()
        except (PayloadTooLarge, InvalidArgument, ClientGone):
            pass


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def asgi_app(app, max_body_bytes: int):
    """The ASGI application serving `app` (a KissApp)."""

    async def asgi(scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        request = AsgiRequest(scope, receive, max_body_bytes, trio.current_time() + app.request_timeout_s)
        try:
            response = await app(request)
        except ClientGone as gone:  # hypercorn drops the answer if the client really is gone
            response = kiss_error_response(gone)
        await request.drain()
        head = request.method == "HEAD"
        if isinstance(response, StreamResponse):
            await _send_stream(send, receive, response, head)
            return
        body = response.body
        pieces = body if type(body) is list else [body]  # a body in pieces is sent as it is
        headers = _encode_headers(response.headers)
        if response.status != 204 and response.status != 304:
            headers.append((b"content-length", str(sum(map(len, pieces))).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if head:
            pieces = []
        for i in range(len(pieces)):
            piece, pieces[i] = pieces[i], b""
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return asgi


async def _send_stream(send, receive, response: StreamResponse, head: bool) -> None:
    """Write chunks as they come, until the iterator ends or the client disconnects (hypercorn
    reports that on `receive`; its `send` after a disconnect is silently dropped)."""
    chunks = response.chunks

    async def until_disconnect(scope: trio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(until_disconnect, nursery.cancel_scope)
            await send({"type": "http.response.start", "status": response.status,
                        "headers": _encode_headers(response.headers)})
            if not head:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            nursery.cancel_scope.cancel()
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True):
                await aclose()

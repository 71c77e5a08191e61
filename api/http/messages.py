"""What an app sees and returns: Request, Headers, QueryArgs, Response, StreamResponse.

Owns: the request and response objects and their cheap, lazy views (query args, decoded path).
Guarantees: a Request is built once per request from what the parser saw and nothing else; its
headers are the request's header block only (chunked trailers never reach them); its body is
read only when the app asks (`await request.body()`), which is what lets the server answer an
early error without reading an upload, and send `100 Continue` only to requests that will be read.
Never does: I/O itself. `Request.body()` asks the connection that parsed the request.

An app is `async def app(request: Request) -> Response | StreamResponse`. The server does not
enforce `Request.deadline`: only the app knows whether a request may still be answered 408
(a write already queued to the WAL must not be), so it cancels its own work at the deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import parse_qsl, unquote_to_bytes

if TYPE_CHECKING:
    from .connection import Connection


class Headers:
    """A request's header block: case-insensitive lookup, repeats kept in order.

    Names are lower-cased and values latin-1 decoded (RFC 9110: header bytes are opaque octets;
    latin-1 maps each to one character, so nothing is lost or invented).
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]):
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, or `default`."""
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._items if key == name]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = name.lower()
        return any(key == name for key, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        """(lower-case name, value) pairs in the order received, repeats included."""
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class QueryArgs:
    """The parsed query string: `get` gives the first value of a name, `getlist` all of them."""

    __slots__ = ("_pairs",)

    def __init__(self, query_string: bytes):
        text = query_string.decode("utf-8", "replace")
        self._pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


def decode_path(raw_path: bytes) -> tuple[str, bool]:
    """The percent-decoded path and whether its bytes were UTF-8.

    Undecodable bytes become lone surrogates (`surrogateescape`), which match no route and
    round-trip to the original bytes; the app answers 400 when the flag is False.
    """
    decoded = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
    try:
        return decoded.decode("utf-8"), True
    except UnicodeDecodeError:
        return decoded.decode("utf-8", "surrogateescape"), False


class Request:
    """One request. Built by the parser when its headers are complete; cheap by design.

    Public: method, raw_path (as sent, without the query), path (percent-decoded), path_is_utf8,
    query_string, headers, http_version ("1.1"/"1.0"), client ((host, port) or None),
    deadline (trio time by which the app should have answered; REQUEST timeout), `args`
    (lazy QueryArgs), `await body()`, content_length (None when absent or chunked).
    The rest is the server's bookkeeping for this request's body and connection.
    """

    __slots__ = (
        "method", "raw_path", "path", "path_is_utf8", "query_string", "headers", "http_version",
        "client", "deadline", "content_length",
        "principal",  # set by the app once the credential is checked (None on public routes)
        "route",  # set by the app once routed (the latency histogram's label)
        # server bookkeeping
        "keep_alive", "chunked", "expect_continue", "continue_sent", "complete", "refusal",
        "body_error", "discard", "received", "_chunks", "_body", "_args", "_connection",
    )

    def __init__(
        self,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Headers,
        http_version: str,
        client: tuple | None,
        deadline: float,
        connection: Connection | None = None,
    ):
        self.method = method
        self.raw_path = raw_path
        self.path, self.path_is_utf8 = decode_path(raw_path)
        self.query_string = query_string
        self.headers = headers
        self.http_version = http_version
        self.client = client
        self.deadline = deadline
        self.content_length: int | None = None
        self.principal = None
        self.route = None
        self.keep_alive = True
        self.chunked = False
        self.expect_continue = False
        self.continue_sent = False
        self.complete = False  # the whole message (body included) has been parsed
        self.refusal: Exception | None = None  # the server answers this instead of calling the app
        self.body_error: Exception | None = None  # what body() raises; the connection will close
        self.discard = False  # body bytes are dropped as they arrive (being drained or refused)
        self.received = 0  # body bytes parsed so far
        self._chunks: list[bytes] = []
        self._body: bytes | None = None
        self._args: QueryArgs | None = None
        self._connection = connection

    @property
    def args(self) -> QueryArgs:
        if self._args is None:
            self._args = QueryArgs(self.query_string)
        return self._args

    @property
    def path_bytes(self) -> bytes:
        """The percent-decoded path as bytes (for a path that is not UTF-8)."""
        return self.path.encode("utf-8", "surrogateescape")

    async def body(self) -> bytes:
        """The whole body. Reads it on first call: sends `100 Continue` first if the client
        asked for it; raises BodyTooLarge, BodyTimeout, InvalidBody or ClientDisconnected."""
        if self._body is None:
            if self.body_error is not None:
                raise self.body_error
            if not self.complete:
                if self._connection is None:
                    raise RuntimeError("this request has no connection to read its body from")
                await self._connection.read_body(self)
            self._body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
            self._chunks = []
        return self._body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path!r} HTTP/{self.http_version}>"


class Response:
    """A complete response. The server adds Content-Length, Date and Connection itself.

    `body` is bytes, or a list of bytes pieces (a large body encoded in parts): the server sends
    the pieces one after the other under one Content-Length, releasing each once written, and
    never joins them (joining megabytes is one long copy that holds the event loop)."""

    __slots__ = ("status", "headers", "body")

    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ):
        self.status = status
        self.headers = headers if headers is not None else []
        if content_type is not None:
            self.headers.append(("content-type", content_type))
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class StreamResponse:
    """A response whose body is written chunk by chunk as `chunks` yields (SSE).

    The server pulls the next chunk only after the previous one was sent (backpressure), and
    closes the iterator (`aclose()`) whenever the stream ends: iterator exhausted, write failed
    or stalled past write_stall_timeout_s, or server shutdown.
    """

    __slots__ = ("status", "headers", "chunks", "heartbeat")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
        heartbeat: bytes | None = None,
    ):
        # `heartbeat`: bytes the server may write between chunks at any time (an SSE comment),
        # used to find out whether a client that closed its side is still there.
        self.heartbeat = heartbeat
        self.status = status
        self.headers = headers if headers is not None else []
        if content_type is not None:
            self.headers.append(("content-type", content_type))
        self.chunks = chunks

    def __repr__(self) -> str:
        return f"<StreamResponse {self.status}>"


App = Callable[[Request], Awaitable["Response | StreamResponse"]]

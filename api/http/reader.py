"""Bytes in, Requests out: the httptools parser callbacks and every check made while parsing.

Owns: turning a connection's input into `Request` objects in order, with their bodies; the
caps on the request target, the header block, the body and the pipelined queue; and the
decision of what to answer when the input is bad. Guarantees:
- a request reaches `ready` only with a complete, checked head (URL joined from its fragments,
  headers joined by httptools, version 1.0 or 1.1, Host present once on 1.1, no Upgrade);
- chunked trailers never reach a request's headers (they count towards its body cap instead);
- a body past max_body_bytes is never buffered: with Content-Length the request is refused from
  the head (413, before any byte of body), a chunked one is cut at the cap;
- input the parser rejects leaves `error` (what to answer once the requests before it are
  answered) and `dead` (read no more: the connection closes).
Never does: I/O or waiting. `feed` is synchronous (h11's idea); the connection carries bytes.

Bounds on partial input: httptools joins a header's fragments internally, so a head or a chunked
body that never ends is bounded here by counting the bytes fed while it is incomplete.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable

import httptools

from kissvdb.errors import InvalidArgument, KissError

from .errors import BodyTooLarge, HeadersTooLarge, InvalidBody, UrlTooLong, VersionNotSupported
from .limits import HttpLimits
from .messages import Headers, Request

if TYPE_CHECKING:
    from .connection import Connection

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
# The request line's share of the head beyond the URL and method: " HTTP/1.1\r\n" and "\r\n".
_REQUEST_LINE_OVERHEAD = 13
# Header names the reader acts on. Anything else is only stored.
_WATCHED = frozenset({"content-length", "transfer-encoding", "expect", "host"})
# httptools' reason when it meets an HTTP/2 connection preface (`PRI * HTTP/2.0`).
_H2_PREFACE_REASON = "Pause on PRI/Upgrade"


class _QueueFull(Exception):
    """Raised from on_message_begin to stop the parser when the pipelined queue is full."""


class RequestReader:
    """The parser callbacks of one connection. See the module docstring."""

    __slots__ = (
        "parser", "ready", "current", "error", "dead", "in_head", "head_fed", "body_fed",
        "_limits", "_client", "_connection", "_now", "_url", "_headers", "_head_bytes",
        "_content_length", "_chunked", "_expect_continue", "_hosts",
    )

    def __init__(
        self,
        limits: HttpLimits,
        client: tuple | None,
        connection: Connection | None,
        now: Callable[[], float],
    ):
        self._limits = limits
        self._client = client
        self._connection = connection
        self._now = now
        self.parser = httptools.HttpRequestParser(self)
        # Bytes after a `Connection: close` request are ignored instead of failing the parse,
        # so that request is still answered.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.ready: deque[Request] = deque()  # heads complete, not yet handed to the app
        self.current: Request | None = None  # the request whose body is being parsed
        self.error: KissError | None = None  # to answer after `ready`, then close
        self.dead = False  # no more input will be parsed
        self.in_head = False  # a message has begun and its head is not complete
        self.head_fed = 0  # bytes fed while the current head stayed incomplete
        self.body_fed = 0  # bytes fed while the current chunked body stayed incomplete
        self._begin_message()

    def _begin_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._content_length: int | None = None
        self._chunked = False
        self._expect_continue = False
        self._hosts = 0

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Parse `data`. Never raises for bad input: it sets `error`/`dead` or a body_error."""
        if self.dead:
            return
        head_was_open = self.in_head
        body_of = self.current
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc)
        except httptools.HttpParserUpgrade:  # unreachable: on_headers_complete refuses first
            self._fail(InvalidArgument("protocol upgrade is not supported"))
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
        if self.dead:
            return
        # A message still incomplete after this feed held all of it (it began before the feed).
        if head_was_open and self.in_head:
            self.head_fed += len(data)
            if self.head_fed > self._limits.max_header_bytes:
                self._fail(HeadersTooLarge(self._limits.max_header_bytes))
        elif body_of is not None and self.current is body_of and body_of.chunked:
            self.body_fed += len(data)
            if self.body_fed > 2 * self._limits.max_body_bytes + self._limits.max_header_bytes:
                self._cut_body(body_of)  # framing or trailers far past the cap

    def feed_eof(self) -> None:
        """The client closed its side. A message in progress can no longer complete."""
        if self.current is not None and self.current.body_error is None:
            self.current.body_error = InvalidBody("request body ended before it was complete")
        self.dead = True

    def _callback_failed(self, exc: httptools.HttpParserCallbackError) -> None:
        cause = exc.__context__
        if isinstance(cause, _QueueFull):
            # The queued requests are answered, the last with `Connection: close`; the client
            # retries the rest on a new connection.
            self.dead = True
        elif isinstance(cause, KissError):
            self._fail(cause)
        elif cause is not None:
            raise cause  # a bug in a callback: let the connection's guard log it
        else:
            self._fail(InvalidArgument(f"malformed request: {exc}"))

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        reason = str(exc)
        if reason == _H2_PREFACE_REASON:
            # An HTTP/2 client with prior knowledge cannot read an HTTP/1.1 answer: just close.
            self.dead = True
            return
        self._fail(InvalidArgument(f"malformed request: {reason}"))

    def _fail(self, error: KissError) -> None:
        """Stop parsing. Bad input inside a body fails that request's body; otherwise `error`
        is answered after the requests already queued."""
        self.dead = True
        current = self.current
        if current is None:
            self.error = error
        elif self.ready and self.ready[-1] is current:
            current.refusal = error  # not handed to the app yet: the server answers it
        elif current.body_error is None:
            current.body_error = error if error.status != 400 else InvalidBody(error.message)

    def _cut_body(self, request: Request) -> None:
        if request.body_error is None:
            request.body_error = BodyTooLarge(self._limits.max_body_bytes)
        request.discard = True
        request._chunks = []
        self.dead = True

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        if len(self.ready) >= self._limits.max_pipelined_requests:
            raise _QueueFull()
        self.in_head = True
        self.head_fed = 0

    def on_url(self, fragment: bytes) -> None:
        url = self._url + fragment if self._url else fragment
        if len(url) > self._limits.max_url_bytes:
            raise UrlTooLong(self._limits.max_url_bytes)
        self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        current = self.current
        if current is not None:  # a chunked trailer: counted against the body, never kept
            current.received += len(name) + len(value)
            if current.received > self._limits.max_body_bytes:
                self._cut_body(current)
            return
        self._head_bytes += len(name) + len(value) + 4
        key = name.decode("latin-1").lower()
        # A field value excludes surrounding whitespace (RFC 9110 5.5); the parser skips the
        # leading part, the trailing part is ours to drop (hypercorn's h11 does the same).
        text = value.decode("latin-1").rstrip(" \t")
        self._headers.append((key, text))
        if key in _WATCHED:
            self._watch(key, text)

    def _watch(self, key: str, value: str) -> None:
        if key == "content-length":
            self._content_length = int(value)  # httptools has checked it: digits, and only one
        elif key == "transfer-encoding":
            self._chunked = True  # httptools refuses any coding but a final `chunked`
        elif key == "expect":
            self._expect_continue = value.strip().lower() == "100-continue"
        else:
            self._hosts += 1

    def on_headers_complete(self) -> None:
        parser = self.parser
        limits = self._limits
        url = self._url
        if len(url) + self._head_bytes + _REQUEST_LINE_OVERHEAD > limits.max_header_bytes:
            raise HeadersTooLarge(limits.max_header_bytes)
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise VersionNotSupported(version)
        if parser.should_upgrade():
            raise InvalidArgument("protocol upgrade is not supported (this server speaks HTTP/1.1)")
        if version == "1.1" and self._hosts != 1:
            raise InvalidArgument("an HTTP/1.1 request needs exactly one Host header", field="host")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        elif url == b"*":
            raw_path, query = url, b""
        else:  # absolute-form (RFC 9112 section 3.2.2): keep only the path and query
            try:
                parts = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise InvalidArgument("malformed request target", field="url") from None
            raw_path, query = parts.path or b"/", parts.query or b""
        request = Request(
            method, raw_path, query, Headers(self._headers), version, self._client,
            self._now() + limits.request_timeout_s, self._connection,
        )
        request.keep_alive = parser.should_keep_alive()
        request.chunked = self._chunked
        request.expect_continue = self._expect_continue and version == "1.1"
        length = self._content_length
        if length is not None and not self._chunked:
            request.content_length = length
            if length > limits.max_body_bytes:
                request.refusal = BodyTooLarge(limits.max_body_bytes)
                request.discard = True
        self.ready.append(request)
        self.current = request
        self.in_head = False
        self.body_fed = 0
        self._begin_message()

    def on_body(self, data: bytes) -> None:
        request = self.current
        request.received += len(data)
        if request.discard:
            return
        if request.received > self._limits.max_body_bytes:
            self._cut_body(request)
            return
        request._chunks.append(data)

    def on_message_complete(self) -> None:
        request = self.current
        if request is not None:
            request.complete = True
            self.current = None

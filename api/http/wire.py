"""Response bytes: status lines, checked headers, the head of a response, chunk framing.

Owns: how a Response becomes bytes on the wire. Guarantees: no header the app gives can inject
a line (names must be RFC 9110 tokens, values must hold no CR, LF, NUL or other control byte
but tab, and both must be latin-1); the server alone writes Content-Length, Transfer-Encoding
and Connection, so framing cannot disagree with the body; error bodies have kissvdb's JSON
shape. Never does: I/O.
"""

from __future__ import annotations

import http
import re
import time
from email.utils import formatdate

import orjson

from kissvdb.errors import KissError

from .messages import Response

JSON = "application/json"


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode("ascii")


STATUS_LINES = {code: _status_line(code) for code in range(100, 600)}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

# Statuses whose responses never carry a body (RFC 9110 sections 15.2, 15.3.5, 15.4.5).
NO_BODY_STATUSES = frozenset(range(100, 200)) | {204, 304}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SERVER_OWNED = frozenset({"content-length", "transfer-encoding"})
_HEADER_CACHE_MAX = 1024


class InvalidResponse(Exception):
    """The app returned something that cannot be written (a bug: answered 500)."""


class HeaderEncoder:
    """Checks and encodes response headers, remembering lines it has already checked.

    Apps send the same few headers (content-type, cache-control) on every response, so the
    check runs once per distinct pair; the cache is bounded and starts over when full.
    """

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], bytes] = {}

    def encode(self, headers: list[tuple[str, str]]) -> tuple[bytes, bool]:
        """The header lines as bytes, and whether the app asked to close (`connection: close`)."""
        lines = self._lines
        out = []
        close = False
        for pair in headers:
            line = lines.get(pair)
            if line is None:
                line = self._check(pair)
                if line is None:  # a `connection` header: the server writes its own
                    close = True
                    continue
                if len(lines) >= _HEADER_CACHE_MAX:
                    lines.clear()
                lines[pair] = line
            out.append(line)
        return b"".join(out), close

    @staticmethod
    def _check(pair: tuple[str, str]) -> bytes | None:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise InvalidResponse(f"a header must be a (name, value) pair, got {pair!r}") from None
        if not isinstance(name, str) or not isinstance(value, str) or not _TOKEN.fullmatch(name):
            raise InvalidResponse(f"invalid response header name {name!r}")
        if _BAD_VALUE.search(value):
            raise InvalidResponse(f"response header {name!r} holds a control character")
        lower = name.lower()
        if lower in _SERVER_OWNED:
            raise InvalidResponse(f"response header {name!r} is written by the server")
        if lower == "connection":
            if value.strip().lower() != "close":
                raise InvalidResponse(f"connection: {value!r}: only `close` may be asked for")
            return None
        try:
            return f"{name}: {value}\r\n".encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidResponse(f"response header {name!r} is not latin-1") from None


class HttpDate:
    """The Date header line, formatted once per second."""

    __slots__ = ("_second", "_line")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        return self._line


def status_line(status: object) -> bytes:
    line = STATUS_LINES.get(status) if type(status) is int else None  # noqa: E721 (bool is no status)
    if line is None:
        raise InvalidResponse(f"invalid status {status!r}")
    return line


def framing(*, length: int | None, chunked: bool, keep_alive: bool, http10: bool) -> bytes:
    """The header lines the server owns, ending the head."""
    parts = b""
    if length is not None:
        parts = b"content-length: %d\r\n" % length
    elif chunked:
        parts = b"transfer-encoding: chunked\r\n"
    if not keep_alive:
        return parts + b"connection: close\r\n\r\n"
    if http10:
        return parts + b"connection: keep-alive\r\n\r\n"
    return parts + b"\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never empty: an empty chunk ends the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def error_response(error: KissError) -> Response:
    """kissvdb's JSON error body for `error`, with its status (and Retry-After when it has one)."""
    response = Response(orjson.dumps(error.body()), error.status, content_type=JSON)
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        response.headers.append(("retry-after", str(retry_after)))
    return response


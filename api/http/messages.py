"""Requests and responses as handlers see them, whichever server carried them.

Provisional: the transport-neutral message types the route table's handlers use. Both servers
(ours on httptools, and hypercorn through its ASGI adapter) build a `Request` with this
interface and write the `Response`/`StreamResponse` a handler returns.
"""

from __future__ import annotations

from typing import AsyncIterator
from urllib.parse import parse_qsl


class Headers:
    """Case-insensitive request headers; repeated names kept in `items()`, first one wins in get."""

    __slots__ = ("_raw", "_map")

    def __init__(self, raw: list[tuple[str, str]]):
        self._raw = raw
        m: dict[str, str] = {}
        for name, value in raw:
            m.setdefault(name.lower(), value)
        self._map = m

    def get(self, name: str, default=None):
        return self._map.get(name.lower(), default)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._map

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def items(self) -> list[tuple[str, str]]:
        return list(self._raw)


class QueryArgs:
    """The query string, parsed once on first use: get(name) is the first value."""

    __slots__ = ("_pairs", "_first")

    def __init__(self, query_string: bytes):
        text = query_string.decode("utf-8", "replace")
        self._pairs = parse_qsl(text, keep_blank_values=True, errors="replace")
        first: dict[str, str] = {}
        for name, value in self._pairs:
            first.setdefault(name, value)
        self._first = first

    def get(self, name: str, default=None):
        return self._first.get(name, default)

    def getlist(self, name: str) -> list[str]:
        return [v for n, v in self._pairs if n == name]

    def __contains__(self, name: str) -> bool:
        return name in self._first


class Response:
    """A complete response: status, headers (name, value) and the body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                 content_type: str | None = None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for n, v in self.headers:
            if n.lower() == lower:
                return v
        return None


class StreamResponse:
    """A response whose body is an async iterator of chunks (SSE), written as they come."""

    __slots__ = ("status", "headers", "chunks")

    def __init__(self, status: int, headers: list[tuple[str, str]], chunks: AsyncIterator[bytes]):
        self.status = status
        self.headers = headers
        self.chunks = chunks

    def header(self, name: str) -> str | None:
        return Response.header(self, name)  # type: ignore[arg-type]

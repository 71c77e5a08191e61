"""Every limit and timeout of the HTTP server, as named settings with chosen defaults.

Owns: the numbers. Guarantees: each cap on input, each wait on a client and each queue in the
server is one field here, so nothing is bounded by a library default nobody chose.
Never does: read the environment. The caller maps its own settings (e.g. MAX_BODY_BYTES,
REQUEST_TIMEOUT_SECS) onto these fields with `dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HttpLimits:
    # Request size. Past a cap the server answers itself and closes the connection.
    max_url_bytes: int = 8 * 1024  # request target; over it: 414
    max_header_bytes: int = 32 * 1024  # request line + header block; over it: 431
    max_body_bytes: int = 1024 * 1024  # over it: 413 (from Content-Length before reading, or
    # as soon as a chunked body passes it)

    # Waiting on a client.
    header_timeout_s: float = 10.0  # first byte of a request -> end of its headers; then 408 + close
    body_timeout_s: float = 30.0  # the whole body, from the first read the app asks for; then 408
    keep_alive_timeout_s: float = 30.0  # idle between requests; then a silent close
    request_timeout_s: float = 30.0  # sets Request.deadline; the app enforces it (see messages.py)
    write_stall_timeout_s: float = 30.0  # a send that makes no progress this long closes the
    # connection (and ends an SSE stream, closing its iterator)

    # An early answer: the app answered without reading the body.
    max_drain_bytes: int = 256 * 1024  # a Content-Length body up to this is read and dropped so
    # the connection stays open; a bigger (or chunked) one gets `Connection: close`
    drain_timeout_s: float = 5.0  # ... and must arrive within this, or the connection closes

    # Closing without losing the answer: after the last response, shut the write side and read
    # (and drop) what the client still sends, up to these bounds, before closing the socket.
    linger_timeout_s: float = 5.0
    linger_max_bytes: int = 8 * 1024 * 1024

    # Queues and concurrency.
    max_pipelined_requests: int = 64  # parsed, not yet answered, per connection; past it the
    # requests already queued are answered, the last with `Connection: close`, and the rest
    # are left for the client to retry (RFC 9112 section 9.3.2)
    max_connections: int = 1000  # open connections, SSE included; past it new connections get
    # 503 + `Connection: close`. Lowered at start to stay under RLIMIT_NOFILE (see below).
    max_rejecting_connections: int = 32  # 503s being written at once; past it the server stops
    # accepting until a connection closes (the kernel's backlog holds the rest)
    reserved_fds: int = 128  # file descriptors kept for the rest of the process (WAL, SQLite,
    # listeners): max_connections is capped at RLIMIT_NOFILE - reserved - max_rejecting
    listen_backlog: int = 1024

    shutdown_grace_s: float = 5.0  # in-flight requests get this long after a graceful stop

    receive_bytes: int = 64 * 1024  # one socket read

    def __post_init__(self) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            if getattr(self, name) <= 0:
                raise ValueError(f"HttpLimits.{name} must be positive, got {getattr(self, name)!r}")

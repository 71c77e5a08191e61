"""Our own HTTP/1.1 server (api/http/) as `kissvdb serve`'s default host: the settings mapped
onto its limits, serving the app on the socket api/server.py bound before anything else."""

from __future__ import annotations

import socket

import trio

from kissvdb.config import Settings

from .http import HttpLimits, HttpServer


def http_limits(settings: Settings) -> HttpLimits:
    """Every limit of the server, from the settings of the same meaning."""
    return HttpLimits(
        max_url_bytes=settings.http_max_url_bytes,
        max_header_bytes=settings.http_max_header_bytes,
        max_body_bytes=settings.max_body_bytes,
        header_timeout_s=settings.http_header_timeout_secs,
        body_timeout_s=settings.http_body_timeout_secs,
        keep_alive_timeout_s=settings.http_keep_alive_secs,
        request_timeout_s=float(settings.request_timeout_secs),
        write_stall_timeout_s=settings.http_write_stall_secs,
        max_connections=settings.http_max_connections,
        max_pipelined_requests=settings.http_max_pipelined,
        shutdown_grace_s=settings.http_shutdown_grace_secs,
    )


async def serve_ours(app, settings: Settings, sock: socket.socket, stop: trio.Event,
                     *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on the listening `sock` until `stop`, then stop gracefully."""
    server = HttpServer(app, http_limits(settings))
    app.http_server = server  # for /v1/metrics
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    await server.serve_listeners([listener], stop, task_status=task_status)

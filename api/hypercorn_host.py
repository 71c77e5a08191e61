"""hypercorn as an optional host (`kissvdb serve --server hypercorn`): HTTP/2 (h2c or over TLS)
and TLS (`--certfile/--keyfile`), serving the same app through api/asgi.py.

Why not `hypercorn.trio.serve`: its connections run in one nursery, so one connection whose
protocol code raises (an h2c request with a large unauthenticated body made hypercorn's h2
state machine raise KeyError) cancels every connection and stops the server. Here each
connection runs hypercorn's own `TCPServer` under a guard that logs the failure and closes that
connection only. It also listens on sockets bound before the engine opened (see api/server.py).

Graceful stop: stop accepting; tell hypercorn's connections the worker is terminating (idle
keep-alive connections close, in-flight requests finish); after `grace_s`, cancel the rest.
"""

from __future__ import annotations

import logging
import socket
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

log = logging.getLogger("kissvdb.hypercorn")


def hypercorn_config(*, keep_alive_s: float, grace_s: float, certfile: str | None,
                     keyfile: str | None) -> Config:
    config = Config()
    config.accesslog = None  # an access log line per request costs throughput; off by default
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = grace_s
    config.keep_alive_timeout = keep_alive_s
    config.keep_alive_max_requests = 1_000_000  # hypercorn's 1000 would reconnect benchmark clients
    if certfile:
        config.certfile = certfile
        config.keyfile = keyfile
    return config


async def serve_hypercorn(asgi, config: Config, sockets: list[socket.socket], stop: trio.Event,
                          *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve `asgi` on the listening `sockets` until `stop` is set, then stop gracefully."""
    app = wrap_app(asgi, config.wsgi_max_body_size, "asgi")
    context = WorkerContext(None)
    ssl_context = config.create_ssl_context() if config.ssl_enabled else None
    listeners = []
    urls = []
    for sock in sockets:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if ssl_context is not None:
            listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
        listeners.append(listener)
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        urls.append(f"{'https' if ssl_context else 'http'}://{host}:{port}")

    async def connection(stream) -> None:
        try:
            await TCPServer(app, config, context, ConnectionState({}), stream).run()
        except Exception:
            # Contained: this connection is lost, the server and every other connection are not.
            log.exception("hypercorn connection failed; closed it")
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as acceptors:
            acceptors.start_soon(partial(trio.serve_listeners, connection, listeners,
                                         handler_nursery=connections))
            task_status.started(urls)
            await stop.wait()
            acceptors.cancel_scope.cancel()
        await context.terminated.set()
        connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

"""The listening side: accept connections under a cap, run one task each, stop gracefully.

Owns: the listening sockets, the set of open connections, the connection cap and what happens
past it, and the order of a graceful stop. Guarantees:
- `task_status.started(urls)` is called once every listener accepts, with the real addresses;
- at most `max_connections` connections are served at once (SSE included), lowered at start to
  stay under RLIMIT_NOFILE. Past it a new connection is answered 503 JSON (`unavailable`,
  Retry-After: 1, `Connection: close`) by a bounded number of short-lived rejecting tasks; past
  those too the server stops accepting until a connection closes (the kernel's backlog waits);
- graceful stop (the `shutdown` event): stop accepting and close the listeners, close idle
  connections at once, end streams (their iterators are closed), let in-flight requests finish
  and answer them with `Connection: close`, cancel whatever still runs after shutdown_grace_s,
  then return;
- no exception from one connection stops the server (connection.py contains them).
Never does: signals (the process owns them; a second signal exiting at once is its job), or
anything about routes.
"""

from __future__ import annotations

import errno
import logging
import resource
from dataclasses import dataclass

import trio

from kissvdb.errors import Unavailable

from .connection import Connection
from .limits import HttpLimits
from .messages import App
from .wire import HeaderEncoder, HttpDate, error_response, framing, status_line

log = logging.getLogger("kissvdb.http")

# accept() failures that mean "out of resources right now", not "the listener is broken".
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_BACKOFF_S = 0.1  # wait before accepting again after one of those
_REJECT_LOG_INTERVAL_S = 10.0  # at most one "at capacity" warning per interval


@dataclass(frozen=True, slots=True)
class HttpStatistics:
    connections: int  # open now, SSE included
    connections_peak: int
    connections_total: int  # accepted and served since start
    rejected_total: int  # answered 503 at the connection cap
    max_connections: int  # the cap in force (after RLIMIT_NOFILE)


def connection_cap(limits: HttpLimits) -> int:
    """max_connections, lowered so connections + rejections + reserve fit under RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    room = soft - limits.reserved_fds - limits.max_rejecting_connections
    if room < limits.max_connections:
        log.warning("serving at most %d connections (RLIMIT_NOFILE %d, %d fds reserved); raise "
                    "`ulimit -n` for more", max(room, 1), soft, limits.reserved_fds)
    return max(1, min(limits.max_connections, room))


class HttpServer:
    """One server: its app, limits, connections and shared response helpers."""

    def __init__(self, app: App, limits: HttpLimits):
        self.app = app
        self.limits = limits
        self.headers = HeaderEncoder()
        self.date = HttpDate()
        self.closing = False
        self.max_connections = connection_cap(limits)
        self.connections: set[Connection] = set()
        self._rejecting = 0
        self._slot_freed = trio.Event()
        self._peak = 0
        self._total = 0
        self._rejected = 0
        self._last_reject_log = -_REJECT_LOG_INTERVAL_S

    def statistics(self) -> HttpStatistics:
        return HttpStatistics(len(self.connections), self._peak, self._total, self._rejected,
                              self.max_connections)

    async def serve(
        self,
        host: str,
        port: int,
        shutdown: trio.Event | None = None,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """See `serve_http`; use this form to keep the server for its statistics()."""
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=self.limits.listen_backlog)
        await self.serve_listeners(listeners, shutdown, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: list[trio.SocketListener],
        shutdown: trio.Event | None = None,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on listeners the caller opened (e.g. a socket bound before anything else was
        created); they are closed when this returns."""
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(self._accept, listener, connections)
                    task_status.started([_url(listener) for listener in listeners])
                    await (shutdown.wait() if shutdown is not None else trio.sleep_forever())
                    acceptors.cancel_scope.cancel()
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
                self._begin_shutdown(connections)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def _begin_shutdown(self, connections: trio.Nursery) -> None:
        self.closing = True
        busy = 0
        for connection in list(self.connections):
            busy += connection.begin_shutdown()
        log.info("HTTP stopping: %d connections still busy get %.1f s", busy, self.limits.shutdown_grace_s)
        connections.cancel_scope.deadline = trio.current_time() + self.limits.shutdown_grace_s

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        limits = self.limits
        while True:
            while len(self.connections) >= self.max_connections and self._rejecting >= limits.max_rejecting_connections:
                await self._slot_freed.wait()
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("accept failed (%s); retrying in %.1f s", exc.strerror, _ACCEPT_BACKOFF_S)
                await trio.sleep(_ACCEPT_BACKOFF_S)
                continue
            if len(self.connections) < self.max_connections:
                connection = Connection(stream, self)
                self.connections.add(connection)
                self._total += 1
                self._peak = max(self._peak, len(self.connections))
                nursery.start_soon(self._run, connection)
            else:
                self._rejecting += 1
                self._rejected += 1
                nursery.start_soon(self._reject, stream)

    async def _run(self, connection: Connection) -> None:
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            self._free_slot()

    async def _reject(self, stream: trio.SocketStream) -> None:
        """503 at the cap, without losing the answer to a reset (linger, bounded)."""
        now = trio.current_time()
        if now - self._last_reject_log >= _REJECT_LOG_INTERVAL_S:
            self._last_reject_log = now
            log.warning("at the connection cap (%d): answering new connections 503", self.max_connections)
        limits = self.limits
        response = error_response(Unavailable("too many open connections; retry later"))
        head = b"".join((
            status_line(response.status), self.date.line(), self.headers.encode(response.headers)[0],
            framing(length=len(response.body), chunked=False, keep_alive=False, http10=False),
        ))
        try:
            with trio.move_on_after(limits.linger_timeout_s):
                await stream.send_all(head + response.body)
                await stream.send_eof()
                dropped = 0
                while dropped <= limits.linger_max_bytes:
                    data = await stream.receive_some(limits.receive_bytes)
                    if not data:
                        break
                    dropped += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)
            self._rejecting -= 1
            self._free_slot()

    def _free_slot(self) -> None:
        self._slot_freed.set()
        self._slot_freed = trio.Event()


def _url(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_http(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: HttpLimits | None = None,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` over HTTP/1.1 until `shutdown` is set (then stop gracefully) or cancelled.

    `task_status.started(urls)` reports every bound address as `http://host:port` once the
    listeners accept (port 0 picks a free port). Bind errors (OSError) are raised before that.
    """
    await HttpServer(app, limits or HttpLimits()).serve(host, port, shutdown, task_status)

"""The server process: bind, boot the engine, serve HTTP (ours or hypercorn), stop gracefully.

What this module owns: the order of start-up and shutdown, the signals, and the one line on
stdout that says where the server listens. The order of start-up:
1. check the settings (a non-loopback bind with the default `dev` key refuses to start; TLS
   needs hypercorn);
2. bind the listening socket, before anything is created: a busy port refuses to start before
   DATA_DIR exists or a bootstrap key is minted;
3. open the engine (lock DATA_DIR, recover);
4. listen, then print `kissvdb listening on http://HOST:PORT` (with the real port; port 0 picks
   a free one; tests and scripts read this line). Connections that arrive during recovery wait
   in the kernel's backlog instead of being refused.
What it guarantees:
- it refuses to start (ConfigError, exit code 2) as above, when DATA_DIR is locked by another
  process, or when the WAL is corrupt;
- first SIGINT/SIGTERM: SSE streams are ended (`Engine.begin_shutdown`), the server stops
  accepting and gives in-flight requests HTTP_SHUTDOWN_GRACE_SECS, then the engine drains queued
  writes and closes its files. A second signal exits at once (`os._exit(1)`), with whatever was
  fsynced.
What it never does: touch an actor or a file itself. Everything durable is the engine's.
"""

from __future__ import annotations

import errno
import gc
import inspect
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from typing import Awaitable, Callable

import trio

from kissvdb import datadir
from kissvdb.actors.boot import open_engine
from kissvdb.api.app import create_app
from kissvdb.config import Settings
from kissvdb.errors import ConfigError, Corruption, DataDirLocked
from kissvdb.wal import format as wal_format

log = logging.getLogger("kissvdb.server")

LISTEN_BACKLOG = 1024  # pending connections the kernel queues for us
# Files and directories the server creates are its user's only (PostgreSQL does the same).
PRIVATE_UMASK = 0o077

# How soon a thread waiting for the interpreter lock may take it from a running one (Python's
# default: 5 ms). The event loop gives the lock up at every blocking call (each poll, read and
# write), then waits for it while a worker thread runs Python (a search grouping hits, an
# encoder): with 5 ms, one or two such threads made a 1 ms sleep on the loop take up to 60-75 ms
# on the 2-core box, and /v1/health over 100 ms; with 1 ms, at most 7-20 ms.
SWITCH_INTERVAL_S = 0.001
# Threads one BLAS call (numpy's matrix products: exact scans, IVF training) may use. OpenBLAS
# starts one per core and keeps them spinning between calls: with two search threads each
# scanning on two BLAS threads, a 256-query search_batch over 512 vectors of 4096 dims took
# 5.5 s instead of 1.4 s on the 2-core box, and /v1/health 60-90 ms instead of 25-35 ms.
# A server's parallelism comes from its requests, not from splitting one product.
BLAS_THREADS = 1

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IPs (127.0.0.0/8, ::1). Raises ConfigError for non-IPs."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        raise ConfigError(f"BIND_ADDR={host!r}: not an IP address") from None


def check_bind(settings: Settings) -> None:
    """Refuse a non-loopback bind while the API key is the default `dev` (anyone could write)."""
    if is_loopback(settings.bind_addr):
        return
    if not settings.api_key_from_env:
        raise ConfigError(
            f"bound to {settings.bind_addr} with the default API key 'dev': anyone "
            "who can reach this address could read and write everything. Set API_KEY (or "
            "RUSTKISS_API_KEY) to a secret, or bind to 127.0.0.1."
        )
    if settings.api_key == "dev":
        log.warning("listening on %s with API_KEY=dev: choose a real secret", settings.bind_addr)
    else:
        log.warning("listening on %s: reachable beyond this machine, over plain HTTP", settings.bind_addr)


def check_tls(settings: Settings) -> None:
    """TLS is hypercorn's; our server speaks plain HTTP/1.1 (put it behind a TLS proxy)."""
    if (settings.tls_certfile or settings.tls_keyfile) and settings.http_server != "hypercorn":
        raise ConfigError("TLS (TLS_CERTFILE/--certfile) needs HTTP_SERVER=hypercorn (--server hypercorn)")
    if bool(settings.tls_certfile) != bool(settings.tls_keyfile):
        raise ConfigError("TLS needs both TLS_CERTFILE (--certfile) and TLS_KEYFILE (--keyfile)")


def bind_socket(settings: Settings) -> socket.socket:
    """The server's socket, bound but not listening: the port is ours from here on."""
    host = settings.bind_addr.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise ConfigError(f"cannot listen on {settings.bind_addr}:{settings.port}: {exc.strerror}") from None
        raise
    return sock


class _Stop:
    """Shutdown state shared by the signal watcher and `serve`.

    Before the engine is open, a stop cancels the boot (nothing was acknowledged yet, and
    recovery is deterministic, so an interrupted boot loses nothing). Afterwards it sets
    `requested`, which both hypercorn (as its shutdown trigger) and `_end_streams` wait on.
    """

    def __init__(self) -> None:
        self.requested = trio.Event()
        self.boot_scope = trio.CancelScope()
        self.engine_open = False

    def request(self) -> None:
        if self.requested.is_set():
            return
        self.requested.set()
        if not self.engine_open:
            self.boot_scope.cancel()


async def serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    handle_signals: bool = True,
) -> None:
    """Run the server until a signal (or `shutdown_trigger` returns), then stop gracefully.

    `task_status.started(url)` reports `http://HOST:PORT` once the socket accepts. Signals are
    handled only from the main thread. Raises ConfigError, DataDirLocked or Corruption (possibly
    inside an exception group) when the server refuses to start.
    """
    check_bind(settings)
    check_tls(settings)
    sock = bind_socket(settings)
    try:
        stop = _Stop()
        async with trio.open_nursery() as watchers:
            if handle_signals and threading.current_thread() is threading.main_thread():
                await watchers.start(_watch_signals, stop)
            if shutdown_trigger is not None:
                watchers.start_soon(_stop_after, shutdown_trigger, stop)
            _log_start(settings)
            with stop.boot_scope:
                async with open_engine(settings) as engine:
                    stop.engine_open = True
                    if stop.requested.is_set():
                        log.info("stop requested during start-up; not listening")
                    else:
                        app = create_app(engine, settings)
                        # What boot built lives as long as the server: keep it out of the
                        # collector's full passes, which would otherwise walk it and hold the
                        # event loop for tens of milliseconds now and then.
                        gc.collect()
                        gc.freeze()
                        sock.listen(LISTEN_BACKLOG)
                        await _serve_http(app, settings, sock, engine, stop, task_status)
                    log.info("HTTP stopped; draining writes and closing files")
                if engine.fatal_error is not None:
                    raise RuntimeError(f"stopped after a WAL fsync failure: {engine.fatal_error}")
            if stop.boot_scope.cancelled_caught:
                log.info("stopped during start-up")
            else:
                log.info("stopped cleanly")
            watchers.cancel_scope.cancel()
    finally:
        sock.close()


async def _serve_http(app, settings: Settings, sock: socket.socket, engine, stop: _Stop, task_status) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_end_streams, engine, stop)
        nursery.start_soon(_stop_when_engine_asks, engine, stop)
        urls = await nursery.start(start_http, app, settings, sock, stop.requested)
        url = urls[0]
        print(f"kissvdb listening on {url}", flush=True)
        task_status.started(url)


async def start_http(app, settings: Settings, sock: socket.socket, stop: trio.Event,
                     *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on the listening `sock` with the server HTTP_SERVER names, until `stop`.
    `task_status.started(urls)` once it accepts."""
    if settings.http_server == "hypercorn":
        from .asgi import asgi_app
        from .hypercorn_host import hypercorn_config, serve_hypercorn

        config = hypercorn_config(keep_alive_s=settings.http_keep_alive_secs,
                                  grace_s=settings.http_shutdown_grace_secs,
                                  certfile=settings.tls_certfile or None,
                                  keyfile=settings.tls_keyfile or None)
        await serve_hypercorn(asgi_app(app, settings.max_body_bytes), config, [sock], stop,
                              task_status=task_status)
    else:
        from .http_host import serve_ours

        await serve_ours(app, settings, sock, stop, task_status=task_status)


async def _end_streams(engine, stop: _Stop) -> None:
    """On stop, end SSE streams first so hypercorn's graceful wait is spent on writes, not on
    subscribers that would never finish on their own."""
    await stop.requested.wait()
    begin_shutdown = getattr(engine, "begin_shutdown", None)
    if begin_shutdown is None:
        return
    result = begin_shutdown()
    if inspect.isawaitable(result):
        await result


async def _stop_when_engine_asks(engine, stop: _Stop) -> None:
    """A WAL fsync failure is fail-stop: the engine asks, and the server stops gracefully
    (answers already decided still go out) and then exits non-zero."""
    await engine.shutdown_requested.wait()
    if engine.fatal_error is not None:
        log.critical("stopping: %s", engine.fatal_error)
    stop.request()


async def _stop_after(trigger: Callable[[], Awaitable[object]], stop: _Stop) -> None:
    await trigger()
    stop.request()


async def _watch_signals(stop: _Stop, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.requested.is_set():
                log.warning("%s: stopping gracefully (send it again to exit at once)", name)
                stop.request()
            else:
                # No logging here: a lock held by an interrupted handler must not stop the exit.
                os.write(2, f"kissvdb: second {name}: exiting at once\n".encode())
                os._exit(EXIT_FAILED)


def _log_start(settings: Settings) -> None:
    if settings.memory:
        for line in (
            "*" * 72,
            "MEMORY MODE: NOTHING IS DURABLE. Every write is lost when this process stops.",
            "Use --memory for tests and demos only.",
            "*" * 72,
        ):
            log.warning("%s", line)
    else:
        log.info("data dir %s", os.path.abspath(settings.data_dir))
        log.info("user SQL %s", os.path.abspath(settings.user_sql_path) if settings.sqlite_enabled else "disabled")
    log.info("data format %d, WAL format %d, default index %s, HTTP server %s",
             datadir.DATA_FORMAT_VERSION, wal_format.FORMAT_VERSION, settings.index_kind, settings.http_server)


def find_leaf(exc: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of `types` in `exc`, looking inside exception groups (nurseries wrap)."""
    if isinstance(exc, types):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_leaf(inner, types)
            if found is not None:
                return found
    return None


def tune_process() -> None:
    """Process-wide settings the server relies on: the switch interval and BLAS threads (run()
    applies them; in-process tests do too, so they measure the loop as the server runs it)."""
    import numpy  # noqa: F401  (loads the BLAS library the limit applies to)
    from threadpoolctl import ThreadpoolController

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    ThreadpoolController().limit(limits=BLAS_THREADS, user_api="blas")  # kept: never restored


def run(settings: Settings, *, log_level: str = "info") -> int:
    """Run the server in a fresh Trio loop; return the process exit code.

    0 after a clean stop; 2 when the server refuses to start (with a message saying why);
    1 when it fails while running (with the traceback logged). Sets the process umask so that
    every file and directory the server creates is private to its user, and the switch interval
    and BLAS threads (`tune_process`).
    """
    os.umask(PRIVATE_UMASK)
    tune_process()
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, log_level.upper(), logging.INFO),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        trio.run(serve, settings)
    except BaseException as exc:
        return _exit_code(exc, settings)
    return EXIT_OK


def _exit_code(exc: BaseException, settings: Settings) -> int:
    refused = find_leaf(exc, (ConfigError, DataDirLocked, Corruption))
    if isinstance(refused, ConfigError):
        _error(f"refusing to start: {refused}")
        return EXIT_REFUSED
    if isinstance(refused, DataDirLocked):
        _error(f"refusing to start: {refused}. Stop that process, or point DATA_DIR elsewhere.")
        return EXIT_REFUSED
    if isinstance(refused, Corruption):
        _error(
            f"refusing to start: the WAL is damaged: {refused}\n"
            f"  see what is wrong:  kissvdb check {settings.data_dir}\n"
            f"  cut the log there:  kissvdb repair {settings.data_dir} --truncate-at-first-bad"
        )
        return EXIT_REFUSED
    if find_leaf(exc, (KeyboardInterrupt,)) is not None:  # before the signal handlers were installed
        _error("interrupted")
        return EXIT_FAILED
    log.critical("server failed", exc_info=exc)
    return EXIT_FAILED


def _error(message: str) -> None:
    print(f"kissvdb: {message}", file=sys.stderr, flush=True)

"""The server process: Engine + Quart app + hypercorn, with a graceful stop.

What this module owns: the order of start-up and shutdown, the signals, and the one line on
stdout that says where the server listens. What it guarantees:
- it refuses to start (ConfigError, exit code 2) when bound beyond loopback with the default
  `dev` key, when DATA_DIR is locked by another process, or when the WAL is corrupt;
- `kissvdb listening on http://HOST:PORT` is printed (and flushed) only once the socket accepts,
  with the real port (port 0 picks a free one; tests and scripts read this line);
- first SIGINT/SIGTERM: SSE streams are ended (`Engine.begin_shutdown`), hypercorn stops accepting
  and gives in-flight requests GRACEFUL_TIMEOUT_S, then the engine drains queued writes and closes
  its files. A second signal exits at once (`os._exit(1)`), with whatever was fsynced.
What it never does: touch an actor or a file itself. Everything durable is the engine's.
"""

from __future__ import annotations

import errno
import inspect
import ipaddress
import logging
import os
import signal
import sys
import threading
from functools import partial
from typing import Awaitable, Callable

import hypercorn.trio
import trio
from hypercorn.config import Config

from kissvdb import datadir
from kissvdb.actors.engine import open_engine
from kissvdb.api.app import create_app
from kissvdb.config import Settings
from kissvdb.errors import ConfigError, Corruption, DataDirLocked
from kissvdb.wal import format as wal_format

log = logging.getLogger("kissvdb.server")

# Named limits for hypercorn (its defaults are for a generic web app, not chosen for us).
GRACEFUL_TIMEOUT_S = 5.0  # in-flight requests get this long after the first signal
KEEP_ALIVE_TIMEOUT_S = 30.0  # idle keep-alive connections are closed after this
KEEP_ALIVE_REQUESTS_MAX = 1_000_000  # hypercorn's 1000 would reconnect benchmark clients
LISTEN_BACKLOG = 1024  # pending connections the kernel queues for us
LIFESPAN_TIMEOUT_S = 10.0  # app start-up / shutdown hooks

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


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.bind_addr.strip("[]")
    config.bind = [f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"]
    config.accesslog = None  # an access log line per request costs throughput; off by default
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    config.keep_alive_max_requests = KEEP_ALIVE_REQUESTS_MAX
    config.backlog = LISTEN_BACKLOG
    config.startup_timeout = LIFESPAN_TIMEOUT_S
    config.shutdown_timeout = LIFESPAN_TIMEOUT_S
    return config


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
    config = hypercorn_config(settings)
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
                    await _serve_http(app, config, engine, stop, task_status)
                log.info("HTTP stopped; draining writes and closing files")
            if engine.fatal_error is not None:
                raise RuntimeError(f"stopped after a WAL fsync failure: {engine.fatal_error}")
        if stop.boot_scope.cancelled_caught:
            log.info("stopped during start-up")
        else:
            log.info("stopped cleanly")
        watchers.cancel_scope.cancel()


async def _serve_http(app, config: Config, engine, stop: _Stop, task_status) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_end_streams, engine, stop)
        nursery.start_soon(_stop_when_engine_asks, engine, stop)
        try:
            binds = await nursery.start(
                partial(hypercorn.trio.serve, app, config, shutdown_trigger=stop.requested.wait)
            )
        except BaseException as exc:
            refusal = _listen_error(exc, config)
            if refusal is None:
                raise
            raise refusal from exc
        url = binds[0]
        print(f"kissvdb listening on {url}", flush=True)
        task_status.started(url)


def _listen_error(exc: BaseException, config: Config) -> ConfigError | None:
    """A failed bind (port taken, address not ours) becomes a ConfigError naming the address."""
    leaf = find_leaf(exc, (OSError,))
    if isinstance(leaf, OSError) and leaf.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
        return ConfigError(f"cannot listen on {config.bind[0]}: {leaf.strerror}")
    return None


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
    log.info("data format %d, WAL format %d, default index %s",
             datadir.DATA_FORMAT_VERSION, wal_format.FORMAT_VERSION, settings.index_kind)


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


def run(settings: Settings, *, log_level: str = "info") -> int:
    """Run the server in a fresh Trio loop; return the process exit code.

    0 after a clean stop; 2 when the server refuses to start (with a message saying why);
    1 when it fails while running (with the traceback logged).
    """
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

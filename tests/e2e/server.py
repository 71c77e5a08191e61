"""A real `kissvdb serve` subprocess for end-to-end tests and benchmarks.

`ServerProcess` owns one server process on 127.0.0.1 with port 0: it starts it, waits (bounded)
for the one line the server prints once it accepts connections (`kissvdb listening on
http://HOST:PORT`), and exposes the address. It stops the process either as an operator would
(SIGTERM, bounded wait) or as a crash does (SIGKILL). Everything the process writes on stdout and
stderr is kept in memory and in a log file next to the data directory, and is dumped to stderr
when a wait times out or the `with` block fails, so a failing test shows what the server said.

It never sleeps to wait: every wait is a poll against a deadline that says what it waited for.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

LISTENING_RE = re.compile(r"kissvdb listening on (http://(\S+?):(\d+))\s*$")
START_TIMEOUT_S = 60.0  # boot of a large data dir in bench/ takes a few seconds; tests far less
STOP_TIMEOUT_S = 20.0
DEFAULT_API_KEY = "e2e-test-key"

# Inherited variables that would override what a test asks for (RUSTKISS_API_KEY wins over
# API_KEY; DATA_DIR and the port are given as flags, but keep the environment unambiguous).
_SCRUBBED_ENV = ("RUSTKISS_API_KEY", "API_KEY", "DATA_DIR", "PORT_RUST_KISS_VDB", "BIND_ADDR")


class ServerError(RuntimeError):
    """The server did not start, did not stop, or exited unexpectedly (its log is attached)."""


def server_command(data_dir: str | os.PathLike, extra_args: tuple[str, ...] = ()) -> list[str]:
    """`python -m kissvdb serve --port 0 --data DIR`, with the interpreter running the tests."""
    if importlib.util.find_spec("kissvdb.__main__") is not None:
        head = [sys.executable, "-m", "kissvdb"]
    else:  # the package has no __main__ yet: call the console script's target directly
        head = [sys.executable, "-c", "import sys; from kissvdb.cli import main; sys.exit(main())"]
    return [*head, "serve", "--port", "0", "--data", str(data_dir), *extra_args]


class ServerProcess:
    """One `kissvdb serve` process. Use as a context manager, or call start() / stop()."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        env: Mapping[str, str] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        extra_args: tuple[str, ...] = (),
        log_path: str | os.PathLike | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.extra_args = tuple(extra_args)
        self.start_timeout_s = start_timeout_s
        self.env = dict(os.environ)
        for name in _SCRUBBED_ENV:
            self.env.pop(name, None)
        self.env.update({"API_KEY": api_key, "PYTHONUNBUFFERED": "1"})
        self.env.update(env or {})
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".server.log")
        self.proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        self.host: str | None = None
        self.port: int | None = None
        self.started_at: float | None = None  # time.monotonic() just before the spawn
        self.listening_after_s: float | None = None  # spawn -> listening line
        self.generation = 0  # incremented by every start(); tells restarts apart in the log
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._new_line = threading.Condition(self._lock)  # notified on every log line
        self._listening = threading.Event()
        self._readers: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> "ServerProcess":
        """Spawn the server and return once it printed its listening line (bounded wait)."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError("server already running")
        self.generation += 1
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # the server creates DATA_DIR itself
        self._listening.clear()
        self.base_url = self.host = self.port = None
        self._note(f"==== start #{self.generation}: {' '.join(server_command(self.data_dir, self.extra_args))}")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            server_command(self.data_dir, self.extra_args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C on the test run must not reach the server first
        )
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._listening.wait(timeout=0.05):
            if self.proc.poll() is not None:
                self._join_readers()
                raise self._fail(f"server exited with {self.proc.returncode} before listening")
            if time.monotonic() > deadline:
                self._kill_quietly()
                raise self._fail(f"no listening line within {self.start_timeout_s:.0f}s")
        return self

    def kill9(self) -> int:
        """SIGKILL: the process gets no chance to flush, checkpoint or close anything."""
        proc = self._require_proc()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise self._fail("process survived SIGKILL") from None
        self._join_readers()
        self._note(f"==== killed with SIGKILL (exit {code})")
        return code

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait (bounded) for a graceful exit; returns the exit code."""
        proc = self._require_proc()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_quietly()
            raise self._fail(f"server did not exit within {timeout_s:.0f}s of SIGTERM") from None
        self._join_readers()
        self._note(f"==== stopped with SIGTERM (exit {code})")
        return code

    def restart(self) -> "ServerProcess":
        return self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "ServerProcess":
        return self.start() if not self.running() else self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.running():
                self._kill_quietly()
        finally:
            if exc_type is not None and not issubclass(exc_type, ServerError):
                self.dump_log()

    # ---- what a test uses --------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def url(self, path: str) -> str:
        if self.base_url is None:
            raise ServerError("server not listening")
        return self.base_url + path

    def log(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def log_lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def dump_log(self, reason: str = "") -> None:
        sys.stderr.write(f"\n----- kissvdb server log ({self.log_path}){': ' + reason if reason else ''} -----\n")
        sys.stderr.write(self.log())
        sys.stderr.write("\n----- end of server log -----\n")
        sys.stderr.flush()

    def wait_for_log(self, predicate: Callable[[str], bool], timeout_s: float, what: str) -> str:
        """Wait (bounded) for a log line that satisfies `predicate`; returns the line."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._new_line:
            while True:
                for line in self._lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._new_line.wait(left)  # woken by the next line the server prints
        raise self._fail(f"timed out after {timeout_s}s waiting for log line: {what}")

    # ---- internals ---------------------------------------------------------------------------

    def _pump(self, stream, tag: str) -> None:
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as log_file:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self._note(f"[{tag}] {line}", log_file)
                match = LISTENING_RE.search(line)
                if match and not self._listening.is_set():
                    self.base_url, self.host, self.port = match.group(1), match.group(2), int(match.group(3))
                    self.listening_after_s = time.monotonic() - (self.started_at or time.monotonic())
                    self._listening.set()
        stream.close()

    def _note(self, line: str, log_file=None) -> None:
        with self._new_line:
            self._lines.append(line)
            self._new_line.notify_all()
        if log_file is not None:
            log_file.write(line + "\n")
            log_file.flush()
        else:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5.0)

    def _require_proc(self) -> subprocess.Popen:
        if self.proc is None:
            raise ServerError("server was never started")
        return self.proc

    def _kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self._join_readers()

    def _fail(self, message: str) -> ServerError:
        self.dump_log(message)
        return ServerError(f"{message} (server log: {self.log_path})")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {series: value}; labels stay part of the name; comments skipped."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "}" in line:  # labels may hold spaces; the value follows the closing brace
            name, _, rest = line.partition("}")
            name += "}"
        else:
            name, _, rest = line.partition(" ")
        fields = rest.split()
        if not fields:
            continue
        try:
            values[name.strip()] = float(fields[0])  # a trailing timestamp is ignored
        except ValueError:
            continue
    return values

"""The servers bench/compare_http.py measures side by side, each a subprocess on 127.0.0.1.

- `kissvdb(...)`: `kissvdb serve` through tests/e2e/server.py's ServerProcess, on a fresh data
  dir, with `--server NAME` passed only when the CLI has that flag (`serve_supports_server_flag`);
- `ceiling(...)`: bench/http_ceiling.py, the plain trio + httptools hello world;
- `etcd(...)`: a one-member etcd on a temp dir (its JSON gateway is on the client port);
- `chroma(...)`: `chroma run --path <tmp> --port N` (chromadb's server binary).

Every one is a `Service`: a base URL, a pid (for CPU accounting) and a bounded stop. A service
that does not answer its readiness URL within its deadline is killed and its log shown. Nothing
here waits by sleeping: readiness is a poll of an HTTP URL against a deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.server import ServerProcess  # noqa: E402

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for servers that cannot report the one they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """One server subprocess; output goes to `log_path`."""

    def __init__(self, name: str, cmd: list[str], base_url: str, ready_path: str, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.cmd, self.base_url, self.ready_path, self.log_path = name, cmd, base_url, ready_path, log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "Service":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.get(self.base_url + self.ready_path).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} not ready within {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")
                time.sleep(0.1)  # polling interval of a bounded readiness poll

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class KissvdbService:
    """`kissvdb serve` as a Service (ServerProcess does the start/stop and keeps the log)."""

    def __init__(self, name: str, server: ServerProcess) -> None:
        self.name, self.server = name, server

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    @property
    def api_key(self) -> str:
        return self.server.api_key

    def start(self) -> "KissvdbService":
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server.running():
            self.server.stop()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.server.log_lines()[-lines:])


def serve_help() -> str:
    proc = subprocess.run([sys.executable, "-m", "kissvdb", "serve", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    return proc.stdout


def serve_supports_server_flag() -> bool:
    """Whether `kissvdb serve` has `--server` (the choice between kissvdb's own server and hypercorn)."""
    return re.search(r"(^|\s)--server[\s=]", serve_help()) is not None


def kissvdb(name: str, workdir: Path, server_flag: str | None, api_key: str,
            env: dict[str, str] | None = None) -> KissvdbService:
    extra = ("--server", server_flag) if server_flag else ()
    server = ServerProcess(workdir / f"{name}-data", env=env, api_key=api_key, extra_args=extra,
                           log_path=workdir / f"{name}.log")
    return KissvdbService(name, server)


def ceiling(workdir: Path) -> Service:
    port = free_port()
    return Service("trio+httptools hello world", [sys.executable, str(BENCH / "http_ceiling.py"), "--port", str(port)],
                   f"http://127.0.0.1:{port}", "/", workdir / "ceiling.log")


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"etcd Version:\s*(\S+)", out)
    return match.group(1) if match else "?"


def etcd(workdir: Path, binary: str) -> Service:
    client, peer = free_port(), free_port()
    cmd = [binary, "--name", "bench", "--data-dir", str(workdir / "etcd-data"),
           "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
           "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-cluster", f"bench=http://127.0.0.1:{peer}", "--logger", "zap", "--log-level", "warn"]
    return Service("etcd", cmd, f"http://127.0.0.1:{client}", "/health", workdir / "etcd.log")


def chroma_binary() -> str | None:
    """`chroma` next to this interpreter (the `chroma` extra installs it there), else on PATH."""
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.exists() else shutil.which("chroma")


def chroma_version() -> str:
    try:
        from importlib.metadata import version
        return version("chromadb")
    except Exception:  # installed in another environment: the binary does not print its package version
        return "?"


def chroma(workdir: Path, binary: str) -> Service:
    port = free_port()
    return Service("Chroma", [binary, "run", "--path", str(workdir / "chroma-data"), "--host", "127.0.0.1",
                              "--port", str(port)],
                   f"http://127.0.0.1:{port}", "/api/v2/heartbeat", workdir / "chroma.log",
                   env={"ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"})

"""The physical ceiling for HTTP on this box: a hello world on bare trio sockets + httptools.

Two servers, one script, so the overhead of `kissvdb.api.http` over the bare fixture can be
measured with the same load generator in the same run:

    python bench/http_ceiling.py --port N          # bare: no framework, no limits, no timeouts
    python bench/http_ceiling.py --ours --port N   # the same hello world served by serve_http
    python bench/http_ceiling.py --compare         # starts both in turn, drives each with wrk,
                                                   # prints ours / bare for GET and a 100-byte POST
    python bench/http_ceiling.py --instructions    # the same comparison in user-space
                                                   # instructions per request (callgrind): immune
                                                   # to a busy box, blind to the kernel's share

The bare server is deliberately minimal: one task per connection, parse with httptools, answer
every complete request in the order parsed, one `send_all` per read. It has no limits, no
timeouts and no error handling beyond dropping the connection, so it is a fixture to measure
against, never a server to run. Both answer `GET` and `POST` (body read, ignored) with the same
13-byte body and the same headers.

--compare needs `wrk` on PATH (apt-get install wrk); the load is `wrk -t1 -c64 -d<duration>`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httptools
import trio

HELLO = b"Hello, world!"
BARE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s" % (len(HELLO), HELLO)
)
RECEIVE_BYTES = 65536


class _BareProtocol:
    """httptools callbacks: count complete requests; the body is parsed and dropped."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = 0

    def on_message_complete(self) -> None:
        self.complete += 1


async def _bare_connection(stream: trio.SocketStream) -> None:
    protocol = _BareProtocol()
    parser = httptools.HttpRequestParser(protocol)
    try:
        while True:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                return
            parser.feed_data(data)
            if protocol.complete:
                await stream.send_all(BARE_RESPONSE * protocol.complete)
                protocol.complete = 0
    except (trio.BrokenResourceError, httptools.HttpParserError):
        return
    finally:
        await stream.aclose()


async def run_bare(host: str, port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
    print(f"listening on http://{host}:{listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(_bare_connection, listeners)


async def run_ours(host: str, port: int) -> None:
    from kissvdb.api.http import HttpLimits, Response, serve_http

    async def hello(request):
        if request.method == "POST":
            await request.body()
        return Response(HELLO, content_type="text/plain")

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(lambda task_status: serve_http(
            hello, host=host, port=port, limits=HttpLimits(), task_status=task_status))
        print(f"listening on {urls[0]}", flush=True)


# ---------------------------------------------------------------- --compare: both under wrk

POST_LUA = 'wrk.method = "POST"\nwrk.body = string.rep("x", 100)\nwrk.headers["Content-Type"] = "text/plain"\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    rps: float
    cpu_us: float  # server CPU per request: the figure the box's noise disturbs least
    p50: str


def _wrk(pid: int, port: int, duration: int, script: str | None) -> Run:
    cmd = ["wrk", "-t1", "-c64", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", script]
    before = _cpu_s(pid)
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    cpu = _cpu_s(pid) - before
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk run failed or saw errors:\n{out}")
    p50 = re.search(r"\n\s+50%\s+(\S+)", out)
    return Run(float(rps.group(1)), cpu / int(total.group(1)) * 1e6, p50.group(1) if p50 else "?")


def _measure(ours: bool, duration: int, post_script: str) -> dict[str, Run]:
    port = _free_port()
    args = [sys.executable, __file__, "--port", str(port)] + (["--ours"] if ours else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        _wait_listening(port)
        _wrk(proc.pid, port, 1, None)  # warm-up
        return {"GET": _wrk(proc.pid, port, duration, None),
                "POST 100 B": _wrk(proc.pid, port, duration, post_script)}
    finally:
        proc.terminate()
        proc.wait(10)


def compare(duration: int, rounds: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as tmp:
        post_script = os.path.join(tmp, "post.lua")
        Path(post_script).write_text(POST_LUA)
        ratios: dict[str, list[tuple[float, float]]] = {}
        for n in range(rounds):
            bare = _measure(False, duration, post_script)
            ours = _measure(True, duration, post_script)
            for name in bare:
                b, o = bare[name], ours[name]
                ratios.setdefault(name, []).append((o.rps / b.rps, b.cpu_us / o.cpu_us))
                print(f"round {n + 1}: {name:10s} bare {b.rps:7.0f} req/s {b.cpu_us:5.1f} us CPU/req "
                      f"(p50 {b.p50}) | ours {o.rps:7.0f} req/s {o.cpu_us:5.1f} us CPU/req (p50 {o.p50}) | "
                      f"ours/bare: req/s {o.rps / b.rps:.2f}, by CPU {b.cpu_us / o.cpu_us:.2f}", flush=True)
        print(f"medians over {rounds} rounds (wrk -t1 -c64 -d{duration}s); 'by CPU' = bare CPU per request "
              "/ ours, the ratio a quiet core would show")
        for name, values in ratios.items():
            by_rps = sorted(v[0] for v in values)[len(values) // 2]
            by_cpu = sorted(v[1] for v in values)[len(values) // 2]
            print(f"  {name:10s} ours/bare  req/s {by_rps:.2f}   by CPU {by_cpu:.2f}")


# ------------------------------------------- --instructions: user-space instructions / request

def _closed_loop(port: int, requests: int, connections: int, data: bytes) -> None:
    """Send `requests` requests over `connections` keep-alive connections, one in flight each."""
    import selectors

    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(data)
        buffers[sock] = b""
        selector.register(sock, selectors.EVENT_READ)
    sent, done = connections, 0
    while done < requests:
        for key, _ in selector.select():
            sock = key.fileobj
            buffers[sock] += sock.recv(65536)
            while b"\r\n\r\n" in buffers[sock]:
                head, _, rest = buffers[sock].partition(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                if len(rest) < length:
                    break
                buffers[sock] = rest[length:]
                done += 1
                if sent < requests:
                    sock.sendall(data)
                    sent += 1
    for sock in buffers:
        sock.close()


def _instructions(ours: bool, post: bool, requests: int) -> float:
    """User-space instructions per request of the server, counted by callgrind while only the
    closed-loop client runs (collection is switched on and off around it)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        args = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                sys.executable, __file__, "--port", str(port)] + (["--ours"] if ours else [])
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port, deadline_s=120.0)
            if post:
                data = b"POST / HTTP/1.1\r\nHost: b\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
            else:
                data = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n"
            _closed_loop(port, 200, 16, data)  # warm-up, not counted
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
            _closed_loop(port, requests, 16, data)
            subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        finally:
            proc.terminate()
            proc.wait(60)
        total = 0
        for name in os.listdir(tmp):
            for line in Path(tmp, name).read_text(errors="replace").splitlines():
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = max(total, int(line.split()[1]))
        return total / requests


def instructions(requests: int) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: apt-get install -y valgrind")
    print(f"user-space instructions per request, {requests} requests over 16 keep-alive connections "
          "(callgrind; the kernel's share is not counted)")
    for name, post in (("GET", False), ("POST 100 B", True)):
        bare = _instructions(False, post, requests)
        ours = _instructions(True, post, requests)
        print(f"  {name:10s} bare {bare / 1000:7.1f} k  ours {ours / 1000:7.1f} k  bare/ours {bare / ours:.2f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ours", action="store_true", help="serve through kissvdb.api.http")
    parser.add_argument("--compare", action="store_true", help="run both under wrk and print ratios")
    parser.add_argument("--instructions", action="store_true",
                        help="count user-space instructions per request under callgrind (noise-free)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.compare:
        compare(args.duration, args.rounds)
        return
    if args.instructions:
        instructions(args.requests)
        return
    try:
        trio.run(run_ours if args.ours else run_bare, args.host, args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

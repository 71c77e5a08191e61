"""A plain trio + httptools hello world: the ceiling any HTTP server on trio can reach on this box.

One task per connection; httptools parses; every request gets `200 ok` with keep-alive (or
`Connection: close` when the client asked for it, then the socket is closed). Pipelined requests
are answered in order, all those parsed from one read in one send. It routes nothing and reads no
header: bench/compare_http.py reports its requests/s next to kissvdb's GET /v1/health, and next to
etcd and Chroma to show that wrk, not the server, is never the limit.

    python bench/http_ceiling.py --port N     (prints `http_ceiling listening on http://HOST:PORT`)
"""

from __future__ import annotations

import argparse

import httptools
import trio

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Requests:
    """httptools callbacks: one keep-alive flag per complete request, in arrival order."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.complete: list[bool] = []

    def on_message_complete(self) -> None:
        self.complete.append(self.parser.should_keep_alive())


async def serve_connection(stream: trio.SocketStream) -> None:
    requests = _Requests()
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            try:
                requests.parser.feed_data(data)
            except httptools.HttpParserError:  # includes an Upgrade request: not served here
                await stream.send_all(BAD)
                return
            if not requests.complete:
                continue
            keep = all(requests.complete)
            answers = [OK] * len(requests.complete) if keep else [OK] * requests.complete.index(False) + [OK_CLOSE]
            requests.complete.clear()
            try:
                await stream.send_all(b"".join(answers))
            except trio.BrokenResourceError:
                return
            if not keep:
                return


async def main(port: int, host: str) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    print(f"http_ceiling listening on http://{bound[0]}:{bound[1]}", flush=True)
    await trio.serve_listeners(serve_connection, listeners)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    try:
        trio.run(main, args.port, args.host)
    except KeyboardInterrupt:
        pass

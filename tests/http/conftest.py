"""A small app for the wire-level tests of kissvdb.api.http: one path per behaviour under test."""

from __future__ import annotations

import json

import pytest
import trio

from kissvdb.api.http import Request, Response, StreamResponse

FLOOD_CHUNK = b"x" * (256 * 1024)


class WireApp:
    """Routes by path; records what it saw so tests can assert on the app's side too."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[Request] = []
        self.body_errors: list[Exception] = []
        self.entered = trio.Event()  # /wait has started
        self.release = trio.Event()  # /wait may answer
        self.stream_closed = trio.Event()  # an SSE iterator's `finally` ran
        self.pulled = 0  # SSE chunks pulled from the iterator
        self.events_send, self.events_receive = trio.open_memory_channel[bytes](0)

    async def __call__(self, request: Request) -> Response | StreamResponse:
        self.calls += 1
        self.seen.append(request)
        path = request.path
        if path == "/hello":
            return Response(b"hello", content_type="text/plain")
        if path == "/echo":
            return Response(await request.body(), content_type="application/octet-stream")
        if path == "/echo-or-error":
            try:
                return Response(await request.body())
            except Exception as exc:
                self.body_errors.append(exc)
                raise
        if path.startswith("/early/"):  # answers without reading the body, like a failed auth
            status = int(path.removeprefix("/early/"))
            return Response(json.dumps({"error": "early"}).encode(), status, content_type="application/json")
        if path == "/info" or path.startswith("/info/"):
            return Response(json.dumps(_describe(request)).encode(), content_type="application/json")
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/inject":
            return Response(b"", headers=[("x-ok", "a\r\nset-cookie: stolen=1")])
        if path == "/wait":
            self.entered.set()
            await self.release.wait()
            return Response(b"done")
        if path == "/empty":
            return Response(status=204)
        if path == "/sse":
            return StreamResponse(self._events(), content_type="text/event-stream")
        if path == "/flood":
            return StreamResponse(self._flood(), content_type="application/octet-stream")
        if path == "/sse-fails":
            return StreamResponse(self._fails(), content_type="text/event-stream")
        return Response(b'{"error":"not_found"}', 404, content_type="application/json")

    async def _events(self):
        try:
            async for data in self.events_receive:
                self.pulled += 1
                yield data
        finally:
            self.events_receive.close()  # a test still sending events learns the stream is gone
            self.stream_closed.set()

    async def _flood(self):
        try:
            while True:
                self.pulled += 1
                yield FLOOD_CHUNK
        finally:
            self.stream_closed.set()

    async def _fails(self):
        try:
            yield b"data: one\n\n"
            raise RuntimeError("stream broke")
        finally:
            self.stream_closed.set()


def _describe(request: Request) -> dict:
    return {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path.decode("latin-1"),
        "path_is_utf8": request.path_is_utf8,
        "query_string": request.query_string.decode("latin-1"),
        "args": request.args.items(),
        "headers": request.headers.items(),
        "http_version": request.http_version,
        "has_deadline": request.deadline > trio.current_time(),
        "client_is_loopback": bool(request.client) and request.client[0] == "127.0.0.1",
    }


@pytest.fixture
def app() -> WireApp:
    return WireApp()

"""HTTP-layer fixtures: the real app over a real Engine on a temporary DATA_DIR, over real sockets.

`api` is an `ApiClient`: the app served on 127.0.0.1 (port 0) by the server HTTP_SERVER names
(ours by default; `KISSVDB_TEST_SERVER=hypercorn` runs every test through hypercorn), in the
test's own Trio loop, and an httpx client talking to it. The modules in CONFORMANCE_MODULES run
on both servers in every run (the hypercorn path serves the same handlers: it must answer alike). Requests carry the test key unless
`auth=False`; every answer is read completely into an httpx Response (status_code, headers,
content, json()), so `tests.helpers.assert_error` works on it; `pieces()` keeps a large answer as
the pieces read instead. `open_api(**settings)` builds another app when a test needs different
settings (timeouts, limits, CORS).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import trio

from kissvdb.actors.boot import open_engine
from kissvdb.api.app import create_app
from kissvdb.api.server import bind_socket, start_http, tune_process
from kissvdb.config import Settings

API_KEY = "test-key-0123"
TEST_SERVER = os.environ.get("KISSVDB_TEST_SERVER") or None
# Run on our server and on hypercorn alike (the conformance subset of issue 8).
CONFORMANCE_MODULES = {"test_state_routes", "test_errors", "test_auth", "test_stream_routes",
                       "test_web_security"}
CLIENT_TIMEOUT_S = 30
_NO_BODY = object()
tune_process()  # the process as `kissvdb serve` runs it (switch interval, BLAS threads)


class ApiClient:
    def __init__(self, app, client: httpx.AsyncClient, engine, url: str):
        self.app = app
        self.client = client
        self.engine = engine
        self.url = url

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _NO_BODY,
        data: bytes | None = None,
        headers: dict | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        """One request. `json=` sends orjson bytes with Content-Type application/json;
        `data=` sends raw bytes with only the headers given."""
        sent = {}
        if auth:
            sent["Authorization"] = f"Bearer {API_KEY}"
        if json is not _NO_BODY:
            data = orjson.dumps(json)
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        return await self.client.request(method, path, content=data, headers=sent)

    async def pieces(self, method: str, path: str, *, json: Any = _NO_BODY, data: bytes | None = None,
                     headers: dict | None = None) -> tuple[httpx.Response, list[bytes]]:
        """One request whose body is kept as the pieces read from the socket, never joined: a
        budget test reads a 64 MB answer without a 64 MB copy of its own on the loop it measures."""
        sent = {"Authorization": f"Bearer {API_KEY}"}
        if json is not _NO_BODY:
            data = orjson.dumps(json)
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        request = self.client.build_request(method, path, content=data, headers=sent)
        reply = await self.client.send(request, stream=True)
        try:
            return reply, [piece async for piece in reply.aiter_raw()]
        finally:
            await reply.aclose()

    async def get(self, path: str, **kw) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def put(self, path: str, **kw) -> httpx.Response:
        return await self.request("PUT", path, **kw)

    async def post(self, path: str, **kw) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def delete(self, path: str, **kw) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    async def metric(self, name: str) -> float:
        """The value of one series in /v1/metrics."""
        reply = await self.get("/v1/metrics")
        assert reply.status_code == 200, reply
        for line in reply.text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in metrics:\n{reply.text}")


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__.rsplit(".", 1)[-1] in CONFORMANCE_MODULES and TEST_SERVER is None:
        if {"api", "make_api", "http_server"} & set(metafunc.fixturenames):
            metafunc.parametrize("http_server", ["ours", "hypercorn"], indirect=True)


@pytest.fixture
def http_server(request) -> str:
    """Which server the test's API runs on (see CONFORMANCE_MODULES)."""
    return getattr(request, "param", None) or TEST_SERVER or "ours"


def test_settings(data_dir, **overrides) -> Settings:
    base = dict(data_dir=str(data_dir), api_key=API_KEY, port=0, bind_addr="127.0.0.1")
    if TEST_SERVER is not None:
        base["http_server"] = TEST_SERVER
    base.update(overrides)
    return Settings(**base)


@asynccontextmanager
async def serving(app, settings: Settings):
    """Serve `app` on 127.0.0.1 (a free port) for the block; yields the base URL."""
    sock = bind_socket(settings)
    sock.listen(128)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(start_http, app, settings, sock, stop)
            try:
                yield urls[0]
            finally:
                stop.set()
    finally:
        sock.close()


@asynccontextmanager
async def open_client(app, settings: Settings):
    async with serving(app, settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S) as client:
            yield ApiClient(app, client, app.engine, url)


@asynccontextmanager
async def open_api(data_dir, **overrides):
    settings = test_settings(data_dir, **overrides)
    async with open_engine(settings) as engine:
        async with open_client(create_app(engine, settings), settings) as api:
            yield api


@pytest.fixture
async def api(tmp_path, http_server):
    async with open_api(tmp_path / "data", http_server=http_server) as client:
        yield client


@pytest.fixture
def make_api(tmp_path, http_server):
    """`async with make_api(request_timeout_secs=1) as api:` for tests that need other settings."""
    counter = iter(range(1_000_000))

    def make(**overrides):
        overrides.setdefault("http_server", http_server)
        return open_api(tmp_path / f"data-{next(counter)}", **overrides)

    return make

"""HTTP-layer fixtures: the real app over a real Engine on a temporary DATA_DIR.

`api` is an `ApiClient` over QuartTrio's test client (no sockets). Requests carry the test key
unless `auth=False`; every answer is read completely into a `Reply` (httpx-like: status_code,
headers, content, json()), so `tests.helpers.assert_error` works on it. `open_api(**settings)`
builds another app when a test needs different settings (timeouts, limits, CORS).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import trio
from werkzeug.datastructures import Headers

from kissvdb.actors.engine import open_engine
from kissvdb.api.app import create_app
from kissvdb.config import Settings

API_KEY = "test-key-0123"
_NO_BODY = object()


@dataclass
class Reply:
    status_code: int
    headers: Headers
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode()


class ApiClient:
    def __init__(self, app, client, engine):
        self.app = app
        self.client = client
        self.engine = engine

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _NO_BODY,
        data: bytes | None = None,
        headers: dict | None = None,
        auth: bool = True,
    ) -> Reply:
        """One request. `json=` sends orjson bytes with Content-Type application/json;
        `data=` sends raw bytes with only the headers given."""
        sent = {}
        if auth:
            sent["Authorization"] = f"Bearer {API_KEY}"
        if json is not _NO_BODY:
            data = orjson.dumps(json)
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        # Read the body while the app sends it, as a socket does: the test client's own `open()`
        # collects it only after the app has finished, through a channel of 10 messages, so a
        # body sent in more pieces than that would never finish.
        connection = self.client.request(path, method=method, headers=sent)
        body = bytearray()
        async with connection:
            await connection.send(data or b"")
            await connection.send_complete()
            while True:
                try:
                    body += await connection.receive()
                except trio.EndOfChannel:
                    break
        return Reply(connection.status_code, connection.headers, bytes(body))

    async def get(self, path: str, **kw) -> Reply:
        return await self.request("GET", path, **kw)

    async def put(self, path: str, **kw) -> Reply:
        return await self.request("PUT", path, **kw)

    async def post(self, path: str, **kw) -> Reply:
        return await self.request("POST", path, **kw)

    async def delete(self, path: str, **kw) -> Reply:
        return await self.request("DELETE", path, **kw)

    async def metric(self, name: str) -> float:
        """The value of one series in /v1/metrics."""
        reply = await self.get("/v1/metrics")
        assert reply.status_code == 200, reply
        for line in reply.text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in metrics:\n{reply.text}")


@asynccontextmanager
async def open_api(data_dir, **overrides):
    settings = Settings(data_dir=str(data_dir), api_key=API_KEY, **overrides)
    async with open_engine(settings) as engine:
        app = create_app(engine, settings)
        async with app.test_app() as test_app:
            yield ApiClient(app, test_app.test_client(), engine)


@pytest.fixture
async def api(tmp_path):
    async with open_api(tmp_path / "data") as client:
        yield client


@pytest.fixture
def make_api(tmp_path):
    """`async with make_api(request_timeout_secs=1) as api:` for tests that need other settings."""
    counter = iter(range(1_000_000))

    def make(**overrides):
        return open_api(tmp_path / f"data-{next(counter)}", **overrides)

    return make

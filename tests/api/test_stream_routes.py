"""`/v1/stream` and `/v1/events` at the HTTP layer: parameters, headers, start offset, cleanup.

The stream's own semantics (replay -> live hand-over, gaps, keep-alives) are tested against the
broadcaster (tests/actors) and a real server (tests/e2e/test_sse.py); here the route is driven
through QuartTrio's streaming test connection. Streams are read until an expected frame, under
`trio.fail_after`, then disconnected, and the subscription must be gone afterwards.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import orjson
import pytest
import trio

from tests.api.conftest import API_KEY
from tests.helpers import assert_error, wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}
STREAM_TIMEOUT_S = 10


class StreamConnection:
    """One streaming request driven straight through the app's ASGI interface.

    QuartTrio's test connection waits for the body to end when it exits, which an endless
    stream never does; this one sends `http.disconnect` instead, as a client closing the socket.
    """

    def __init__(self, messages: trio.MemoryReceiveChannel):
        self._messages = messages
        self.status_code: int | None = None
        self.headers: dict[str, str] = {}

    async def start(self) -> None:
        message = await self._messages.receive()
        assert message["type"] == "http.response.start", message
        self.status_code = message["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}

    async def receive(self) -> bytes:
        while True:
            message = await self._messages.receive()
            if message["type"] == "http.response.body" and message.get("body"):
                return message["body"]


@asynccontextmanager
async def open_stream(api, path: str, headers: dict | None = None, *, auth: bool = True):
    from quart.testing.utils import make_test_headers_path_and_query_string, make_test_scope

    sent = {**(AUTH if auth else {}), **(headers or {})}
    hdrs, path, query = make_test_headers_path_and_query_string(api.app, path, sent)
    scope = make_test_scope("http", path, "GET", hdrs, query, "http", "", "1.1", None)
    send_channel, receive_channel = trio.open_memory_channel(1000)
    body_sent = False
    disconnected = trio.Event()

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(api.app, scope, receive, send_channel.send)
        conn = StreamConnection(receive_channel)
        try:
            with trio.fail_after(STREAM_TIMEOUT_S):
                await conn.start()
            yield conn
        finally:
            disconnected.set()


async def read_frames(conn, count: int) -> list[dict]:
    """The next `count` event frames as {"event", "id", "data"} (keep-alives skipped)."""
    frames: list[dict] = []
    buffer = b""
    with trio.fail_after(STREAM_TIMEOUT_S):
        while len(frames) < count:
            buffer += await conn.receive()
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                frame = {}
                for line in raw.decode().split("\n"):
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    frame[name] = value
                if "data" in frame:
                    frame["data"] = orjson.loads(frame["data"])
                    frames.append(frame)
    return frames


async def put_keys(api, *keys: str) -> None:
    for key in keys:
        assert (await api.put(f"/v1/state/{key}", json={"value": key})).status_code == 200


async def test_stream_replays_with_the_contract_frame(api):
    await put_keys(api, "job:1")
    async with open_stream(api, "/v1/stream") as conn:
        (frame,) = await read_frames(conn, 1)
        assert conn.status_code == 200
        assert conn.headers["content-type"] == "text/event-stream"
        assert conn.headers["cache-control"] == "no-cache"
    assert frame["event"] == "state_updated" and frame["id"] == "1"
    record = frame["data"]
    assert list(record) == ["offset", "ts_ms", "type", "data"]
    assert record["offset"] == 1 and record["type"] == "state_updated"
    assert record["data"] == {"expires_at_ms": None, "key": "job:1", "revision": 1, "value": "job:1"}


async def test_stream_tails_live_writes_and_unsubscribes_on_disconnect(api):
    async with open_stream(api, "/v1/stream?since=0") as conn:
        await wait_until(lambda: _gauge(api, "sse_clients", 1))
        await put_keys(api, "a", "b")
        frames = await read_frames(conn, 2)
    assert [f["data"]["data"]["key"] for f in frames] == ["a", "b"]
    await wait_until(lambda: _gauge(api, "sse_clients", 0))


async def _gauge(api, name: str, value: float) -> bool:
    return await api.metric(name) == value


async def test_since_is_exclusive(api):
    await put_keys(api, "a", "b", "c")
    async with open_stream(api, "/v1/stream?since=2") as conn:
        (frame,) = await read_frames(conn, 1)
    assert frame["id"] == "3"


async def test_last_event_id_wins_over_since(api):
    await put_keys(api, "a", "b", "c")
    async with open_stream(api, "/v1/stream?since=0", {"Last-Event-ID": "2"}) as conn:
        (frame,) = await read_frames(conn, 1)
    assert frame["id"] == "3"


async def test_unparseable_last_event_id_falls_back_to_since(api):
    await put_keys(api, "a", "b")
    async with open_stream(api, "/v1/stream?since=1", {"Last-Event-ID": "nope"}) as conn:
        (frame,) = await read_frames(conn, 1)
    assert frame["id"] == "2"


async def test_stream_filters_by_type_and_key_prefix(api):
    await put_keys(api, "user:1", "order:1", "user:2")
    await api.delete("/v1/state/user:1")
    async with open_stream(api, "/v1/stream?types=state_deleted,%20x") as conn:
        (frame,) = await read_frames(conn, 1)
    assert frame["event"] == "state_deleted" and frame["data"]["data"]["key"] == "user:1"
    async with open_stream(api, "/v1/stream?key_prefix=user:") as conn:
        frames = await read_frames(conn, 3)
    assert [f["data"]["data"]["key"] for f in frames] == ["user:1", "user:2", "user:1"]


async def test_legacy_events_maps_prefix_and_ignores_key_prefix(api):
    await put_keys(api, "user:1", "order:1", "order:2")
    async with open_stream(api, "/v1/events?prefix=order:&key_prefix=user:&collection=c") as conn:
        frames = await read_frames(conn, 2)
    assert [f["data"]["data"]["key"] for f in frames] == ["order:1", "order:2"]


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/events"])
@pytest.mark.parametrize("since", ["abc", "-1", "1.0", str(1 << 64)])
async def test_non_numeric_since_is_400(api, path, since):
    assert_error(await api.get(f"{path}?since={since}"), 400, "invalid_argument", field="since")


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/events"])
async def test_stream_needs_a_key_and_accepts_query_key(api, path):
    assert_error(await api.get(path, auth=False), 401, message="missing authorization header")
    await put_keys(api, "a")
    async with open_stream(api, f"{path}?api_key={API_KEY}", auth=False) as conn:
        (frame,) = await read_frames(conn, 1)
    assert frame["data"]["data"]["key"] == "a"


async def test_head_on_stream_sends_headers_and_subscribes_nothing(api):
    reply = await api.request("HEAD", "/v1/stream")
    assert reply.status_code == 200 and reply.content == b""
    assert reply.headers["content-type"] == "text/event-stream"
    assert await api.metric("sse_clients") == 0

"""`/v1/stream` and `/v1/events` at the HTTP layer: parameters, headers, start offset, cleanup.

The stream's own semantics (replay -> live hand-over, gaps, keep-alives) are tested against the
broadcaster (tests/actors) and a real server (tests/e2e/test_sse.py); here the route is driven
over a real socket by httpx. Streams are read until an expected frame, under `trio.fail_after`,
then disconnected, and the subscription must be gone afterwards.
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
    """One streaming response read chunk by chunk as it arrives; leaving the block closes the
    socket, as a client going away."""

    def __init__(self, response):
        self.status_code: int = response.status_code
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self._chunks = response.aiter_raw()

    async def receive(self) -> bytes:
        while True:
            chunk = await self._chunks.__anext__()
            if chunk:
                return chunk


@asynccontextmanager
async def open_stream(api, path: str, headers: dict | None = None, *, auth: bool = True):
    sent = {**(AUTH if auth else {}), **(headers or {})}
    with trio.fail_after(STREAM_TIMEOUT_S):
        request = api.client.build_request("GET", path, headers=sent)
        response = await api.client.send(request, stream=True)
    try:
        yield StreamConnection(response)
    finally:
        await response.aclose()


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


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/events"])
async def test_since_now_starts_at_the_current_end(api, path):
    await put_keys(api, "old:1", "old:2")
    async with open_stream(api, f"{path}?since=now") as conn:
        await wait_until(lambda: _gauge(api, "sse_clients", 1))  # subscribed: later writes are live
        await put_keys(api, "new:1")
        (frame,) = await read_frames(conn, 1)
    assert frame["id"] == "3" and frame["data"]["data"]["key"] == "new:1"


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


async def test_a_revoked_keys_stream_ends_before_any_later_event(api):
    """Regression: a stream opened with a read key kept receiving events after the key was
    revoked (204)."""
    made = (await api.post("/v1/auth/keys", json={"name": "reader", "role": "read"})).json()
    await put_keys(api, "before")
    async with open_stream(api, "/v1/stream?since=0", {"Authorization": f"Bearer {made['key']}"},
                           auth=False) as conn:
        (frame,) = await read_frames(conn, 1)
        assert frame["data"]["data"]["key"] == "before"
        assert (await api.delete(f"/v1/auth/keys/{made['id']}")).status_code == 204
        await put_keys(api, "after")
        rest = b""
        with trio.fail_after(STREAM_TIMEOUT_S):
            try:
                while True:
                    rest += await conn.receive()
            except StopAsyncIteration:
                pass  # the server ended the response
        assert b"after" not in rest
    await wait_until(lambda: _gauge(api, "sse_clients", 0))
    reply = await api.request("HEAD", "/v1/stream", headers={"Authorization": f"Bearer {made['key']}"}, auth=False)
    assert reply.status_code == 401


async def test_open_streams_per_key_are_capped(make_api):
    async with make_api(max_streams_per_key=2) as api:
        async with open_stream(api, "/v1/stream") as one, open_stream(api, "/v1/stream") as two:
            assert one.status_code == two.status_code == 200
            assert_error(await api.get("/v1/stream"), 429, "too_many_requests")
            other = (await api.post("/v1/auth/keys", json={"name": "r", "role": "read"})).json()["key"]
            async with open_stream(api, "/v1/stream", {"Authorization": f"Bearer {other}"}, auth=False) as three:
                assert three.status_code == 200
        await wait_until(lambda: _gauge(api, "sse_clients", 0))
        async with open_stream(api, "/v1/stream") as again:
            assert again.status_code == 200


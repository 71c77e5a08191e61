"""The change stream, end to end, against a real server (contract §4, issue 2 "SSE").

- Replay from 0 hands over to the live tail while writers run; a client that disconnects and
  reconnects with Last-Event-ID (or `?since=`) sees every offset exactly once and in order, and
  the events are exactly the writes the writers saw acknowledged (the PUT response does not carry
  the offset, so events are matched to acks: N acknowledged writes -> N events, in each writer's
  order, with the acknowledged revisions).
- Filters (`types`, `key_prefix`, legacy `/v1/events?prefix=`) hold on replay and on the tail.
- `gap` is the first frame when the requested offsets were removed by retention, and it
  bypasses filters.

Streams are read until a sentinel write that the stream must show last, so no test waits for
"nothing more arrives". Every wait is under trio.fail_after.
"""

from __future__ import annotations

import json
import random
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

import httpx
import pytest
import trio

from .server import ServerProcess

TEST_TIMEOUT_S = 60.0


# ---- a small SSE reader ------------------------------------------------------------------------


@dataclass
class Frame:
    event: str | None
    id: str | None
    data: str

    def json(self) -> dict:
        return json.loads(self.data)


class SseParser:
    """Bytes in, frames out (WHATWG event-stream rules we rely on): `field:value` or
    `field: value` (one leading space dropped), `:comment` lines ignored, blank line ends a
    frame, several `data:` lines join with newlines, a frame without data is not dispatched."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._id: str | None = None
        self._data: list[str] = []
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames: list[Frame] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return frames
            raw, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8")
            if line == "":
                if self._data:
                    frames.append(Frame(self._event, self._id, "\n".join(self._data)))
                self._event, self._id, self._data = None, None, []
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "event":
                self._event = value
            elif name == "id":
                self._id = value
            elif name == "data":
                self._data.append(value)


def test_parser_accepts_both_spacings_and_skips_comments():
    parser = SseParser()
    frames = parser.feed(b"event:a\nid:1\ndata:{}\n\n:keepalive\n\nevent: b\r\nid: 2\r\ndata: [1]\r\n\r\nevent:c\n")
    assert frames == [Frame("a", "1", "{}"), Frame("b", "2", "[1]")]
    assert parser.comments == 1
    assert parser.feed(b"data:x\n\n") == [Frame("c", None, "x")]


class FrameReader:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_raw()
        self._parser = SseParser()
        self._ready: deque[Frame] = deque()

    async def next(self) -> Frame:
        while not self._ready:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                raise AssertionError("the server ended the event stream") from None
            self._ready.extend(self._parser.feed(chunk))
        return self._ready.popleft()


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, path: str = "/v1/stream", params: dict | None = None,
    last_event_id: int | None = None,
) -> AsyncIterator[FrameReader]:
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    async with client.stream("GET", path, params=params, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers.get("cache-control") == "no-cache"
        yield FrameReader(response)


def check_event_frame(frame: Frame) -> dict:
    """An EventRecord frame: event name = type, id = offset, data = the record."""
    assert frame.event is not None and frame.id is not None, frame
    record = frame.json()
    assert set(record) == {"offset", "ts_ms", "type", "data"}, record
    assert frame.event == record["type"], frame
    assert frame.id == str(record["offset"]), frame
    assert isinstance(record["ts_ms"], int) and record["ts_ms"] > 1_600_000_000_000, record
    return record


def http_client(server: ServerProcess) -> httpx.AsyncClient:
    # No read timeout on the client: a tailing stream is idle between events. Every test bounds
    # its waits with trio.fail_after instead.
    return httpx.AsyncClient(base_url=server.base_url, headers=server.headers,
                             timeout=httpx.Timeout(10.0, read=None))


# ---- writers that record what was acknowledged ---------------------------------------------------


@dataclass
class Expected:
    """Events the acks imply, per writer, in the writer's order: (type, key, revision|None, value)."""

    events: dict[str, list[tuple]] = field(default_factory=dict)
    total: int = 0
    ops_done: int = 0
    subscribe_after_ops: int = 0
    enough_for_replay: trio.Event = field(default_factory=trio.Event)

    def add(self, writer: str, event: tuple) -> None:
        self.events.setdefault(writer, []).append(event)
        self.total += 1


async def run_writer(client: httpx.AsyncClient, name: str, ops: int, rng: random.Random,
                     expected: Expected) -> None:
    """Puts, CAS puts, refused stale CAS puts and deletes on keys `sse/<name>/k*`, one at a time."""
    revisions: dict[str, int] = {}
    for seq in range(ops):
        key = f"sse/{name}/k{rng.randrange(6)}"
        roll = rng.random()
        if roll < 0.2:
            resp = await client.delete(f"/v1/state/{key}")
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"deleted": key in revisions}, (key, resp.text)
            if revisions.pop(key, None) is not None:
                expected.add(name, ("state_deleted", key, None, None))
        elif roll < 0.3 and key in revisions:
            resp = await client.put(f"/v1/state/{key}", json={"value": 1, "if_revision": revisions[key] + 5})
            assert resp.status_code == 409, resp.text  # refused: no event
        else:
            value = {"writer": name, "seq": seq, "nested": {"b": [1, 2.5, None], "a": "\u00e9"}}
            body: dict = {"value": value}
            if key in revisions and rng.random() < 0.5:
                body["if_revision"] = revisions[key]
            resp = await client.put(f"/v1/state/{key}", json=body)
            assert resp.status_code == 200, resp.text
            revisions[key] = resp.json()["revision"]
            expected.add(name, ("state_updated", key, revisions[key], value))
        expected.ops_done += 1
        if expected.ops_done >= expected.subscribe_after_ops:
            expected.enough_for_replay.set()


async def put_sentinel(client: httpx.AsyncClient, key: str, expected: Expected | None = None) -> None:
    resp = await client.put(f"/v1/state/{key}", json={"value": "end"})
    assert resp.status_code == 200, resp.text
    if expected is not None:
        expected.add(key.split("/")[1], ("state_updated", key, resp.json()["revision"], "end"))


def observed(records: list[dict]) -> dict[str, list[tuple]]:
    """Group stream records by writer (the second path segment of the key), in stream order."""
    by_writer: dict[str, list[tuple]] = {}
    for record in records:
        data = record["data"]
        key = data["key"]
        writer = key.split("/")[1]
        if record["type"] == "state_updated":
            assert data["expires_at_ms"] is None, record
            event = ("state_updated", key, data["revision"], data["value"])
        else:
            assert record["type"] == "state_deleted", record
            assert data["reason"] == "explicit", record
            event = ("state_deleted", key, None, None)
        by_writer.setdefault(writer, []).append(event)
    return by_writer


# ---- tests ---------------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    with ServerProcess(tmp_path / "data") as srv:
        yield srv


async def test_replay_then_tail_exactly_once_across_reconnects(server):
    """Subscribe from 0 after some writes (replay), keep reading while writers run (tail),
    reconnect three times (Last-Event-ID, ?since=, and Last-Event-ID beating ?since=0)."""
    rng = random.Random(20240601)
    writers = {f"w{i}": 150 for i in range(4)}
    expected = Expected(subscribe_after_ops=60)
    sentinel_key = "sse/zz/sentinel"
    records: list[dict] = []
    reconnects_at = sorted(rng.sample(range(40, 300), 3))
    modes = ["header", "since", "header-beats-since"]
    connections = 0

    async def write_everything(client):
        async with trio.open_nursery() as writers_nursery:
            for name, ops in writers.items():
                writers_nursery.start_soon(run_writer, client, name, ops, random.Random(rng.random()), expected)
        await put_sentinel(client, sentinel_key, expected)  # after every writer's last ack

    async with http_client(server) as client:
        with trio.fail_after(TEST_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_everything, client)
                await expected.enough_for_replay.wait()  # the first subscription starts in replay
                last_id: int | None = None
                done = False
                while not done:
                    params: dict = {}
                    header = None
                    if last_id is None:
                        params = {"since": 0}
                    else:
                        mode = modes.pop(0) if modes else "header"
                        if mode == "since":
                            params = {"since": last_id}
                        elif mode == "header-beats-since":
                            params, header = {"since": 0}, last_id
                        else:
                            header = last_id
                    connections += 1
                    async with open_stream(client, params=params, last_event_id=header) as stream:
                        while True:
                            record = check_event_frame(await stream.next())
                            records.append(record)
                            last_id = record["offset"]
                            if record["data"].get("key") == sentinel_key:
                                done = True
                                break
                            if reconnects_at and len(records) >= reconnects_at[0]:
                                reconnects_at.pop(0)
                                break  # disconnect mid-stream, come back from last_id

    assert connections == 4, f"expected 3 reconnects, made {connections - 1}"
    offsets = [r["offset"] for r in records]
    # every offset exactly once, in order, no gaps (a fresh server: offsets are 1..N)
    assert offsets == list(range(1, len(offsets) + 1)), _first_mismatch(offsets)
    assert len(records) == expected.total, (len(records), expected.total)
    # and they are exactly the acknowledged writes, in each writer's order
    assert observed(records) == expected.events


def _first_mismatch(offsets: list[int]) -> str:
    for i, offset in enumerate(offsets):
        if offset != i + 1:
            return f"at position {i}: got offset {offset}, expected {i + 1}; around: {offsets[max(0, i - 3):i + 4]}"
    return "ok"


async def test_filters_hold_on_replay_and_tail(server):
    """types / key_prefix / legacy prefix filters, subscribed before the writes (tail) and after
    them (replay). Each stream is read until its own sentinel, which comes after every write."""
    rng = random.Random(7)
    expected = Expected()
    filters = {
        "deletes": ("/v1/stream", {"types": "state_deleted"}),
        "w1": ("/v1/stream", {"key_prefix": "sse/w1/"}),
        "w2-updates": ("/v1/stream", {"types": " state_updated , no_such_type", "key_prefix": "sse/w2/"}),
        "legacy-w3": ("/v1/events", {"prefix": "sse/w3/"}),
    }

    def wanted(name: str, event: tuple) -> bool:
        type_, key = event[0], event[1]
        return {
            "deletes": type_ == "state_deleted",
            "w1": key.startswith("sse/w1/"),
            "w2-updates": type_ == "state_updated" and key.startswith("sse/w2/"),
            "legacy-w3": key.startswith("sse/w3/"),
        }[name]

    def sentinel_of(name: str) -> tuple[str, str]:  # (type, key) of the event that ends the stream
        return {
            "deletes": ("state_deleted", "sse/zz/deleted-last"),
            "w1": ("state_updated", "sse/w1/~end"),
            "w2-updates": ("state_updated", "sse/w2/~end"),
            "legacy-w3": ("state_updated", "sse/w3/~end"),
        }[name]

    results: dict[str, list[dict]] = {}

    async def read_until_sentinel(client, label: str, name: str, since: int | None, ready: trio.Event):
        path, params = filters[name]
        params = dict(params)
        if since is not None:
            params["since"] = since
        async with open_stream(client, path, params) as stream:
            ready.set()
            got: list[dict] = []
            while True:
                record = check_event_frame(await stream.next())
                if (record["type"], record["data"].get("key")) == sentinel_of(name):
                    break
                got.append(record)
        results[label] = got

    async with http_client(server) as client:
        with trio.fail_after(TEST_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                # tail subscribers, connected before any write
                for name in filters:
                    ready = trio.Event()
                    nursery.start_soon(read_until_sentinel, client, f"tail:{name}", name, None, ready)
                    await ready.wait()
                async with trio.open_nursery() as writers_nursery:
                    for i in range(4):
                        writers_nursery.start_soon(run_writer, client, f"w{i}", 80, random.Random(rng.random()), expected)
                # replay subscribers, from 0, connected after the writes
                for name in filters:
                    ready = trio.Event()
                    nursery.start_soon(read_until_sentinel, client, f"replay:{name}", name, 0, ready)
                    await ready.wait()
                # sentinels last: every filtered stream ends on its own
                await put_sentinel(client, "sse/w1/~end")
                await put_sentinel(client, "sse/w2/~end")
                await put_sentinel(client, "sse/w3/~end")
                await put_sentinel(client, "sse/zz/deleted-last")
                resp = await client.delete("/v1/state/sse/zz/deleted-last")
                assert resp.json() == {"deleted": True}

    for label, got in results.items():
        name = label.split(":", 1)[1]
        want = [e for writer in sorted(expected.events) for e in expected.events[writer] if wanted(name, e)]
        offsets = [r["offset"] for r in got]
        assert offsets == sorted(set(offsets)), f"{label}: offsets out of order or repeated"
        assert all(wanted(name, e) for events in observed(got).values() for e in events), f"{label}: filter leaked"
        got_by_writer = observed(got)
        want_by_writer: dict[str, list[tuple]] = {}
        for writer, events in expected.events.items():
            kept = [e for e in events if wanted(name, e)]
            if kept:
                want_by_writer[writer] = kept
        assert got_by_writer == want_by_writer, f"{label}: {len(got)} events, expected {len(want)}"
    assert len(results) == 2 * len(filters)


BIG_VALUE_CHARS = 60_000  # ~60 KiB of JSON per put, under MAX_JSON_BYTES (65536)


async def test_gap_when_retention_removed_requested_offsets(tmp_path):
    """Tiny segments, keep one, checkpoint every second: old segments go, and a subscriber from
    0 gets `gap` first (no id line, from_offset 1), then the oldest retained event onwards."""
    # The default in-memory ring still holds every event written here; retention is the WAL's,
    # so offsets whose segment is gone are a gap even while the ring remembers them.
    env = {"WAL_SEGMENT_MAX_BYTES": str(1 << 20), "WAL_RETENTION_SEGMENTS": "1",
           "WAL_RETENTION_MIN_SECS": "0", "SNAPSHOT_INTERVAL_SECS": "1"}
    with ServerProcess(tmp_path / "data", env=env) as server:
        async with http_client(server) as client:
            with trio.fail_after(TEST_TIMEOUT_S):
                written = 0

                async def put_big():
                    nonlocal written
                    written += 1
                    resp = await client.put(f"/v1/state/big/{written:05d}",
                                            json={"value": {"n": written, "blob": "b" * BIG_VALUE_CHARS}})
                    assert resp.status_code == 200, resp.text

                for _ in range(80):  # ~4.8 MB: about five 1 MiB segments
                    await put_big()

                # Checkpoints run every second and retention follows them: wait for the server
                # to report that the segment holding offset 1 is gone.
                await trio.to_thread.run_sync(
                    server.wait_for_log, lambda line: "retention removed" in line and "(offsets 1.." in line,
                    TEST_TIMEOUT_S, "WAL retention removing the segment of offset 1")
                async with open_stream(client, params={"since": 0}) as stream:
                    first = await stream.next()
                assert first.event == "gap", first

                # The gap frame: no id line (it must not move Last-Event-ID), exact fields.
                assert first.id is None, first
                gap = first.json()
                assert set(gap) == {"from_offset", "to_offset", "dropped"}, gap
                assert gap["from_offset"] == 1, gap
                assert gap["to_offset"] >= gap["from_offset"], gap
                assert gap["dropped"] == gap["to_offset"] - gap["from_offset"] + 1, gap
                assert gap["to_offset"] < written, gap

                # After the gap: from the oldest retained event, contiguous, up to the last write.
                await put_sentinel(client, "big/~end")
                async with open_stream(client, params={"since": 0}) as stream:
                    frame = await stream.next()
                    assert frame.event == "gap", frame
                    gap = frame.json()
                    expect = gap["to_offset"] + 1
                    while True:
                        record = check_event_frame(await stream.next())
                        assert record["offset"] == expect, (record["offset"], expect, gap)
                        expect += 1
                        if record["data"]["key"] == "big/~end":
                            break
                    assert record["offset"] == written + 1  # every put was one event, from 1

                # `gap` bypasses filters, and Last-Event-ID inside the dropped range starts there.
                async with open_stream(client, params={"since": 0, "types": "state_deleted"}) as stream:
                    frame = await stream.next()
                    assert frame.event == "gap", frame
                    assert frame.json()["from_offset"] == 1
                async with open_stream(client, last_event_id=2) as stream:
                    frame = await stream.next()
                    assert frame.event == "gap", frame
                    inner = frame.json()
                    assert inner["from_offset"] == 3, inner
                    assert inner["dropped"] == inner["to_offset"] - 2, inner
                    record = check_event_frame(await stream.next())
                    assert record["offset"] == inner["to_offset"] + 1

        # After a restart the ring is empty: the same request still starts with the same hole.
        assert server.stop() == 0
        server.start()
        async with http_client(server) as client:
            with trio.fail_after(TEST_TIMEOUT_S):
                async with open_stream(client, params={"since": 0}) as stream:
                    frame = await stream.next()
                    assert frame.event == "gap" and frame.id is None, frame
                    again = frame.json()
                    assert again["from_offset"] == 1, again
                    record = check_event_frame(await stream.next())
                    assert record["offset"] == again["to_offset"] + 1, (record["offset"], again)

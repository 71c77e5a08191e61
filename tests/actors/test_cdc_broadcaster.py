"""The CDC broadcaster over a real WalLog: replay -> live hand-over, catch-up, gaps, close.

Policy: real WAL files in tmp_path (fsync off, it changes nothing here), `fail_after` on every
test that touches threads, `autojump_clock` only where no thread runs. Nothing sleeps to wait:
the producer yields with checkpoints or `wait_all_tasks_blocked`.
"""

from __future__ import annotations

import random
import time

import orjson
import pytest
import trio
import trio.testing

import kissvdb.actors.cdc as cdc_actor
from kissvdb.actors.cdc import Broadcaster
from kissvdb.cdc import KEEPALIVE, EventFilter
from kissvdb.events import EventRecord, Float32Array, RawJson, encode_payload
from kissvdb.wal.log import WalLog

IO_TIMEOUT_S = 30
EVERYTHING = EventFilter()


# --- helpers -----------------------------------------------------------------------------------


def open_wal(tmp_path, *, segment_max_bytes: int = 1 << 20) -> WalLog:
    return WalLog.open(tmp_path / "wal", segment_max_bytes=segment_max_bytes, fsync=False)


def event(i: int) -> tuple[int, str, dict]:
    """Event number i: mostly KV puts on `k:`/`j:` keys, every fifth a vector added."""
    ts = 1767000000000 + i
    if i % 5 == 0:
        vector = Float32Array(bytes(4) * 3)
        return ts, "vector_added", {"collection": "c", "id": str(i), "vector": vector, "meta": None}
    key = f"k:{i}" if i % 2 else f"j:{i}"
    return ts, "state_updated", {
        "key": key,
        "revision": 1,
        "value": RawJson(b'{"i":%d}' % i),
        "expires_at_ms": None,
    }


def append(wal, count: int) -> list[EventRecord]:
    """Append `count` events, make them durable, and return them as the WAL writer would."""
    base = wal.next_offset
    events = [event(base + j) for j in range(count)]
    first, last = wal.append([encode_payload(*e) for e in events])
    wal.sync()
    assert (first, last) == (base, base + count - 1)
    return [EventRecord(first + j, *events[j]) for j in range(count)]


def frames(chunk: bytes) -> list[dict]:
    """Parse SSE frames: [{"event": .., "id": int|None, "data": dict}] (keep-alives skipped)."""
    out = []
    assert chunk.endswith(b"\n\n"), chunk[-40:]
    for block in chunk[:-2].split(b"\n\n"):
        if block.startswith(b":"):
            continue
        fields = dict(line.split(b":", 1) for line in block.split(b"\n"))
        out.append(
            {
                "event": fields[b"event"].decode(),
                "id": int(fields[b"id"]) if b"id" in fields else None,
                "data": orjson.loads(fields[b"data"]),
            }
        )
    return out


async def read_until(subscription, last_offset: int) -> list[dict]:
    """Frames from `subscription` until it has delivered `last_offset` (or it ends)."""
    got = []
    async for chunk in subscription:
        got.extend(frames(chunk))
        if subscription.last_offset >= last_offset:
            break
    return got


def offsets(got: list[dict]) -> list[int]:
    return [f["id"] for f in got if f["event"] != "gap"]


# --- replay and live tail ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [7, 8, 9, 10])
async def test_replay_then_live_tail_delivers_every_offset_once_in_order(tmp_path, seed):
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=64, batch_max=16)
    append(wal, 300)  # history before boot: only in the WAL
    broadcaster.set_durable_offset(wal.last_offset)
    total = 3000
    rng = random.Random(seed)

    async def produce():
        # Publishes in bursts, some larger than the ring; sometimes lets every subscriber drain
        # first (live tail), sometimes runs far ahead of the ring (catch-up from the log while
        # the producer continues), evicting entries a subscriber was about to take.
        while wal.next_offset <= total:
            broadcaster.publish(append(wal, min(rng.randint(1, 100), total - wal.last_offset)))
            if rng.random() < 0.3:
                await trio.testing.wait_all_tasks_blocked()
            else:
                await trio.lowlevel.checkpoint()

    results = {}

    async def consume(name, since, flt):
        async with broadcaster.subscribe(since, flt) as sub:
            results[name] = await read_until(sub, total)

    with trio.fail_after(IO_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume, "all", 0, EVERYTHING)
            nursery.start_soon(consume, "late", 1234, EVERYTHING)
            nursery.start_soon(consume, "vectors", 0, EventFilter(collection="c"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(produce)

    assert offsets(results["all"]) == list(range(1, total + 1)), f"seed {seed}"
    assert offsets(results["late"]) == list(range(1235, total + 1)), f"seed {seed}"
    assert offsets(results["vectors"]) == list(range(5, total + 1, 5)), f"seed {seed}"
    # The JSON is the record's, not just the id.
    first = results["all"][0]
    assert first["data"] == {
        "offset": 1,
        "ts_ms": 1767000000001,
        "type": "state_updated",
        "data": {"expires_at_ms": None, "key": "k:1", "revision": 1, "value": {"i": 1}},
    }
    assert results["vectors"][0]["data"]["data"]["vector"] == [0.0, 0.0, 0.0]
    stats = broadcaster.statistics()
    assert stats.log_reads_total > 0 and stats.gaps_total == 0
    assert stats.published_total == total - 300 and stats.ring_len == 64
    assert stats.subscribers == 0
    wal.close()


async def test_a_subscriber_far_behind_the_ring_catches_up_from_the_log(tmp_path):
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=4, batch_max=50)
    with trio.fail_after(IO_TIMEOUT_S):
        async with broadcaster.subscribe(0, EVERYTHING) as sub:
            broadcaster.publish(append(wal, 10))
            got = frames(await sub.__anext__())  # from the ring? no: 10 > 4, from the log
            broadcaster.publish(append(wal, 1000))  # the subscriber is now ~1000 behind a ring of 4
            got += await read_until(sub, 1010)
            assert sub.last_offset == 1010 and sub.next_offset == 1011
            # Caught up: the next event comes live from the ring.
            broadcaster.publish(append(wal, 1))
            got += frames(await sub.__anext__())
    assert offsets(got) == list(range(1, 1012))
    stats = broadcaster.statistics()
    assert stats.log_reads_total >= 1000 // 50 and stats.gaps_total == 0
    wal.close()


async def test_filters_apply_to_replay_and_live(tmp_path):
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=20, batch_max=7)
    append(wal, 100)
    broadcaster.set_durable_offset(100)
    flt = EventFilter.from_query("state_updated", "k:", None)
    expected = [i for i in range(1, 201) if i % 5 and i % 2]
    with trio.fail_after(IO_TIMEOUT_S):
        async with broadcaster.subscribe(0, flt) as sub:
            got = await read_until(sub, 99)  # replay, from the log
            broadcaster.publish(append(wal, 100))
            got += await read_until(sub, expected[-1])  # live, from the ring
            assert sub.last_offset == 199
    assert offsets(got) == expected
    assert {f["event"] for f in got} == {"state_updated"}
    assert all(f["data"]["data"]["key"].startswith("k:") for f in got)
    wal.close()


async def test_types_empty_matches_nothing_but_keepalive_still_flows(tmp_path, autojump_clock):
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=100, keepalive_s=15.0)
    async with broadcaster.subscribe(0, EventFilter.from_query("", None, None)) as sub:
        broadcaster.publish(append(wal, 50))
        start = trio.current_time()
        assert await sub.__anext__() == KEEPALIVE
        assert trio.current_time() - start == pytest.approx(15.0)
        assert sub.next_offset == 51 and sub.last_offset == 0
    wal.close()


async def test_keepalive_after_silence_and_reset_by_traffic(tmp_path, mock_clock):
    # The clock only moves when the test jumps it, so "15 s of silence" is exact and instant.
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=100, keepalive_s=15.0)
    send, received = trio.open_memory_channel(100)

    async def forward(sub):
        async for chunk in sub:
            await send.send(chunk)

    async def after(seconds: float) -> list:
        """Jump the clock, let the subscriber run, return what it sent meanwhile."""
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(seconds)
        await trio.testing.wait_all_tasks_blocked()
        out = []
        while True:
            try:
                out.append(received.receive_nowait())
            except trio.WouldBlock:
                return out

    async with broadcaster.subscribe(0, EventFilter(types=frozenset({"state_updated"}))) as sub:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward, sub)
            assert await after(14.9) == []
            assert await after(0.1) == [KEEPALIVE]  # 15 s of silence
            assert await after(10) == []
            broadcaster.publish(append(wal, 1))  # offset 1: a state_updated, delivered
            assert [offsets(frames(c)) for c in await after(0)] == [[1]]
            assert await after(5) == []
            broadcaster.publish(append(wal, 4))  # offsets 2..5; 5 is a vector, filtered out
            assert [offsets(frames(c)) for c in await after(0)] == [[2, 3, 4]]
            assert await after(5) == []
            broadcaster.publish(append(wal, 1))  # offset 6
            assert [offsets(frames(c)) for c in await after(0)] == [[6]]
            # Silence counts from the last chunk sent (the filtered vector at 5 sent nothing).
            assert await after(14.9) == []
            assert await after(0.1) == [KEEPALIVE]
            nursery.cancel_scope.cancel()
    wal.close()


# --- gaps (retention) --------------------------------------------------------------------------


def drop_old_segments(wal) -> int:
    """Let retention remove every closed segment; return the first retained offset."""
    removed = wal.retain(wal.last_offset, 0, 0, 0, time.time() + 3600)
    assert removed
    return wal.first_offset


async def test_gap_at_start_when_retention_removed_the_requested_offsets(tmp_path):
    wal = open_wal(tmp_path, segment_max_bytes=512)
    broadcaster = Broadcaster(wal, ring_size=8)
    append(wal, 200)
    broadcaster.set_durable_offset(200)
    first = drop_old_segments(wal)
    # Retention dropped the oldest offsets but kept the newest segment.
    assert first > 1, first
    assert first <= wal.last_offset, (first, wal.last_offset)
    with trio.fail_after(IO_TIMEOUT_S):
        async with broadcaster.subscribe(0, EVERYTHING) as sub:
            got = await read_until(sub, 200)
        async with broadcaster.subscribe(first - 1, EVERYTHING) as sub:
            exact = await read_until(sub, 200)
    gap = got[0]
    assert gap == {
        "event": "gap",
        "id": None,
        "data": {"dropped": first - 1, "from_offset": 1, "to_offset": first - 1},
    }
    assert offsets(got[1:]) == list(range(first, 201))
    assert [f["event"] for f in got[1:]].count("gap") == 0
    # Starting at the oldest retained event loses nothing, so there is no gap.
    assert offsets(exact) == list(range(first, 201)) and exact[0]["event"] != "gap"
    assert broadcaster.statistics().gaps_total == 1
    wal.close()


async def test_gap_bypasses_filters(tmp_path):
    wal = open_wal(tmp_path, segment_max_bytes=512)
    broadcaster = Broadcaster(wal, ring_size=8)
    append(wal, 100)
    broadcaster.set_durable_offset(100)
    first = drop_old_segments(wal)
    with trio.fail_after(IO_TIMEOUT_S):
        async with broadcaster.subscribe(0, EventFilter.from_query("", None, None)) as sub:
            got = frames(await sub.__anext__())
    assert got == [
        {"event": "gap", "id": None,
         "data": {"dropped": first - 1, "from_offset": 1, "to_offset": first - 1}}
    ]
    wal.close()


async def test_gap_mid_stream_when_a_subscriber_falls_behind_retention(tmp_path):
    wal = open_wal(tmp_path, segment_max_bytes=512)
    broadcaster = Broadcaster(wal, ring_size=4, batch_max=10)
    with trio.fail_after(IO_TIMEOUT_S):
        async with broadcaster.subscribe(0, EVERYTHING) as sub:
            broadcaster.publish(append(wal, 30))
            got = await read_until(sub, 10)
            assert sub.next_offset == 11 and offsets(got) == list(range(1, 11))
            # The subscriber stalls while history grows and retention drops its position.
            broadcaster.publish(append(wal, 300))
            first = drop_old_segments(wal)
            assert first > 11
            rest = await read_until(sub, 330)
    assert rest[0] == {
        "event": "gap",
        "id": None,
        "data": {"dropped": first - 11, "from_offset": 11, "to_offset": first - 1},
    }
    assert offsets(rest[1:]) == list(range(first, 331))
    assert broadcaster.statistics().gaps_total == 1
    wal.close()


# --- close, subscribe edge cases, publish rules -------------------------------------------------


async def test_close_ends_every_iteration(tmp_path):
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=16)
    ended = []

    async def consume(name):
        async with broadcaster.subscribe(0, EVERYTHING) as sub:
            async for chunk in sub:
                pass
        ended.append(name)

    with trio.fail_after(IO_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume, "a")
            nursery.start_soon(consume, "b")
            await trio.testing.wait_all_tasks_blocked()
            broadcaster.publish(append(wal, 3))
            await trio.testing.wait_all_tasks_blocked()
            assert broadcaster.statistics().subscribers == 2
            await broadcaster.aclose()
    assert sorted(ended) == ["a", "b"]
    assert broadcaster.statistics().subscribers == 0
    # Born closed after shutdown; publishing still works for the draining WAL writer.
    late = broadcaster.subscribe(0, EVERYTHING)
    with pytest.raises(StopAsyncIteration):
        await late.__anext__()
    broadcaster.publish(append(wal, 1))
    assert broadcaster.durable_offset == 4
    wal.close()


async def test_closing_one_subscription_wakes_only_its_iteration(tmp_path, autojump_clock):
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=16, keepalive_s=1000.0)
    keep = broadcaster.subscribe(0, EVERYTHING)
    stop = broadcaster.subscribe(0, EVERYTHING)
    async with trio.open_nursery() as nursery:

        async def drain(sub):
            async for _ in sub:
                pass

        nursery.start_soon(drain, stop)
        await trio.testing.wait_all_tasks_blocked()
        await stop.aclose()
        await trio.testing.wait_all_tasks_blocked()
    assert broadcaster.statistics().subscribers == 1
    broadcaster.publish(append(wal, 1))
    assert offsets(frames(await keep.__anext__())) == [1]
    keep.close()
    with pytest.raises(StopAsyncIteration):
        await keep.__anext__()
    wal.close()


async def test_since_in_the_future_and_offset_holes():
    broadcaster = Broadcaster(None, ring_size=16)  # never reads the log: all in the ring
    ts, type_, data = event(1)
    published = [EventRecord(o, ts, type_, data) for o in (1, 2, 3, 10, 11, 12)]
    future = broadcaster.subscribe(10, EVERYTHING)
    broadcaster.publish(published[:3])
    broadcaster.publish(published[3:])
    assert offsets(frames(await future.__anext__())) == [11, 12]
    after_hole = broadcaster.subscribe(5, EVERYTHING)
    assert offsets(frames(await after_hole.__anext__())) == [10, 11, 12]
    before_hole = broadcaster.subscribe(2, EVERYTHING)
    assert offsets(frames(await before_hole.__anext__())) == [3, 10, 11, 12]


async def test_publish_refuses_offsets_that_do_not_increase():
    broadcaster = Broadcaster(None, ring_size=4)
    ts, type_, data = event(1)
    broadcaster.publish([EventRecord(1, ts, type_, data)])
    for bad in ([EventRecord(1, ts, type_, data)],
                [EventRecord(3, ts, type_, data), EventRecord(2, ts, type_, data)]):
        with pytest.raises(ValueError):
            broadcaster.publish(bad)
    assert broadcaster.durable_offset == 1
    assert broadcaster.statistics().published_total == 1
    with pytest.raises(RuntimeError):
        broadcaster.set_durable_offset(5)


async def test_json_is_encoded_once_per_event_and_only_when_someone_listens(monkeypatch):
    calls = []
    real = cdc_actor.event_json

    def counting(record):
        calls.append(record.offset)
        return real(record)

    monkeypatch.setattr(cdc_actor, "event_json", counting)
    broadcaster = Broadcaster(None, ring_size=64)
    ts, type_, data = event(1)
    broadcaster.publish([EventRecord(o, ts, type_, data) for o in range(1, 11)])
    assert calls == []  # nobody subscribed: nothing encoded

    subs = [broadcaster.subscribe(5, EVERYTHING) for _ in range(3)]
    chunks = [await sub.__anext__() for sub in subs]
    assert chunks[0] == chunks[1] == chunks[2]
    assert calls == [6, 7, 8, 9, 10]  # shared by the three subscribers


# --- ownership: revocation and caps --------------------------------------------------------------


async def test_revoke_ends_the_owners_streams_before_any_later_event(tmp_path):
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=64)
    broadcaster.publish(append(wal, 3))
    mine = broadcaster.subscribe(0, EVERYTHING, owner="key-a")
    theirs = broadcaster.subscribe(0, EVERYTHING, owner="key-b")
    with trio.fail_after(IO_TIMEOUT_S):
        assert offsets(await read_until(mine, 3)) == [1, 2, 3]
        assert offsets(await read_until(theirs, 3)) == [1, 2, 3]

        async def blocked_reader():
            return [chunk async for chunk in mine]

        results = []

        async def run():
            results.append(await blocked_reader())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked()  # the reader waits for the next event
            assert broadcaster.revoke("key-a") == 1
            broadcaster.publish(append(wal, 2))  # written after the revocation
        assert results == [[]]  # ended, and never saw offsets 4-5
        assert offsets(await read_until(theirs, 5)) == [4, 5]  # others are untouched
    assert broadcaster.revoke("key-a") == 0
    assert broadcaster.statistics().subscribers == 1


async def test_revoke_drops_a_chunk_read_before_it(tmp_path):
    """A revocation landing while a subscriber is between reads ends it at the next step."""
    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=64)
    sub = broadcaster.subscribe(0, EVERYTHING, owner="k")
    broadcaster.publish(append(wal, 2))
    broadcaster.revoke("k")
    with trio.fail_after(IO_TIMEOUT_S):
        assert [chunk async for chunk in sub] == []


async def test_an_owner_holds_at_most_its_cap_of_streams(tmp_path):
    from kissvdb.errors import TooManyRequests

    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=64)
    first = broadcaster.subscribe(0, EVERYTHING, owner="k", owner_max=2)
    broadcaster.subscribe(0, EVERYTHING, owner="k", owner_max=2)
    with pytest.raises(TooManyRequests):
        broadcaster.subscribe(0, EVERYTHING, owner="k", owner_max=2)
    broadcaster.subscribe(0, EVERYTHING, owner="other", owner_max=2)
    first.close()
    broadcaster.subscribe(0, EVERYTHING, owner="k", owner_max=2)
    assert broadcaster.statistics().subscribers == 3  # two of k, one of other


async def test_replays_from_the_log_are_capped_and_a_caught_up_one_frees_its_place(tmp_path):
    from kissvdb.errors import Overloaded

    wal = open_wal(tmp_path)
    broadcaster = Broadcaster(wal, ring_size=16, batch_max=16)
    broadcaster.publish(append(wal, 100))  # offsets 1..84 are only in the log now
    replay = broadcaster.subscribe(0, EVERYTHING, replays_max=1)
    assert replay.replaying
    with pytest.raises(Overloaded):
        broadcaster.subscribe(0, EVERYTHING, replays_max=1)
    live = broadcaster.subscribe(broadcaster.durable_offset, EVERYTHING, replays_max=1)
    assert not live.replaying  # a stream starting in the ring is not a replay
    with trio.fail_after(IO_TIMEOUT_S):
        assert offsets(await read_until(replay, 100)) == list(range(1, 101))
    assert not replay.replaying
    broadcaster.subscribe(0, EVERYTHING, replays_max=1).close()

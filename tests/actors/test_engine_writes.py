"""The write path through real actors, a real WAL and a real state.sqlite.

Group commit, overload, an actor crash and restart, a draining shutdown, and the two disk
failures (write() failing with ENOSPC, fsync failing). Faults are injected only at the OS edge
(os.fdatasync / os.write style calls), never by mocking our own storage.
"""

import errno
import os
import types

import orjson
import pytest
import trio
import trio.testing

from kissvdb.config import Settings
from kissvdb.errors import NotFound, Overloaded, PersistenceError, Unavailable
from kissvdb.events import RawJson
from kissvdb.kv.state import Put

from kissvdb.actors.boot import open_engine
from kissvdb.actors.mailbox import Request


def raw(value) -> RawJson:
    return RawJson(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def settings(tmp_path, **kw) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), **kw)


async def test_put_get_delete_roundtrip(tmp_path):
    with trio.fail_after(20):
        async with open_engine(settings(tmp_path)) as engine:
            item = await engine.kv_put("a", raw({"x": 1}))
            assert (item.key, item.revision, item.expires_at_ms) == ("a", 1, None)
            assert item.mod_offset == engine.durable_offset
            got = await engine.kv_get("a")
            assert bytes(got.value) == b'{"x":1}' and got.revision == 1
            assert (await engine.kv_put("a", raw(2), if_revision=1)).revision == 2
            assert await engine.kv_delete("a") is True
            assert await engine.kv_delete("a") is False
            with pytest.raises(NotFound):
                await engine.kv_get("a")
        async with open_engine(settings(tmp_path)) as engine:
            with pytest.raises(NotFound):
                await engine.kv_get("a")
            assert engine.durable_offset == 3


async def test_group_commit_shares_fsyncs(tmp_path):
    """64 concurrent writers with a 5 ms fsync commit many writes per fsync."""
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path), fsync_delay_s=0.005) as engine:
            async def writer(w):
                for i in range(10):
                    await engine.kv_put(f"w{w}:{i}", raw("x" * 100))

            async with trio.open_nursery() as nursery:
                for w in range(64):
                    nursery.start_soon(writer, w)
            stats = engine.writer.statistics()
            assert stats.records_total == 640
            assert stats.records_total / stats.fsync_total >= 10, stats
            listed = await engine.kv_list("w", 1000)
            assert len(listed) == 640


async def test_overload_answers_before_queueing_and_writes_nothing(tmp_path):
    s = settings(tmp_path, inbox_requests_max=1)
    with trio.fail_after(60):
        async with open_engine(s, fsync_delay_s=0.2) as engine:
            acked, refused = [], []

            async def put(i):
                try:
                    await engine.kv_put(f"k{i}", raw(i))
                    acked.append(i)
                except Overloaded:
                    refused.append(i)

            async with trio.open_nursery() as nursery:
                for i in range(150):  # more than the actor takes in one wake-up (64) + its inbox
                    nursery.start_soon(put, i)
            assert refused, "a 1-slot inbox behind a slow disk must refuse some writes"
            assert acked
            present = {item.key for item in await engine.kv_list("k", 1000)}
            assert present == {f"k{i}" for i in acked}


async def test_actor_crash_restarts_from_checkpoint_and_wal(tmp_path):
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as engine:
            for i in range(50):
                await engine.kv_put(f"k{i}", raw(i))
            await engine.checkpoint()
            for i in range(50, 80):
                await engine.kv_put(f"k{i}", raw(i))
            first = engine.kv_actor
            # Break the actor's state.sqlite connection under it: its next apply fails.
            await engine.kv.thread.run(engine.kv.store.conn.close)
            with _maybe():
                await engine.kv_put("crash", raw(1))
            # The supervisor rebuilds the actor from checkpoint + WAL.
            while engine.kv_actor is None or engine.kv_actor is first:
                await engine.kv.wait_changed()
            assert engine.kv.restarts == 1
            for i in range(80):
                assert (await engine.kv_get(f"k{i}")).revision == 1
            assert (await engine.kv_put("after", raw(1))).revision == 1


class _maybe:
    """The write that trips the crash is acknowledged (it is durable) or refused with 503."""

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        return et is None or issubclass(et, Unavailable)


async def test_draining_shutdown_keeps_exactly_the_acknowledged(tmp_path):
    s = settings(tmp_path)
    acked = set()
    with trio.fail_after(60):
        async with open_engine(s, fsync_delay_s=0.01) as engine:
            async def writer(w):
                for i in range(1000):
                    await engine.kv_put(f"w{w}:{i}", raw(i))
                    acked.add(f"w{w}:{i}")

            with trio.move_on_after(0.3):
                async with trio.open_nursery() as nursery:
                    for w in range(16):
                        nursery.start_soon(writer, w)
        async with open_engine(s) as engine:
            present = {item.key for item in await engine.kv_list("w", 1000)}
            # A cancelled caller either withdrew before queueing (nothing written) or waited for
            # the verdict and heard it, so the durable set is exactly what was acknowledged.
            # (The listing caps at 1000 keys, so compare within that range.)
            assert len(acked) < 1000
            assert present == acked


async def test_fsync_failure_stops_writes_outcome_unknown(tmp_path, monkeypatch):
    with trio.fail_after(20):
        async with open_engine(settings(tmp_path)) as engine:
            await engine.kv_put("before", raw(1))
            real = os.fdatasync

            def broken(fd):
                raise OSError(errno.EIO, "injected fsync failure")

            monkeypatch.setattr(os, "fdatasync", broken)
            with pytest.raises(PersistenceError) as e:
                await engine.kv_put("during", raw(1))
            assert e.value.outcome_unknown and "outcome unknown" in e.value.message
            assert engine.fatal.is_set() and engine.shutdown_requested.is_set()  # the server stops
            monkeypatch.setattr(os, "fdatasync", real)
            with pytest.raises(PersistenceError):
                await engine.kv_put("after", raw(1))  # fail-stop: no retry
            assert (await engine.kv_get("before")).revision == 1  # reads keep working


async def test_batch_put_results_in_order(tmp_path):
    with trio.fail_after(20):
        async with open_engine(settings(tmp_path, max_key_len=8)) as engine:
            results = await engine.kv_batch_put([
                Put("a", raw(1)),
                Put("a", raw(2), if_revision=1),
                Put("a", raw(3), if_revision=1),
                Put("toolongkey", raw(1)),
                Put("b", raw(1), ttl_ms=1000),
            ])
            assert [getattr(r, "revision", None) for r in results] == [1, 2, None, None, 1]
            assert results[2].code == "revision_mismatch"
            assert results[3].message == "key too long"
            assert results[4].expires_at_ms is not None
            assert (await engine.kv_get("a")).revision == 2


async def test_disk_full_rejects_writes_keeps_reads_and_recovers(tmp_path, monkeypatch):
    with trio.fail_after(20):
        async with open_engine(settings(tmp_path)) as engine:
            await engine.kv_put("before", raw(1))
            real = os.write

            def full(fd, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "write", full)
            with pytest.raises(PersistenceError) as e:
                await engine.kv_put("during", raw(1))
            assert e.value.status == 507 and not e.value.outcome_unknown
            assert (await engine.kv_get("before")).revision == 1
            with pytest.raises(NotFound):
                await engine.kv_get("during")
            monkeypatch.setattr(os, "write", real)
            # Space is back: writes resume, and the failed one left no trace in the log.
            assert (await engine.kv_put("after", raw(1))).revision == 1
            offset = engine.durable_offset
        async with open_engine(settings(tmp_path)) as engine:
            assert engine.durable_offset == offset
            with pytest.raises(NotFound):
                await engine.kv_get("during")
            assert (await engine.kv_get("after")).revision == 1


async def test_concurrent_puts_on_one_key_get_distinct_revisions_in_offset_order(tmp_path):
    """Writes decided in one inbox wake-up share one WAL write; each still sees the ones
    decided before it (revisions never repeat) and hears its own revision and offset."""
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as engine:
            items = []

            async def put(i):
                items.append(await engine.kv_put("hot", raw(i)))

            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(put, i)
            revisions = sorted(item.revision for item in items)
            assert revisions == list(range(1, 201))
            by_offset = sorted(items, key=lambda item: item.mod_offset)
            assert [item.revision for item in by_offset] == revisions
            latest = await engine.kv_get("hot")
            assert (latest.revision, latest.mod_offset) == (200, by_offset[-1].mod_offset)
            assert bytes(latest.value) == bytes(by_offset[-1].value)


async def test_disk_full_fails_every_concurrent_write_and_none_survives(tmp_path, monkeypatch):
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as engine:
            await engine.kv_put("before", raw(1))
            real = os.write

            def full(fd, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "write", full)
            statuses = []

            async def put(i):
                try:
                    await engine.kv_put(f"k{i}", raw(i))
                    statuses.append(200)
                except PersistenceError as exc:
                    statuses.append(exc.status)

            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(put, i)
            # 507 for the writes in the failed append; 503 for those decided on top of them
            # while it was in flight (retry). Neither wrote anything.
            assert 507 in statuses and set(statuses) <= {503, 507}, statuses
            monkeypatch.setattr(os, "write", real)
            assert (await engine.kv_put("k0", raw("again"))).revision == 1
            offset = engine.durable_offset
        async with open_engine(settings(tmp_path)) as engine:
            assert engine.durable_offset == offset
            present = {item.key for item in await engine.kv_list("k", 1000)}
            assert present == {"k0"}


async def test_every_acknowledged_write_is_visible_to_store_reads_at_once(tmp_path):
    """Acks come before state.sqlite commits, and busy periods merge commits; a listing
    (read on the store thread) and a get on an evicted key must still see each acked write."""
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path, kv_cache_items=8)) as engine:
            async def writer(w):
                for i in range(40):
                    key = f"w{w:02d}/{i:03d}"
                    item = await engine.kv_put(key, raw(i))
                    listed = await engine.kv_list(f"w{w:02d}/", 1000)
                    assert [x.key for x in listed][-1] == key
                    assert listed[-1].mod_offset == item.mod_offset
                    if i:
                        earlier = await engine.kv_get(f"w{w:02d}/{i - 1:03d}")
                        assert bytes(earlier.value) == bytes(raw(i - 1))

            async with trio.open_nursery() as nursery:
                for w in range(32):
                    nursery.start_soon(writer, w)
            assert sum([len(await engine.kv_list(f"w{w:02d}/", 1000)) for w in range(32)]) == 32 * 40


async def test_a_caller_cancelled_after_queueing_still_hears_its_verdict(tmp_path):
    """Once its write is queued to the WAL writer, a cancelled caller keeps waiting and gets
    the acknowledgement (the write is durable); the cancellation lands at its next checkpoint."""
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path), fsync_delay_s=0.2) as engine:
            await engine.kv_put("queued", raw(0))  # cached: deciding the next put needs no thread
            heard = []

            async def put(scope_box, task_status=trio.TASK_STATUS_IGNORED):
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    heard.append(await engine.kv_put("queued", raw(1)))
                    await trio.lowlevel.checkpoint()
                    heard.append("not cancelled")

            async with trio.open_nursery() as nursery:
                scope = await nursery.start(put, None)
                # Every task blocked: the put is decided and queued (no load, the key is cached)
                # and the WAL writer sleeps in its thread.
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
            assert len(heard) == 1 and heard[0].revision == 2
            assert (await engine.kv_get("queued")).mod_offset == heard[0].mod_offset


async def test_a_decision_that_raises_answers_every_request_of_its_batch(tmp_path):
    """A bug in decide() crashes the actor mid-batch: the requests decided before it in the
    same wake-up were never sent to the WAL, so they hear 503 (nothing written) instead of
    waiting forever, and the rebuilt actor serves again. The requests go straight into the
    actor's inbox, in this order and in one wake-up, and nobody awaits them (a caller stuck in
    its shielded wait would hang the test instead of failing it)."""
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as engine:
            await engine.kv_put("warm", raw(0))  # cached: the batch is decided without a load
            first = engine.kv_actor
            # Names a key like a KV command, but is none: decide() raises TypeError.
            bogus = types.SimpleNamespace(key="warm")
            requests = [Request(Put("warm", raw(i))) for i in range(20)] + [Request(bogus)]
            requests += [Request(Put("warm", raw(i))) for i in range(20, 40)]
            for req in requests:
                first.inbox.send_nowait(req)
            while engine.kv_actor is None or engine.kv_actor is first:
                await engine.kv.wait_changed()
            # The supervisor settles every caller before it builds the new actor.
            assert [i for i, req in enumerate(requests) if not req.done] == []
            for req in requests:
                with pytest.raises((Unavailable, TypeError)):
                    await req.wait()
            assert (await engine.kv_get("warm")).revision == 1
            assert (await engine.kv_put("warm", raw("after"))).revision == 2

"""Document finds on the reader pool (actors/doc_readers.py) through a real Engine.

A slow find is built from real data, not a stub: 800 documents of ~60 KB (1,200 fields each)
and a filter of 255 `$ne` conditions on late fields plus one that nothing matches, so SQLite
reads every field of every document (several seconds on the test box, far beyond the time
limits used here). The regression for issue 9 defect 6: document writes used to wait behind
such a find, because finds ran on the documents writer's thread.
"""

from __future__ import annotations

import os

import orjson
import pytest
import trio

from kissvdb.actors.doc_readers import FIND_WAITERS_MAX
from kissvdb.actors.boot import open_engine
from kissvdb.config import Settings
from kissvdb.documents.query import FindQuery
from kissvdb.documents.state import PUT
from kissvdb.errors import InvalidArgument, Overloaded
from kissvdb.events import RawJson
from tests.helpers import wait_until

HEAVY_DOCS = 800
HEAVY_FIELDS = 1200
SLOW_FILTER = {**{f"f{HEAVY_FIELDS - 1 - j:04d}": {"$ne": 1} for j in range(255)}, "n": {"$lt": -1}}


def raw(value) -> RawJson:
    return RawJson(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def settings(tmp_path, **kw) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), api_key="k", **kw)


def heavy_doc(i: int) -> bytes:
    doc = {f"f{j:04d}": "y" * 40 for j in range(HEAVY_FIELDS)}
    doc["n"] = i
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


async def seed_heavy(engine, collection: str = "big") -> None:
    """Straight into state.sqlite on the docs thread (as replay would), not through the WAL."""
    changes = [(PUT, collection, f"d{i:04d}", heavy_doc(i), 1, None, 1) for i in range(HEAVY_DOCS)]
    await engine.docs.thread.run(engine.docs.store.apply_docs, changes, 0)


def slow_find(engine):
    return engine.doc_find(FindQuery("big", SLOW_FILTER, (), 100))


async def test_document_writes_are_acknowledged_while_a_find_runs(tmp_path):
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path, sql_time_limit_ms=1500)) as engine:
            await seed_heavy(engine)
            readers = engine.docs.readers
            find_done = trio.Event()
            outcome: list = []

            async def find():
                try:
                    await slow_find(engine)
                except InvalidArgument as exc:
                    outcome.append(exc)
                find_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(find)
                await wait_until(lambda: readers.running == 1)
                # New ids: each put reads state.sqlite on the docs thread first (a cache miss).
                for i in range(20):
                    assert (await engine.doc_put("c", f"new{i}", raw({"i": i}))).revision == 1
                assert (await engine.doc_delete("c", "new0")) is True
                acknowledged_while_running = not find_done.is_set() and readers.running == 1
            assert acknowledged_while_running, "document writes waited for the find"
            assert outcome and outcome[0].field == "filter" and "time limit" in outcome[0].message
            assert readers.statistics()["timeouts_total"] == 1
            rows, _ = await engine.doc_find(FindQuery("c", None, (), 100))
            assert len(rows) == 19


async def test_a_find_sees_every_acknowledged_write(tmp_path):
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path)) as engine:
            async def writer(w: int):
                for i in range(30):
                    await engine.doc_put("c", f"w{w}-{i}", raw({"w": w, "i": i}))
                    rows, _ = await engine.doc_find(FindQuery("c", {"w": w, "i": i}, (), 10))
                    assert [r[0] for r in rows] == [f"w{w}-{i}"]
                    await engine.doc_delete("c", f"w{w}-{i}")
                    rows, _ = await engine.doc_find(FindQuery("c", {"w": w, "i": i}, (), 10))
                    assert rows == []

            async with trio.open_nursery() as nursery:
                for w in range(4):
                    nursery.start_soon(writer, w)


async def test_a_find_sees_a_write_whose_apply_waits_behind_an_index_build(tmp_path):
    """A put is acknowledged once durable in our WAL; its state.sqlite apply is then queued
    on the docs thread, here behind an index build over large documents. A find made after the
    acknowledgement still sees it."""
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path)) as engine:
            await seed_heavy(engine)
            await engine.doc_put("c", "x", raw({"v": 1}))  # cached: the next put needs no read
            async with trio.open_nursery() as nursery:
                nursery.start_soon(engine.doc_create_index, "big", f"f{HEAVY_FIELDS - 1:04d}")
                await wait_until(lambda: engine.docs.thread.jobs_finished < engine.docs.thread.jobs_total)
                assert (await engine.doc_put("c", "x", raw({"v": 2}))).revision == 2
                rows, _ = await engine.doc_find(FindQuery("c", {"v": 2}, (), 10))
                assert [r[0] for r in rows] == ["x"]


async def test_a_find_waiting_for_a_reader_gets_503_before_its_deadline(tmp_path):
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path, doc_find_concurrency=1)) as engine:
            await seed_heavy(engine)
            await engine.doc_put("c", "d", raw(1))
            readers = engine.docs.readers
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_find, engine)
                await wait_until(lambda: readers.running == 1)
                with trio.move_on_after(2.0) as scope:
                    with pytest.raises(Overloaded):
                        await engine.doc_find(FindQuery("c", None, (), 10))
                assert not scope.cancelled_caught, "the find waited until its deadline"
                assert readers.statistics()["overloaded_total"] == 1
                nursery.cancel_scope.cancel()
            # The cancelled find was interrupted: its reader is free again, well before the
            # several seconds the find would have taken.
            await wait_until(lambda: readers.running == 0, timeout=2)
            rows, _ = await engine.doc_find(FindQuery("c", None, (), 10))
            assert [r[0] for r in rows] == ["d"]


async def test_too_many_waiting_finds_are_refused_at_once(tmp_path):
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path, doc_find_concurrency=1)) as engine:
            await seed_heavy(engine)
            readers = engine.docs.readers
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_find, engine)
                await wait_until(lambda: readers.running == 1)
                for _ in range(FIND_WAITERS_MAX):
                    nursery.start_soon(engine.doc_find, FindQuery("c", None, (), 10))
                await wait_until(lambda: readers.waiting == FIND_WAITERS_MAX)
                with trio.move_on_after(0) as scope:  # refused without waiting at all
                    with pytest.raises(Overloaded):
                        await engine.doc_find(FindQuery("c", None, (), 10))
                assert not scope.cancelled_caught
                nursery.cancel_scope.cancel()
            await wait_until(lambda: readers.running == 0 and readers.waiting == 0, timeout=2)


async def test_no_read_snapshot_outlives_a_find(tmp_path):
    """After finds (ended normally, by the time limit, or cancelled) a TRUNCATE checkpoint,
    which needs every reader gone from the WAL, completes."""
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path, sql_time_limit_ms=200)) as engine:
            await seed_heavy(engine)
            for i in range(50):
                await engine.doc_put("c", f"d{i}", raw(i))
            await engine.doc_find(FindQuery("c", None, (), 10))
            with pytest.raises(InvalidArgument):
                await slow_find(engine)
            store = engine.docs.store
            assert await engine.docs.thread.run(store.reset_wal) == 0
            assert os.path.getsize(store.path + "-wal") == 0


async def test_state_wal_stays_bounded_with_finds_and_writes_back_to_back(tmp_path):
    wal_max = 1 << 20
    with trio.fail_after(120):
        async with open_engine(settings(tmp_path, state_wal_max_bytes=wal_max)) as engine:
            readers = engine.docs.readers
            stop = trio.Event()
            finds = 0

            async def finder():
                nonlocal finds
                while not stop.is_set():
                    await engine.doc_find(FindQuery("c", {"n": {"$gte": 0}}, ("-n",), 100))
                    finds += 1

            async with trio.open_nursery() as nursery:
                for _ in range(3):  # more finders than readers: their snapshots overlap
                    nursery.start_soon(finder)
                for i in range(300):  # ~18 MB of documents through state.sqlite
                    await engine.doc_put("c", f"d{i % 100}", RawJson(heavy_doc(i)))
                stop.set()
            assert finds > 0
            assert readers.statistics()["wal_resets_total"] > 0  # the WAL grew past its bound
            await engine.checkpoint()  # what the periodic checkpointer runs
            assert os.path.getsize(engine.docs.store.path + "-wal") <= wal_max


async def test_an_index_build_past_the_time_limit_is_rolled_back(tmp_path):
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path, sql_time_limit_ms=1)) as engine:
            await seed_heavy(engine)
            with pytest.raises(InvalidArgument) as e:
                await engine.doc_create_index("big", "n")
            assert e.value.field == "field" and "time limit" in e.value.message
            assert await engine.docs.thread.run(engine.docs.store.indexes, "big") == []
            plan = await engine.docs.explain(FindQuery("big", {"n": 1}), 0)
            assert not any("docidx_" in step for step in plan), plan
            assert (await engine.doc_put("big", "after", raw({"n": 1}))).revision == 1

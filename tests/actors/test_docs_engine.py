"""The document actor through a real Engine: replay from the WAL tail, crash and restart,
checkpoints that move while idle, and the SQL actor's write ordering.
"""

from __future__ import annotations

import apsw
import orjson
import trio

from kissvdb.actors.boot import open_engine
from kissvdb.config import Settings
from kissvdb.documents.query import FindQuery
from kissvdb.errors import NotFound, Unavailable
from kissvdb.events import RawJson
from tests.helpers import wait_until


def raw(value) -> RawJson:
    return RawJson(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def settings(tmp_path, **kw) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), api_key="k", **kw)


async def test_docs_are_rebuilt_from_the_wal_when_the_table_is_behind(tmp_path):
    s = settings(tmp_path)
    with trio.fail_after(30):
        async with open_engine(s) as engine:
            for i in range(40):
                await engine.doc_put("c", f"d{i}", raw({"i": i}))
            await engine.doc_put("c", "d0", raw({"i": "two"}))
            await engine.doc_delete("c", "d1")
            await engine.kv_put("k", raw(1))
        # Lose the materialized documents and their offset, as if never checkpointed.
        conn = apsw.Connection(str(tmp_path / "data" / "state.sqlite"))
        with conn:
            conn.execute("DELETE FROM docs")
            conn.execute("DELETE FROM applied WHERE name='docs'")
        conn.close()
        async with open_engine(s) as engine:
            assert engine.recovery_replayed >= 43
            assert (await engine.doc_get("c", "d0")).revision == 2
            assert (await engine.doc_get("c", "d39")).doc == b'{"i":39}'
            try:
                await engine.doc_get("c", "d1")
                raise AssertionError("deleted document came back")
            except NotFound:
                pass
            rows, _ = await engine.doc_find(FindQuery("c", None, (), 100))
            assert len(rows) == 39
            assert (await engine.kv_get("k")).revision == 1  # KV untouched by the docs replay


async def test_doc_actor_crash_restarts_from_checkpoint_and_wal(tmp_path):
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as engine:
            for i in range(30):
                await engine.doc_put("c", f"d{i}", raw(i))
            await engine.checkpoint()
            for i in range(30, 50):
                await engine.doc_put("c", f"d{i}", raw(i))
            first = engine.docs.actor
            # Break the actor's state.sqlite connection under it: its next apply fails.
            await engine.docs.thread.run(engine.docs.store.conn.close)
            try:
                await engine.doc_put("c", "crash", raw(1))
            except Unavailable:
                pass
            await wait_until(lambda: engine.docs.actor is not None and engine.docs.actor is not first, timeout=10)
            assert engine.docs.restarts == 1
            for i in range(50):
                assert (await engine.doc_get("c", f"d{i}")).revision == 1
            assert (await engine.doc_put("c", "after", raw(1))).revision == 1


async def test_idle_docs_checkpoint_follows_the_durable_offset_and_bounds_retention(tmp_path):
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as engine:
            await engine.doc_put("c", "d", raw(1))
            for i in range(20):
                await engine.kv_put(f"k{i}", raw(i))
            await engine.checkpoint()
            assert engine.checkpointed["docs"] == engine.checkpointed["kv"] == engine.durable_offset


async def test_concurrent_sql_execs_log_events_in_commit_order(tmp_path):
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as engine:
            await engine.sql_exec("CREATE TABLE t(n INTEGER)", [])
            start = engine.durable_offset

            async def insert(n):
                await engine.sql_exec(f"INSERT INTO t VALUES ({n})", [])

            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(insert, n)
            body = await engine.sql_query_json("SELECT n FROM t ORDER BY rowid", [])
            committed = [r["n"] for r in orjson.loads(body.join())["rows"]]
            records = await trio.to_thread.run_sync(engine.wal_log.read, start + 1, engine.durable_offset, 1 << 20)
            from kissvdb.events import decode_payload

            logged = [decode_payload(o, p) for o, p in records]
            assert [r.type for r in logged] == ["sql_exec"] * 20
            assert all(r.data["rows_affected"] == 1 for r in logged)
            assert [int(r.data["statement"].split("(")[1].rstrip(")")) for r in logged] == committed


async def test_kv_and_docs_share_state_sqlite_under_concurrent_writes_and_checkpoints(tmp_path):
    with trio.fail_after(60):
        async with open_engine(settings(tmp_path)) as engine:
            async def kv_writer(w):
                for i in range(150):
                    await engine.kv_put(f"w{w}/{i}", raw(i))

            async def doc_writer(w):
                for i in range(150):
                    await engine.doc_put(f"c{w}", f"d{i}", raw({"i": i}))

            async def checkpointer():
                for _ in range(10):
                    await engine.checkpoint()
                    await trio.sleep(0)

            async with trio.open_nursery() as nursery:
                for w in range(4):
                    nursery.start_soon(kv_writer, w)
                    nursery.start_soon(doc_writer, w)
                nursery.start_soon(checkpointer)
            await engine.checkpoint()
            assert engine.kv.restarts == 0 and engine.docs.restarts == 0
            assert (await engine.kv_get("w3/149")).revision == 1
            rows, _ = await engine.doc_find(FindQuery("c3", None, (), 100))
            assert len(rows) == 100
            assert engine.checkpointed["docs"] == engine.checkpointed["kv"] == engine.durable_offset


async def test_disk_full_fails_doc_writes_cleanly_and_they_resume(tmp_path, monkeypatch):
    import errno
    import os

    import pytest

    from kissvdb.errors import PersistenceError

    with trio.fail_after(20):
        async with open_engine(settings(tmp_path)) as engine:
            await engine.doc_put("c", "before", raw(1))
            real = os.write

            def full(fd, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "write", full)
            with pytest.raises(PersistenceError) as e:
                await engine.doc_put("c", "during", raw(1))
            assert e.value.status == 507
            with pytest.raises(PersistenceError):
                await engine.doc_put("c", "before", raw(2), if_revision=1)
            monkeypatch.setattr(os, "write", real)
            with pytest.raises(NotFound):
                await engine.doc_get("c", "during")
            assert (await engine.doc_get("c", "before")).revision == 1
            # Space is back: the failed writes left no trace, not even in the in-flight overlay.
            assert (await engine.doc_put("c", "during", raw(1))).revision == 1
            assert (await engine.doc_put("c", "before", raw(2), if_revision=1)).revision == 2

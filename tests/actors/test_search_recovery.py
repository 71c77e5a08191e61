"""The /search index at boot (kissvdb/search/replay.py, actors/boot.py): fed by the ONE replay
pass when the WAL holds what it lacks, rebuilt from the `_search` collection when its file is
gone, corrupt, of another format, or behind what the WAL still holds. Every case ends with the
same answers a search gave before. Crash (kill -9) over HTTP: tests/e2e/test_search_durability.py.
"""

import os
import shutil

import apsw
import trio

from kissvdb import layout
from kissvdb.config import Settings
from kissvdb.events import RawJson
from kissvdb.search.request import parse_ingest, parse_search
from kissvdb.wal.log import WalLog

from kissvdb.actors.boot import open_engine


def settings(path, **kw) -> Settings:
    return Settings(data_dir=str(path), api_key="k", **kw)


def docs(*specs):
    """(id, vector, content) -> parsed /search documents."""
    return parse_ingest({"documents": [{"id": i, "vector": v, "content": c, "metadata": {"category": "c"}}
                                       for i, v, c in specs]})


async def keyword(e, text: str) -> list[tuple[int, str]]:
    answer = await e.search(parse_search({"query": text, "mode": "keyword", "top_k": 50}))
    return sorted((r["document"]["id"], r["document"]["content"]) for r in answer["results"])


async def vector(e, query: str) -> list[int]:
    answer = await e.search(parse_search({"query": query, "top_k": 50}))
    return [r["document"]["id"] for r in answer["results"]]


def fts_files(data_dir) -> list[str]:
    base = os.path.join(str(data_dir), layout.SEARCH_DB)
    return [base + s for s in ("", "-wal", "-shm") if os.path.exists(base + s)]


async def test_boot_feeds_the_index_from_the_one_replay_pass(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    with trio.fail_after(60):
        async with open_engine(settings(first)) as e:
            await e.search_ingest(docs((1, [1, 0], "alpha words"), (2, [0, 1], "beta words")))
        shutil.copytree(first, second)  # checkpointed: the index is at the end of the WAL
        async with open_engine(settings(first)) as e:
            tail_start = e.durable_offset + 1
            await e.search_ingest(docs((1, [1, 0], "alpha replaced"), (3, [1, 1], "gamma words")))
            assert await e.search_delete([2, 9]) == [True, False]
            await e.kv_put("k", RawJson(b"1"))
            tail_end = e.durable_offset

    def move_tail():
        src = WalLog.open(str(first), segment_max_bytes=1 << 26, min_next_offset=1, verify_from=1)
        try:
            records = src.read(tail_start, tail_end, 1 << 30)
        finally:
            src.close()
        dst = WalLog.open(str(second), segment_max_bytes=1 << 26, min_next_offset=1, verify_from=1)
        try:
            dst.append([payload for _, payload in records])
            dst.sync()
        finally:
            dst.close()

    await trio.to_thread.run_sync(move_tail)
    with trio.fail_after(60):
        async with open_engine(settings(second)) as e:
            assert e.wal_log.records_read == tail_end - tail_start + 1  # one pass for every materializer
            assert await keyword(e, "words") == [(3, "gamma words")]
            assert await keyword(e, "alpha") == [(1, "alpha replaced")]
            assert await vector(e, "TEST_VEC:1,0") == [1, 3]
            assert e.search_index.store.applied_offset == e.durable_offset


async def _two_docs_then(tmp_path, damage) -> None:
    data = tmp_path / "data"
    with trio.fail_after(60):
        async with open_engine(settings(data)) as e:
            await e.search_ingest(docs((1, [1, 0], "alpha words"), (2, [0, 1], "beta words")))
            await e.search_ingest(docs((2, [0, 1], "beta replaced")))
        damage(data)
        async with open_engine(settings(data)) as e:
            assert await keyword(e, "alpha beta") == [(1, "alpha words"), (2, "beta replaced")]
            assert await vector(e, "TEST_VEC:0,1") == [2, 1]
            assert e.search_index.store.applied_offset == e.durable_offset
            await e.search_ingest(docs((3, [1, 1], "gamma")))  # and it goes on from there
            assert await keyword(e, "gamma") == [(3, "gamma")]


async def test_a_deleted_index_is_rebuilt_from_the_collection(tmp_path):
    def delete(data):
        files = fts_files(data)
        assert files
        for f in files:
            os.unlink(f)

    await _two_docs_then(tmp_path, delete)


async def test_a_corrupt_index_is_discarded_and_rebuilt(tmp_path):
    def corrupt(data):
        for f in fts_files(data):
            os.unlink(f)
        with open(os.path.join(str(data), layout.SEARCH_DB), "wb") as f:
            f.write(b"not a database" * 1000)

    await _two_docs_then(tmp_path, corrupt)


async def test_an_index_of_another_format_is_discarded_and_rebuilt(tmp_path):
    def other_format(data):
        db = apsw.Connection(os.path.join(str(data), layout.SEARCH_DB))
        db.execute("UPDATE meta SET v = 99 WHERE k = 'format_version'")
        db.close()

    await _two_docs_then(tmp_path, other_format)


async def test_an_index_behind_the_retained_wal_is_rebuilt(tmp_path):
    data, saved = tmp_path / "data", tmp_path / "saved-index"
    small = dict(wal_segment_max_bytes=1 << 20, wal_retention_segments=1, wal_retention_min_secs=0)
    with trio.fail_after(120):
        async with open_engine(settings(data, **small)) as e:
            await e.search_ingest(docs((1, [1, 0], "alpha words")))
        os.makedirs(saved)
        for f in fts_files(data):
            shutil.copy(f, saved)
        old_offset = e.checkpointed["search"]
        async with open_engine(settings(data, **small)) as e:
            filler = "x" * 30000
            for i in range(2, 80):  # ~2.4 MB of WAL: segments roll, retention drops the old ones
                await e.search_ingest(docs((i, [1, i / 100], f"doc{i} {filler}")))
            await e.search_delete([1])
            await e.checkpoint()
            assert e.wal_log.first_offset > old_offset + 1
        for f in fts_files(data):
            os.unlink(f)
        for name in os.listdir(saved):
            shutil.copy(os.path.join(saved, name), os.path.join(str(data), layout.SEARCH_DIR))
        async with open_engine(settings(data, **small)) as e:
            assert e.search_index.store.applied_offset == e.durable_offset
            assert await keyword(e, "alpha") == []
            assert await keyword(e, "doc2 doc79") == [(2, f"doc2 {filler}"), (79, f"doc79 {filler}")]
            assert len(await vector(e, "TEST_VEC:1,0")) == 50  # top_k of 78 documents

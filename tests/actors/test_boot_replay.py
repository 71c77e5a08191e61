"""Boot reads the WAL tail ONCE for every materializer (kissvdb/recovery.py `replay`).

A data directory is checkpointed, then given a tail of KV, document and vector events that
no materializer has applied (the records a second run of the engine wrote, appended to a copy
of the checkpointed directory with the WAL class: what a crash that lost every materialized
change since the checkpoint leaves). Booting it reads each tail record exactly once, and every
model serves what the tail holds.
"""

import shutil

import numpy as np
import orjson
import trio

from kissvdb.config import Settings
from kissvdb.events import RawJson
from kissvdb.vectors.state import Item
from kissvdb.wal.log import WalLog

from kissvdb.actors.boot import open_engine


def raw(value) -> RawJson:
    return RawJson(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def settings(path) -> Settings:
    return Settings(data_dir=str(path), api_key="k")


async def test_boot_reads_the_wal_tail_once_for_every_model(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    with trio.fail_after(60):
        async with open_engine(settings(first)) as e:
            await e.kv_put("before", raw(0))
            await e.doc_put("c", "d0", raw({"i": 0}))
            await e.vector_create("v", 3, "cosine", "FLAT")
            await e.vector_put("v", Item("a", np.array([1, 0, 0], dtype=np.float32), None), add=False)
        shutil.copytree(first, second)  # checkpointed: nothing to replay
        async with open_engine(settings(first)) as e:
            tail_start = e.durable_offset + 1
            for i in range(5):
                await e.kv_put(f"k{i}", raw(i))
                await e.doc_put("c", f"d{i + 1}", raw({"i": i + 1}))
                await e.vector_put("v", Item(f"t{i}", np.array([0, 1, i], dtype=np.float32), None), add=False)
            tail_end = e.durable_offset
    tail = tail_end - tail_start + 1
    assert tail == 15

    def move_tail():
        src = WalLog.open(str(first), segment_max_bytes=1 << 26, min_next_offset=1, verify_from=1)
        try:
            records = src.read(tail_start, tail_end, 1 << 30)
        finally:
            src.close()
        dst = WalLog.open(str(second), segment_max_bytes=1 << 26, min_next_offset=1, verify_from=1)
        try:
            assert dst.next_offset == tail_start
            dst.append([payload for _, payload in records])
            dst.sync()
        finally:
            dst.close()

    await trio.to_thread.run_sync(move_tail)
    with trio.fail_after(60):
        async with open_engine(settings(second)) as e:
            assert e.wal_log.records_read == tail  # one pass, not one per materializer
            assert e.recovery_replayed == tail
            assert (await e.kv_get("k4")).value == b"4"
            assert (await e.doc_get("c", "d5")).doc == b'{"i":5}'
            hits = await e.vector_search("v", np.array([0, 1, 4], dtype=np.float32), 1)
            assert hits[0].id == "t4"
            assert e.vectors.store.collections["v"].info()["live_count"] == 6

"""Building an Engine and stopping it, in order.

Boot (`open_engine`): lock DATA_DIR, read state.sqlite's applied offsets, open the WAL (scan,
torn-tail cut) with next offset above every checkpoint, then start, each with `nursery.start`
so a failure before readiness surfaces here: the WAL writer, the KV actor (supervised: built
from state.sqlite + the WAL tail), DocService, KeyService, SqlService, the vector collections,
then the TTL sweeper and the checkpointer; the /search index follows the broadcaster from
before the writer starts (actors/search.py). The API never sees a half-booted engine.

Shutdown (leaving the context): end SSE streams, refuse new calls, close the inboxes so each
actor finishes what it accepted, let the WAL writer drain, checkpoint, close files.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
from contextlib import asynccontextmanager

import trio

from kissvdb import layout
from kissvdb.config import Settings
from kissvdb.datadir import DataDir
from kissvdb.documents.table import DocStore
from kissvdb.recovery import docs_replay, kv_replay, replay
from kissvdb.search import replay as search_replay
from kissvdb.search.changes import SEARCH_COLLECTION
from kissvdb.statedb.file import StateStore
from kissvdb.vectors.collection import VectorParams
from kissvdb.vectors.store import VectorReplay, VectorStore
from kissvdb.wal.log import WalLog

from kissvdb.actors.auth_keys import KeyService
from kissvdb.actors.cdc import Broadcaster
from kissvdb.actors.checkpointer import run_checkpointer
from kissvdb.actors.documents import DocService
from kissvdb.actors.engine import Engine, now_ms
from kissvdb.actors.search import SearchFollower
from kissvdb.actors.sql import SqlService
from kissvdb.actors.threads import DedicatedThread
from kissvdb.actors.ttl import run_ttl_sweeper
from kissvdb.actors.vector_manager import VectorManager
from kissvdb.actors.wal import WalWriter

log = logging.getLogger("kissvdb.engine")

# While an engine runs, the cycle collector's youngest generation waits for this many new
# container objects instead of Python's 700. A write allocates about ten that live until its
# fsync (request, decision, event, record...): at 700 a collection comes every ~70 writes,
# finds them alive and promotes them to older generations, which are scanned again and again.
# Measured in bench/group_commit.py: 8% of a put's instructions at 700, about 1% at 10,000.
GC_YOUNG_OBJECTS = 10_000


@asynccontextmanager
async def open_engine(settings: Settings, *, fsync_delay_s: float = 0.0, clock=now_ms):
    tmp = None
    if settings.memory:
        tmp = tempfile.mkdtemp(prefix="kissvdb-memory-")
        settings = settings.with_(data_dir=tmp)
    datadir = await trio.to_thread.run_sync(lambda: DataDir.open(settings.data_dir))
    store_thread = DedicatedThread("kissvdb-state")
    docs_thread = DedicatedThread("kissvdb-docs")
    gc_threshold = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG_OBJECTS, gc_threshold[0]), *gc_threshold[1:])
    try:
        store_path = os.path.join(settings.data_dir, layout.STATE_DB)
        wal_log = await _open_wal(settings, store_path, store_thread)
        vector_store = search_store = engine = None
        try:
            vector_store, search_store, replayed = await store_thread.run(
                lambda: _recover(settings, store_path, wal_log))
            engine = _engine(settings, wal_log, store_path, store_thread, fsync_delay_s, clock)
            engine.recovery_replayed = replayed
            engine.search_index = SearchFollower(search_store, DedicatedThread("kissvdb-search"))
            engine.broadcaster.followers.append(engine.search_index.on_publish)
            async with trio.open_nursery() as nursery:
                background = await _start(engine, nursery, vector_store, store_path, docs_thread)
                try:
                    yield engine
                finally:
                    with trio.CancelScope(shield=True):
                        await _shutdown(engine, background)
        finally:
            with trio.CancelScope(shield=True):
                await _close(engine, vector_store, search_store, wal_log)
    finally:
        gc.set_threshold(*gc_threshold)
        with trio.CancelScope(shield=True):
            await docs_thread.aclose()
            await store_thread.aclose()
            await trio.to_thread.run_sync(datadir.close)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


async def _open_wal(settings: Settings, store_path: str, store_thread: DedicatedThread) -> WalLog:
    """The WAL, its next offset above every checkpoint, verified from the oldest one."""
    probe = await store_thread.run(lambda: StateStore(store_path, durable=not settings.memory))
    applied = probe.applied_offsets()
    await store_thread.run(probe.close)
    floor = min(applied.values(), default=0)
    ceiling = max(applied.values(), default=0)
    wal_log = await trio.to_thread.run_sync(lambda: WalLog.open(
        settings.data_dir, segment_max_bytes=settings.wal_segment_max_bytes,
        min_next_offset=ceiling + 1, verify_from=floor + 1, fsync=not settings.memory))
    log.info("WAL: offsets %d..%d, next %d", wal_log.first_offset, wal_log.last_offset, wal_log.next_offset)
    return wal_log


def _engine(settings: Settings, wal_log: WalLog, store_path: str, store_thread: DedicatedThread,
            fsync_delay_s: float, clock) -> Engine:
    """The Engine with its broadcaster and WAL writer (not started yet)."""
    broadcaster = Broadcaster(wal_log, ring_size=settings.event_buffer_size,
                              batch_max=settings.live_broadcast_capacity)
    broadcaster.set_durable_offset(wal_log.last_offset)
    engine_box: list[Engine] = []
    writer = WalWriter(wal_log, broadcaster, inbox_size=settings.inbox_requests_max,
                       batch_bytes_max=settings.wal_batch_bytes_max, fsync_delay_s=fsync_delay_s,
                       on_fatal=lambda exc: engine_box[0].on_fatal(exc))
    engine = Engine(settings, wal_log, writer, broadcaster, store_path, store_thread, clock=clock)
    engine_box.append(engine)
    return engine


async def _start(engine: Engine, nursery: trio.Nursery, vector_store: VectorStore, store_path: str,
                 docs_thread: DedicatedThread) -> trio.CancelScope:
    """Start every actor and service in boot order; returns the scope of the background tasks."""
    settings, writer, clock = engine.settings, engine.writer, engine.clock
    await nursery.start(writer.run)
    await nursery.start(engine.kv.run)
    engine.docs = DocService(settings, writer, engine.wal_log, store_path, docs_thread, clock=clock)
    await nursery.start(engine.docs.run)
    engine.keys = KeyService(os.path.join(settings.data_dir, layout.KEYS_DB), clock=clock,
                             on_revoke=engine.broadcaster.revoke, durable=not settings.memory,
                             keys_max=settings.max_api_keys)
    await engine.keys.open()
    if settings.sqlite_enabled:
        engine.sql = SqlService(settings, writer, clock=clock)
        await engine.sql.open()
    await _start_vectors(engine, vector_store, nursery)
    background = trio.CancelScope()

    async def maintenance():
        with background:
            async with trio.open_nursery() as inner:
                inner.start_soon(run_ttl_sweeper, engine.expiring(), engine.clock)
                inner.start_soon(run_checkpointer, engine.checkpoint, settings.snapshot_interval_secs)

    nursery.start_soon(maintenance)
    return background


async def _close(engine: Engine | None, vector_store: VectorStore | None, search_store, wal_log: WalLog) -> None:
    """Close files, after the actors stopped (or failed to start)."""
    if engine is not None:
        for service in (engine.docs, engine.sql, engine.keys):
            if service is not None:
                await service.aclose()
        await engine.kv.aclose()
    if engine is not None and engine.search_index is not None:
        await engine.search_index.aclose()
    elif search_store is not None:
        await trio.to_thread.run_sync(search_store.close)
    if vector_store is not None:
        await trio.to_thread.run_sync(vector_store.close)
    await trio.to_thread.run_sync(wal_log.close)


def _recover(settings: Settings, store_path: str, wal_log) -> tuple[VectorStore, object, int]:
    """Open every materializer at its checkpoint (state.sqlite's KV and documents, every vector
    collection: saved indexes, no rebuild; the /search index) and bring them all up to the end
    of the WAL in ONE pass over its tail (kissvdb/recovery.py). The actors then start from
    durable state with nothing left to replay. A /search index that is new, was discarded or
    is behind what the WAL holds sits the pass out and is rebuilt from its collection after it
    (kissvdb/search/replay.py). Returns the vector store, the search store and how many WAL
    records were read."""
    durable = not settings.memory
    vectors = VectorStore.open(os.path.join(settings.data_dir, layout.VECTORS_DIR), VectorParams.from_settings(settings))
    into_vectors = VectorReplay(vectors)
    search_store = None
    try:
        search_store, fresh = search_replay.open_store(os.path.join(settings.data_dir, layout.SEARCH_DB))
        rebuild = search_replay.must_rebuild(search_store, fresh, wal_log.first_offset, wal_log.last_offset)
        materializers = [] if rebuild else [search_replay.SearchReplay(search_store)]
        kv = StateStore(store_path, durable=durable)
        try:
            docs = DocStore(store_path, durable=durable)
            try:
                replayed = replay(wal_log, wal_log.last_offset,
                                  [kv_replay(kv), docs_replay(docs), into_vectors] + materializers)
            finally:
                docs.close()
        finally:
            kv.close()
        # The registry's offset is durable now (a small file), so the next boot's pass does not
        # start behind it; collections move theirs at the first checkpoint, as state.sqlite does.
        vectors.checkpoint_registry()
        if rebuild:
            search_replay.rebuild(search_store, vectors.collections.get(SEARCH_COLLECTION), wal_log.last_offset)
    except BaseException:
        vectors.close()
        if search_store is not None:
            search_store.close()
        raise
    log.info("recovery: %d vector collection(s), %d quarantined, replayed %d vector events",
             len(vectors.collections), len(vectors.quarantined), into_vectors.count)
    return vectors, search_store, replayed


async def _start_vectors(engine: Engine, store: VectorStore, nursery: trio.Nursery) -> None:
    """Start an actor for every vector collection (recovered already by `_recover`)."""
    s = engine.settings
    engine.vectors = VectorManager(store, engine.writer, engine.vector_limits(), VectorParams.from_settings(s),
                                   inbox_size=s.inbox_requests_max, counters=engine.counters, clock=engine.clock,
                                   search_threads=max(2, os.cpu_count() or 1), call_kv=engine.call_kv)
    await nursery.start(engine.vectors.run)


async def _shutdown(engine: Engine, background: trio.CancelScope) -> None:
    """End streams, drain accepted writes, checkpoint. Runs shielded, with a deadline."""
    engine.broadcaster.close()
    background.cancel()
    with trio.move_on_after(30):
        actor = engine.kv_actor
        engine.closing = True
        if engine.vectors is not None:
            await engine.vectors.aclose()
        if actor is not None:
            await actor.inbox.aclose()
            await actor.wait_drained()
        if engine.docs is not None:
            await engine.docs.close()
        if engine.sql is not None:
            await engine.sql.close()
        await engine.writer.send_channel.aclose()
        if engine.writer.failed is None and engine.kv_actor is not None:
            try:
                await engine.checkpoint()
                log.info("shutdown: checkpointed at offset %d", engine.checkpointed.get("kv", 0))
            except Exception:
                log.exception("shutdown: final checkpoint failed (the WAL still holds everything)")

"""The Engine: boots the actors in order and is the only thing the HTTP layer calls.

Boot (`open_engine`): lock DATA_DIR, open state.sqlite on its thread, open the WAL (scan,
torn-tail cut) with next offset above every checkpoint, replay the WAL tail into state.sqlite,
then start the WAL writer, the KV actor (supervised), the TTL sweeper and the checkpointer,
each with `nursery.start` so a failure before readiness surfaces here. The API never sees a
half-booted engine.

Shutdown (leaving the context): end SSE streams, refuse new calls, close the KV inbox so the
actor finishes what it accepted, let the WAL writer drain, checkpoint, close files.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from kissvdb import layout
from kissvdb.config import Settings
from kissvdb.docquery import FindQuery, json_path
from kissvdb.documents import DocDelete, DocItem, DocPut, check_collection, check_doc_key
from kissvdb.errors import KissError, NotEnabled, NotFound, Unavailable
from kissvdb.events import RawJson
from kissvdb.kv import BatchPut, Delete, KvLimits, KvState, Put, StateItem, check_key
from kissvdb.recovery import replay_kv
from kissvdb.sqlresult import JsonChunks
from kissvdb.statestore import StateStore

from kissvdb.actors.auth_keys import KeyService
from kissvdb.actors.cdc import Broadcaster
from kissvdb.actors.documents import DocService, run_doc_ttl_sweeper
from kissvdb.actors.sql import SqlService
from kissvdb.actors.kv import KvActor
from kissvdb.actors.mailbox import Request, send_or_overload
from kissvdb.actors.maintenance import run_checkpointer, run_ttl_sweeper
from kissvdb.actors.supervisor import supervise
from kissvdb.actors.threads import DedicatedThread
from kissvdb.actors.vectors import VectorEngineMethods, VectorManager
from kissvdb.actors.wal import WalWriter

log = logging.getLogger("kissvdb.engine")

# While an engine runs, the cycle collector's youngest generation waits for this many new
# container objects instead of Python's 700. A write allocates about ten that live until its
# fsync (request, decision, event, record...): at 700 a collection comes every ~70 writes,
# finds them alive and promotes them to older generations, which are scanned again and again.
# Measured in bench/group_commit.py: 8% of a put's instructions at 700, about 1% at 10,000.
GC_YOUNG_OBJECTS = 10_000
OVERLOAD_WAIT_S = 0.5  # how long a full inbox may hold a caller before 503
LIST_LIMIT_MAX = 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class PutOp:
    key: str
    value: RawJson
    ttl_ms: int | None = None
    if_revision: int | None = None


class Engine(VectorEngineMethods):
    def __init__(self, settings: Settings, wal_log, writer: WalWriter, broadcaster: Broadcaster,
                 store_path: str, store_thread: DedicatedThread, *, clock=now_ms):
        self.settings = settings
        self.wal_log = wal_log
        self.writer = writer
        self.broadcaster = broadcaster
        self.store_path = store_path
        self.store_thread = store_thread
        self.store: StateStore | None = None
        self.clock = clock
        self.kv_actor: KvActor | None = None
        self.vectors: VectorManager | None = None
        self.limits = KvLimits(settings.max_key_len, settings.max_json_bytes)
        self.counters = {"state_put_total": 0, "state_delete_total": 0, "vector_ops_total": 0}
        self.checkpointed: dict[str, int] = {}
        self.recovery_replayed = 0
        self.kv_restarts = 0
        self._kv_changed = trio.Event()
        self.closing = False
        self.fatal = trio.Event()
        self.fatal_error: BaseException | None = None
        self.shutdown_requested = trio.Event()
        self.docs: DocService | None = None  # set by open_engine (issue 4: documents, SQL, keys)
        self.sql: SqlService | None = None  # None while SQLITE_ENABLED is off
        self.keys: KeyService | None = None

    # -- documents, SQL, API keys (issue 4) ----------------------------------------------------

    async def call_docs(self, command):
        actor = self.docs.live_actor()
        req = Request(command)
        try:
            await send_or_overload(actor.inbox, req, OVERLOAD_WAIT_S)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Unavailable("document store unavailable, retry") from None
        return await req.wait()

    async def doc_put(self, collection: str, id_: str, doc: RawJson, *, ttl_ms: int | None = None,
                      if_revision: int | None = None) -> DocItem:
        return await self.call_docs(DocPut(collection, id_, doc, ttl_ms, if_revision))

    async def doc_get(self, collection: str, id_: str) -> DocItem:
        check_doc_key(collection, id_, self.docs.limits)
        item = await self.docs.live_actor().get(collection, id_)
        if item is None or not item.live(self.clock()):
            raise NotFound("document not found")
        return item

    async def doc_delete(self, collection: str, id_: str, *, if_revision: int | None = None) -> bool:
        return await self.call_docs(DocDelete(collection, id_, if_revision))

    async def doc_find(self, query: FindQuery):
        """One page of `find`: ([(id, doc, revision, expires_at_ms)], next_cursor or None)."""
        check_collection(query.collection, self.docs.limits)
        return await self.docs.find(query, self.clock())

    async def doc_collections(self, limit: int) -> list[tuple[str, int]]:
        """(name, live document count) of up to `limit` collections, by name."""
        return await self.docs.live_actor().collections(self.clock(), limit)

    async def doc_create_index(self, collection: str, field: str) -> tuple[str, bool]:
        check_collection(collection, self.docs.limits)
        json_path(field, what="field")
        return await self.docs.live_actor().create_index(collection, field, self.clock())

    def _sql(self) -> SqlService:
        if self.sql is None:
            raise NotEnabled("sqlite module is disabled")
        return self.sql

    async def sql_query_json(self, sql: str, params) -> JsonChunks:
        """The response body `{"rows": [...]}`, encoded in pieces on the SQL thread."""
        return await self._sql().query_json(sql, params)

    async def sql_exec(self, sql: str, params) -> int:
        return await self._sql().exec(sql, params)

    async def auth_key_create(self, name: str, role: str, permissions: bytes):
        return await self.keys.create(name, role, permissions)

    async def auth_key_list(self):
        return await self.keys.list()

    async def auth_key_delete(self, key_id: str) -> None:
        await self.keys.delete(key_id)

    # -- KV ----------------------------------------------------------------------------------

    def _kv(self) -> KvActor:
        actor = self.kv_actor
        if actor is None or self.closing:
            raise Unavailable("kv store unavailable, retry")
        return actor

    async def call_kv(self, command):
        actor = self._kv()
        req = Request(command)
        try:
            try:
                actor.inbox.send_nowait(req)  # the common case, without a coroutine
            except trio.WouldBlock:
                await send_or_overload(actor.inbox, req, OVERLOAD_WAIT_S)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Unavailable("kv store unavailable, retry") from None
        return await req.wait()

    async def kv_get(self, key: str) -> StateItem:
        check_key(key, self.limits)
        actor = self._kv()
        hit, item = actor.cached(key)
        if not hit:
            item = await actor.get(key)
        if item is None or not item.live(self.clock()):
            raise NotFound("key not found")
        return item

    async def kv_list(self, prefix: str, limit: int, start_after: str | None = None) -> list[StateItem]:
        """Live items under `prefix` in key-byte order, after `start_after` when given."""
        from kissvdb.errors import InvalidArgument

        if len(prefix.encode("utf-8")) > self.settings.max_key_len:
            raise InvalidArgument("prefix too long", field="prefix")
        if start_after is not None and len(start_after.encode("utf-8")) > self.settings.max_key_len:
            raise InvalidArgument("start_after too long", field="start_after")
        limit = max(0, min(limit, LIST_LIMIT_MAX))
        if limit == 0:
            return []
        return await self._kv().scan(prefix, limit, self.clock(), start_after)

    async def kv_put(self, key: str, value: RawJson, *, ttl_ms: int | None = None,
                     if_revision: int | None = None) -> StateItem:
        return await self.call_kv(Put(key, value, ttl_ms, if_revision))

    async def kv_delete(self, key: str, *, if_revision: int | None = None) -> bool:
        return await self.call_kv(Delete(key, if_revision))

    async def kv_batch_put(self, ops: list[PutOp]) -> list[StateItem | KissError]:
        cmd = BatchPut(tuple(Put(o.key, o.value, o.ttl_ms, o.if_revision) for o in ops))
        return await self.call_kv(cmd)

    # -- change stream -------------------------------------------------------------------

    def subscribe(self, since: int, flt, *, owner: str | None = None):
        """A change-stream subscription for the credential `owner` (ended when it is revoked),
        within the per-key and replay caps (429 / 503 otherwise)."""
        s = self.settings
        return self.broadcaster.subscribe(since, flt, owner=owner, owner_max=s.max_streams_per_key,
                                          replays_max=s.max_stream_replays)

    @property
    def durable_offset(self) -> int:
        return self.writer.durable_offset

    # -- maintenance ---------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """First step of a graceful stop: end SSE streams now (they would hold the HTTP
        server's graceful drain open); writes keep draining. Safe to call twice."""
        self.broadcaster.close()
        self.shutdown_requested.set()

    async def checkpoint(self) -> None:
        """Make every materializer durable up to its applied offset, then apply WAL retention."""
        actor = self.kv_actor
        if actor is None:
            return
        offsets = await actor.checkpoint()
        self.checkpointed["kv"] = offsets.get("kv", 0)
        if self.docs is not None:
            self.checkpointed.update(await self.docs.checkpoint())
        if self.vectors is not None:
            self.checkpointed["vectors"] = await self.vectors.checkpoint()
        # The retention floor is the smallest checkpointed offset over every materializer.
        floor = min(self.checkpointed[name] for name in ("kv", "docs", "vectors") if name in self.checkpointed)
        s = self.settings
        removed = await self.writer.run_locked(
            self.wal_log.retain, floor, s.wal_retention_segments, s.wal_retention_min_bytes,
            float(s.wal_retention_min_secs), time.time())
        if removed:
            log.info("retention: dropped %d WAL segment(s) checkpointed past offset %d", len(removed), floor)

    def _on_fatal(self, exc: BaseException) -> None:
        self.fatal_error = exc
        self.fatal.set()
        self.shutdown_requested.set()

    def metrics(self) -> list[tuple[str, str, float]]:
        w = self.writer.statistics()
        b = self.broadcaster.statistics()
        kv = self.kv_actor.state.statistics() if self.kv_actor is not None else {}
        return [
            ("state_put_total", "counter", self.counters["state_put_total"]),
            ("state_delete_total", "counter", self.counters["state_delete_total"]),
            ("vector_ops_total", "counter", self.counters["vector_ops_total"]),
            ("events_total", "counter", b.published_total),
            ("sse_clients", "gauge", b.subscribers),
            ("kissvdb_wal_durable_offset", "gauge", w.durable_offset),
            ("kissvdb_wal_first_offset", "gauge", self.wal_log.first_offset),
            ("kissvdb_wal_retained_bytes", "gauge", self.wal_log.retained_bytes),
            ("kissvdb_wal_batches_total", "counter", w.batches_total),
            ("kissvdb_wal_records_total", "counter", w.records_total),
            ("kissvdb_wal_bytes_total", "counter", w.bytes_total),
            ("kissvdb_wal_fsync_total", "counter", w.fsync_total),
            ("kissvdb_wal_fsync_seconds_total", "counter", w.fsync_seconds_total),
            ("kissvdb_wal_batch_records_max", "gauge", w.batch_records_max),
            ("kissvdb_wal_write_errors_total", "counter", w.write_errors_total),
            ("kissvdb_wal_failed", "gauge", 1 if w.failed else 0),
            ("kissvdb_checkpoint_offset", "gauge", self.checkpointed.get("kv", 0)),
            ("kissvdb_recovery_replayed_events", "gauge", self.recovery_replayed),
            ("kissvdb_kv_cache_items", "gauge", kv.get("cached", 0)),
            ("kissvdb_kv_inflight", "gauge", kv.get("inflight", 0)),
            ("kissvdb_kv_restarts_total", "counter", self.kv_restarts),
            ("kissvdb_sse_log_reads_total", "counter", b.log_reads_total),
            ("kissvdb_sse_gaps_total", "counter", b.gaps_total),
        ] + (self.docs.metrics() if self.docs is not None else []) + (
            self.sql.metrics() if self.sql is not None else []) + self.vector_metrics()

    # -- KV actor lifecycle ------------------------------------------------------------------

    async def _build_kv_actor(self) -> KvActor:
        """A fresh KV actor from durable state: (re)open state.sqlite and replay the WAL tail."""
        s = self.settings
        if self.store is not None:
            old = self.store
            self.store = None
            await self.store_thread.run(old.close)
        self.store = await self.store_thread.run(lambda: StateStore(self.store_path, durable=not s.memory))
        upto = self.writer.durable_offset
        replayed = await self.store_thread.run(lambda: replay_kv(self.store, self.wal_log, upto))
        if self.kv_actor is None and self.recovery_replayed == 0:
            self.recovery_replayed = replayed
        # Make the replayed state durable now, so retention and metrics start from a real
        # checkpoint instead of waiting for the first periodic one.
        durable = await self.store_thread.run(self.store.checkpoint)
        self.checkpointed["kv"] = durable.get("kv", 0)
        state = KvState(self.limits, s.kv_cache_items)
        return KvActor(state, self.store, self.store_thread, self.writer, inbox_size=s.inbox_requests_max,
                       inflight_max=s.inbox_requests_max * 4, clock=self.clock, counters=self.counters)

    def _kv_up(self, actor: KvActor) -> None:
        self.kv_actor = actor
        self._kv_changed.set()
        self._kv_changed = trio.Event()

    def _kv_down(self) -> None:
        self.kv_actor = None
        self.kv_restarts += 1
        self._kv_changed.set()
        self._kv_changed = trio.Event()

    async def wait_kv_changed(self) -> None:
        """Wait until the KV actor goes down or comes (back) up."""
        await self._kv_changed.wait()


@asynccontextmanager
async def open_engine(settings: Settings, *, fsync_delay_s: float = 0.0, clock=now_ms):
    from kissvdb.datadir import DataDir
    from kissvdb.wal.log import WalLog

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
        probe = await store_thread.run(lambda: StateStore(store_path, durable=not settings.memory))
        applied = probe.applied_offsets()
        await store_thread.run(probe.close)
        floor = min(applied.values(), default=0)
        ceiling = max(applied.values(), default=0)
        wal_log = await trio.to_thread.run_sync(lambda: WalLog.open(
            settings.data_dir, segment_max_bytes=settings.wal_segment_max_bytes,
            min_next_offset=ceiling + 1, verify_from=floor + 1, fsync=not settings.memory))
        log.info("WAL: offsets %d..%d, next %d", wal_log.first_offset, wal_log.last_offset, wal_log.next_offset)
        broadcaster = Broadcaster(wal_log, ring_size=settings.event_buffer_size,
                                  batch_max=settings.live_broadcast_capacity)
        broadcaster.set_durable_offset(wal_log.last_offset)
        engine_box: list[Engine] = []
        writer = WalWriter(wal_log, broadcaster, inbox_size=settings.inbox_requests_max,
                           batch_bytes_max=settings.wal_batch_bytes_max, fsync_delay_s=fsync_delay_s,
                           on_fatal=lambda exc: engine_box[0]._on_fatal(exc))
        engine = Engine(settings, wal_log, writer, broadcaster, store_path, store_thread, clock=clock)
        engine_box.append(engine)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                await nursery.start(lambda task_status: supervise(
                    "kv", engine._build_kv_actor, on_up=engine._kv_up, on_down=engine._kv_down,
                    task_status=task_status))
                engine.docs = DocService(settings, writer, wal_log, store_path, docs_thread, clock=clock)
                await nursery.start(engine.docs.run)
                engine.keys = KeyService(os.path.join(settings.data_dir, layout.KEYS_DB), clock=clock,
                                         on_revoke=broadcaster.revoke, durable=not settings.memory,
                                         keys_max=settings.max_api_keys)
                await engine.keys.open()
                if settings.sqlite_enabled:
                    engine.sql = SqlService(settings, writer, clock=clock)
                    await engine.sql.open()
                log.info("recovery: replayed %d events", engine.recovery_replayed)
                await _open_vectors(engine, nursery)
                background = trio.CancelScope()

                async def maintenance():
                    with background:
                        async with trio.open_nursery() as inner:
                            inner.start_soon(run_ttl_sweeper, engine)
                            inner.start_soon(run_checkpointer, engine)
                            inner.start_soon(run_doc_ttl_sweeper, engine)

                nursery.start_soon(maintenance)
                try:
                    yield engine
                finally:
                    with trio.CancelScope(shield=True):
                        await _shutdown(engine, background)
        finally:
            with trio.CancelScope(shield=True):
                for service in (engine.docs, engine.sql, engine.keys):
                    if service is not None:
                        await service.aclose()
                if engine.store is not None:
                    await store_thread.run(engine.store.close)
                if engine.vectors is not None:
                    await trio.to_thread.run_sync(engine.vectors.store.close)
                await trio.to_thread.run_sync(wal_log.close)
    finally:
        gc.set_threshold(*gc_threshold)
        with trio.CancelScope(shield=True):
            await docs_thread.aclose()
            await store_thread.aclose()
            await trio.to_thread.run_sync(datadir.close)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


async def _open_vectors(engine: Engine, nursery: trio.Nursery) -> None:
    """Open every vector collection (saved indexes, no rebuild) and replay the WAL tail past them."""
    from kissvdb.vectors.collection import VectorParams
    from kissvdb.vectors.store import VectorStore

    s = engine.settings
    params = VectorParams.from_settings(s)
    root = os.path.join(s.data_dir, layout.VECTORS_DIR)
    upto = engine.writer.durable_offset

    def load():
        store = VectorStore.open(root, params)
        replayed = store.replay(engine.wal_log, upto)
        return store, replayed

    store, replayed = await trio.to_thread.run_sync(load)
    log.info("recovery: %d vector collection(s), %d quarantined, replayed %d vector events",
             len(store.collections), len(store.quarantined), replayed)
    engine.vectors = VectorManager(store, engine.writer, engine.vector_limits(), params,
                                   inbox_size=s.inbox_requests_max, counters=engine.counters, clock=engine.clock,
                                   search_threads=max(2, os.cpu_count() or 1))
    await engine.vectors.start(nursery)


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
            await actor._pending.drained()
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

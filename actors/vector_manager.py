"""The vector collections of an engine: creation, drop, lookup, and each actor's supervision.

Separate from actors/vectors.py (one collection's actor) because its life is the engine's: it
serializes creations and drops (rare) with a lock; a creation is acknowledged once its
`vector_collection_created` event is durable (logged with its manifest key in one WAL write)
and the directory exists; a collection whose actor keeps failing, or whose files cannot be
reopened, is quarantined (503 for that collection) instead of stopping the server.
"""

from __future__ import annotations

import orjson
import trio

from kissvdb.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from kissvdb.events import VECTOR_COLLECTION_CREATED, VECTOR_COLLECTION_DELETED, EventRecord, RawJson
from kissvdb.kv.state import Along, Delete, Put
from kissvdb.recovery import replay
from kissvdb.vectors.collection import Collection
from kissvdb.vectors.store import VectorReplay

from kissvdb.actors.supervisor import supervise
from kissvdb.actors.vectors import VectorActor, manifest_key


class _StartedOnce:
    """A task status whose `started` may be called again (ignored): `_supervise` must report
    started even when the collection fails before its actor ever ran."""

    def __init__(self, task_status):
        self._task_status = task_status
        self._done = False

    def started(self, value=None) -> None:
        if not self._done:
            self._done = True
            self._task_status.started(value)


class VectorManager:
    """The collections of an engine: creation, drop, lookup. Lives in the Engine."""

    def __init__(self, store, writer, limits, params, *, inbox_size: int, counters, clock, search_threads: int,
                 call_kv):
        self.store = store
        self.call_kv = call_kv  # the KV actor logs a collection's events with its manifest key
        self.writer = writer
        self.limits = limits
        self.params = params
        self.inbox_size = inbox_size
        self.counters = counters
        self.clock = clock
        self.actors: dict[str, VectorActor] = {}
        self.lock = trio.Lock()
        self.search_limiter = trio.CapacityLimiter(search_threads)
        self.build_limiter = trio.CapacityLimiter(1)
        self.diskann_limiter = trio.CapacityLimiter(1)  # one DiskANN build at a time, engine-wide
        self.nursery: trio.Nursery | None = None
        self.closing = False
        self.restarts = 0
        self._stopped: dict[str, trio.Event] = {}
        self._dropping: set[str] = set()
        self._closed = trio.Event()  # set by aclose: `run` ends once its actors have stopped

    def actor(self, name: str) -> VectorActor:
        a = self.actors.get(name)
        if a is None or a.closed:
            self.check_not_quarantined(name)
            if name in self.store.collections and name not in self._dropping:
                raise Unavailable("vector collection unavailable, retry")
            raise NotFound("collection or id not found", field="collection")
        return a

    def check_not_quarantined(self, name: str) -> None:
        q = self.store.quarantine_of(name)
        if q is not None:
            raise q.error()

    def new_actor(self, coll) -> VectorActor:
        return VectorActor(coll, self.limits, self.writer, inbox_size=self.inbox_size,
                           inflight_max=self.inbox_size * 4, counters=self.counters,
                           apply_limiter=trio.CapacityLimiter(1), search_limiter=self.search_limiter,
                           build_limiter=self.build_limiter, clock=self.clock,
                           diskann_limiter=self.diskann_limiter)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run every collection's actor in the manager's own nursery (started, then created
        ones) until `aclose` has drained them."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for coll in list(self.store.collections.values()):
                await nursery.start(self._supervise, coll.name)
            task_status.started(self)
            await self._closed.wait()

    async def _supervise(self, name: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the collection's actor; on a crash, reopen it from disk + WAL and start again."""

        async def factory():
            if name in self.actors:  # a restart: rebuild from the checkpoint and the WAL tail
                await trio.to_thread.run_sync(self._reopen, name)
            return self.new_actor(self.store.collections[name])

        def up(actor):
            self.actors[name] = actor

        def down():
            self.restarts += 1
            a = self.actors.get(name)
            if a is not None:
                a.closed = True

        status = _StartedOnce(task_status)
        stopped = self._stopped[name] = trio.Event()
        try:
            await supervise(f"vector:{name}", factory, on_up=up, on_down=down, task_status=status)
        except Exception as exc:
            # Its files cannot be reopened, or it kept failing: one collection out of service
            # (503), not the whole server. Its WAL is kept for the repair (VectorStore docstring).
            self.actors.pop(name, None)
            await trio.to_thread.run_sync(self.store.quarantine_loaded, name, exc)
            status.started(None)
        finally:
            stopped.set()

    def _reopen(self, name: str) -> None:

        old = self.store.collections[name]
        old.close()
        coll = Collection.open(old.dir, self.params)
        self.store.collections[name] = coll
        replay(self.writer.log, self.writer.durable_offset, [VectorReplay(self.store, only=coll)])


    async def create(self, name: str, dim: int, metric: str, kind: str):
        """Log the creation, then make the directory. Everything that can be checked is checked
        first (existence, quarantine, the staging directory), so a refusal writes nothing; once
        the event is durable the creation is acknowledged, and a disk failure after that
        quarantines the collection (VectorStore.create) rather than answering an error."""
        async with self.lock:
            if self.closing:
                raise Unavailable("shutting down")
            if name in self.store.collections:
                raise AlreadyExists("collection already exists", field="collection")
            self.check_not_quarantined(name)
            held = len(self.store.collections) + len(self.store.quarantined)
            if held >= self.limits.max_collections:
                # Listing them and /v1/metrics walk every collection on the event loop.
                raise InvalidArgument(f"too many collections (MAX_VECTOR_COLLECTIONS is "
                                      f"{self.limits.max_collections}); drop one first", field="collection")
            await trio.to_thread.run_sync(self.store.prepare_create, name)
            ts = self.clock()
            event = (ts, VECTOR_COLLECTION_CREATED, {"collection": name, "dim": dim, "metric": metric, "index": kind})
            manifest = {"collection": name, "dim": dim, "metric": metric, "created_at_ms": ts, "updated_at_ms": ts}
            put = Put(manifest_key(name), RawJson(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)))
            try:
                records = await self.call_kv(Along(put, (event,)))  # one WAL write: both or neither
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.store.abandon_create, name)
                raise
            rec: EventRecord = records[0]
            with trio.CancelScope(shield=True):
                coll = await trio.to_thread.run_sync(
                    self.store.create, name, dim, metric, kind, rec.offset, rec.ts_ms)
                if coll is not None:
                    await self.nursery.start(self._supervise, name)
            return rec

    async def drop(self, name: str):
        async with self.lock:
            actor = self.actor(name)
            event = (self.clock(), VECTOR_COLLECTION_DELETED, {"collection": name})
            records = await self.call_kv(Along(Delete(manifest_key(name)), (event,)))
            with trio.CancelScope(shield=True):
                self._dropping.add(name)
                try:
                    actor.closed = True
                    await actor.inbox.aclose()  # the actor finishes what it accepted, then stops
                    await self._stopped[name].wait()
                    self.actors.pop(name, None)
                    await trio.to_thread.run_sync(self.store.drop, name, records[0].offset)
                finally:
                    self._dropping.discard(name)
            return True

    async def checkpoint(self) -> int:
        """Checkpoint every collection and the registry; return the durable floor.

        Also the maintenance schedule: every collection looks again at what is due (thresholds
        are checked after each apply too)."""
        for name, actor in list(self.actors.items()):
            if not actor.closed:
                await actor.checkpoint()
                actor.want_maintenance()
        if not self.lock.locked():
            self.store.advance(self.writer.durable_offset)
        await trio.to_thread.run_sync(self.store.checkpoint_registry)
        return self.store.checkpointed_floor()

    async def aclose(self) -> None:
        """Finish accepted writes of every collection (shutdown)."""
        self.closing = True
        try:
            for actor in list(self.actors.values()):
                await actor.inbox.aclose()
            for actor in list(self.actors.values()):
                await actor.wait_drained()
        finally:
            self._closed.set()

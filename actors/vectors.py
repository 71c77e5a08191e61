"""Vector actors: one per collection, plus the manager that creates, drops and finds them.

A collection's actor mirrors the KV actor (actors/kv.py):
- main loop: take requests from the inbox (a few at a time), decide each against durable state +
  the in-flight overlay (kissvdb/vectors/state.py), queue the events to the WAL writer; never
  wait for one write's fsync before deciding the next;
- applier: wait for the oldest queued write to be resolved, take every resolved write at the
  head, apply them in ONE Collection.apply call in a worker thread (run files, index add), then
  reply. Replies come in offset order and only after the change is visible to searches.
- searches and gets do not go through the inbox: they run in worker threads (a shared limiter),
  concurrently with each other and with ingestion; they only ever see durable state. A search
  in a thread stops at its request's deadline (it writes nothing: the request is answered 408).
- maintenance (IVF training, HNSW segment merges, run compaction) runs in a worker thread under
  the engine-wide index-build limiter when an apply leaves it due, or when a request asks for a
  compaction (run in the actor's nursery, so the request may time out and the work carries on);
  only its short install step takes the collection's write lock.

The manager of every collection's actor is actors/vector_manager.py.
"""

from __future__ import annotations

import logging
import math
import time

import trio

from kissvdb.errors import Unavailable
from kissvdb.vectors.hnsw import WouldBlock
from kissvdb.vectors.state import DeleteBatch, UpsertBatch, VectorState, to_op

from kissvdb.actors.diskann_builds import DiskAnnBuilds
from kissvdb.actors.write_actor import Pending, WriteActor

SEARCH_BATCHES_IN_FLIGHT = 2


def manifest_key(name: str) -> str:
    """The KV key of a collection's manifest (contract §3.5), written only with its events."""
    return f"vector:{name}:manifest"

log = logging.getLogger("kissvdb.vectors")

class _CompactionJob:
    """One requested compaction: what it ran (or its error), and when it was done."""

    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: dict | None = None
        self.error: BaseException | None = None


class VectorActor(WriteActor):
    """One collection's writes through the write loop (actors/write_actor.py); its searches,
    gets and maintenance beside it."""

    UNAVAILABLE = "vector collection restarting, retry"

    def __init__(self, collection, limits, wal_writer, *, inbox_size: int, inflight_max: int, counters,
                 apply_limiter: trio.CapacityLimiter, search_limiter: trio.CapacityLimiter,
                 build_limiter: trio.CapacityLimiter, clock, diskann_limiter: trio.CapacityLimiter | None = None):
        super().__init__(VectorState(collection, limits), wal_writer, inbox_size=inbox_size,
                         inflight_max=inflight_max, clock=clock, counters=counters)
        self.c = collection
        self.name = collection.name
        self.apply_limiter = apply_limiter
        self.search_limiter = search_limiter
        self.build_limiter = build_limiter
        self._maintenance_wanted = trio.Event()
        self._search_queue: list = []
        self._search_ready = trio.Event()
        self._search_inflight: list = []
        self._batcher_running = False
        self.search_batches = 0
        self.search_batched = 0
        # One hnswlib thread per batch: a second one would take the core the event loop needs
        # to parse the next requests (2-CPU measurement in docs/BENCHMARKS.md).
        self.search_threads = 1
        self.maintenance_runs = 0
        self._nursery: trio.Nursery | None = None
        self._compaction_lock = trio.Lock()
        self._compaction_next: _CompactionJob | None = None  # requested, not started yet
        # DISKANN collections: their builds (actors/diskann_builds.py).
        self.diskann = (DiskAnnBuilds(self, diskann_limiter or trio.CapacityLimiter(1))
                        if collection.disk is not None else None)

    # -- the write loop's hooks --------------------------------------------------------------

    def start_tasks(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._maintainer)
        self._batcher_running = True
        nursery.start_soon(self._batcher)
        self._maintenance_wanted.set()  # a collection may open already due (e.g. untrained)

    def batch_ops(self, command):
        if isinstance(command, UpsertBatch):
            return command.items
        if isinstance(command, DeleteBatch):
            return command.ids
        return None

    def refused_batch(self, command, slots: list):
        return self._batch_results(command, slots, [])

    async def apply_durable(self, done: list) -> list:
        """ONE Collection.apply call in a worker thread for every durable write of the round
        (run files, index add); every event of this collection up to the durable offset is in
        it or applied, so the collection may record that offset."""
        metric = self.c.metric
        ops = [to_op(r, metric) for queued in done for r in queued.write.records]
        await trio.to_thread.run_sync(self.c.apply, ops, self.writer.durable_offset, limiter=self.apply_limiter)
        self.counters["vector_ops_total"] += len(ops)
        if ops:
            self._maintenance_wanted.set()
        return [None] * len(done)

    def result(self, p: Pending):
        cmd = p.request.command
        if isinstance(cmd, (UpsertBatch, DeleteBatch)):
            return self._batch_results(cmd, p.slots, p.decisions)
        return True

    @staticmethod
    def _batch_results(cmd, slots, decisions):
        out = []
        it = iter(decisions)
        items = cmd.items if isinstance(cmd, UpsertBatch) else cmd.ids
        ok = "upserted" if isinstance(cmd, UpsertBatch) else "deleted"
        for item, slot in zip(items, slots):
            if slot is None:
                d = next(it)
                out.append({"status": ok, "id": d.id})
            else:
                vid = item if isinstance(item, str) else item.id
                out.append({"status": "error", "id": vid, "error": {"error": slot.code, "message": slot.message}})
        return out

    # -- reads -------------------------------------------------------------------------------

    async def _batcher(self) -> None:
        """Runs queued unfiltered HNSW searches together: one worker-thread hop and one hnswlib
        call (its own threads, GIL released) per batch, while the event loop keeps parsing the
        next requests. Searches that arrive while a batch runs form the next one."""
        try:
            await self._run_batches()
        finally:
            # Stopping (shutdown or a crash): nobody may wait forever for a batch that won't run.
            self._batcher_running = False
            for slot in self._search_inflight + self._search_queue:
                if not slot[4].is_set():
                    slot[3] = Unavailable("vector collection restarting, retry")
                    slot[4].set()
            self._search_queue = []

    async def _run_batches(self) -> None:
        # Up to SEARCH_BATCHES_IN_FLIGHT batches at once: while one walks the graph (GIL
        # released), the next one forms and starts, so the event loop never waits on a batch.
        slots_free = trio.Semaphore(SEARCH_BATCHES_IN_FLIGHT)
        async with trio.open_nursery() as nursery:
            while True:
                await slots_free.acquire()
                await self._search_ready.wait()
                self._search_ready = trio.Event()
                batch, self._search_queue = self._search_queue, []
                self._search_inflight.extend(batch)
                self.search_batches += 1
                self.search_batched += len(batch)
                nursery.start_soon(self._run_batch, batch, slots_free)

    async def _run_batch(self, batch: list, slots_free) -> None:
        try:
            groups: dict = {}
            for slot in batch:
                groups.setdefault(slot[2], []).append(slot)  # by ef
            for ef, slots in groups.items():
                k = max(s[1] for s in slots)
                queries = [s[0] for s in slots]
                try:
                    res = await trio.to_thread.run_sync(self.c.search_many_live, queries, k, ef,
                                                        self.search_threads, limiter=self.search_limiter)
                except Exception as exc:  # handed to each caller, which falls back
                    res = exc
                for i, s in enumerate(slots):
                    s[3] = res if res is None or isinstance(res, Exception) else res[i][: s[1]]
                    s[4].set()
        finally:
            for slot in batch:  # cancelled (shutdown) before its answer: nobody may wait forever
                if not slot[4].is_set():
                    slot[3] = Unavailable("vector collection restarting, retry")
                    slot[4].set()
            done = {id(s) for s in batch}
            self._search_inflight = [s for s in self._search_inflight if id(s) not in done]
            slots_free.release()

    async def search(self, vector, k: int, **kw):
        c = self.c
        if (self._batcher_running and c.batchable(kw.get("predicate"), kw.get("group_by"))
                and len(self._search_queue) < 4096):
            slot = [vector, k, kw.get("ef"), None, trio.Event()]
            self._search_queue.append(slot)
            self._search_ready.set()
            await slot[4].wait()
            if isinstance(slot[3], Unavailable):
                raise slot[3]
            if isinstance(slot[3], list):
                if kw.get("include_meta"):
                    meta_of = c.meta_of
                    return [h._replace(meta=meta_of(h.id)) for h in slot[3]]
                return slot[3]
            # None (a vector died meanwhile) or an error: answer through the general path.
        return await self._search_one(vector, k, **kw)

    async def _search_one(self, vector, k: int, **kw):
        """A small search (HNSW graph walk, tiny scan) runs right here: a thread hop would cost
        more than the search, and on a busy machine the wake-up of a worker thread alone takes
        milliseconds. Anything larger, or one that meets a writer on the mutable HNSW segment,
        runs in a worker thread."""
        c = self.c
        if c.cheap_search(kw.get("predicate"), kw.get("group_by"), k, kw.get("ef")):
            try:
                return c.search(vector, k, blocking=False, **kw)
            except WouldBlock:
                pass
        # Abandoned if the request's deadline passes: a search writes nothing, so the request is
        # answered 408 on time. The thread stops at its next look at the same deadline (Searcher)
        # and holds its limiter slot until then.
        deadline = trio.current_effective_deadline()
        until = None if math.isinf(deadline) else time.monotonic() + (deadline - trio.current_time())
        return await trio.to_thread.run_sync(lambda: c.search(vector, k, deadline=until, **kw),
                                             limiter=self.search_limiter, abandon_on_cancel=True)

    def get(self, vid: str):
        return self.c.get(vid)

    # -- maintenance -------------------------------------------------------------------------

    async def checkpoint(self) -> int:
        """Advance the applied offset if idle, then make the collection durable up to it."""
        if self.idle:
            durable = self.writer.durable_offset
            await trio.to_thread.run_sync(self.c.apply, [], durable, limiter=self.apply_limiter)
        return await trio.to_thread.run_sync(self.c.checkpoint, limiter=self.apply_limiter)

    def want_maintenance(self) -> None:
        """Look again at what is due (the checkpointer's schedule)."""
        self._maintenance_wanted.set()

    async def _maintainer(self) -> None:
        if self.diskann is not None:
            await self.diskann.reconcile()  # the boot's replay is done: serve the mapped build
        while True:
            await self._maintenance_wanted.wait()
            self._maintenance_wanted = trio.Event()
            await self.maintain()
            if self.diskann is not None:
                await self.diskann.maybe_rebuild()

    async def compact(self) -> dict:
        """Compact now (every dead record dropped, every HNSW segment merged), then checkpoint;
        returns what ran. The work runs in the actor's own nursery: a caller that stops waiting
        (its request deadline) gets 408 while the compaction carries on, instead of cutting a
        merge or a pass short and throwing its work away. Requests that arrive while one runs
        share the next one: at most one runs and one waits."""
        if self._nursery is None or self.closed:
            raise Unavailable("vector collection restarting, retry")
        job = self._compaction_next
        if job is None:
            job = self._compaction_next = _CompactionJob()
            self._nursery.start_soon(self._run_compaction, job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    async def _run_compaction(self, job: _CompactionJob) -> None:
        try:
            async with self._compaction_lock:
                if self._compaction_next is job:
                    self._compaction_next = None  # from here on, a new request needs a new run
                job.result = await self.maintain(force_compaction=True, optimize=True)
                await self.checkpoint()
        except Exception as exc:  # the waiting requests answer it; the actor carries on
            job.error = exc
        finally:
            if job.result is None and job.error is None:
                job.error = Unavailable("vector collection restarting, retry")  # cancelled: shutdown
            job.done.set()

    async def maintain(self, *, force_compaction: bool = False, optimize: bool = False) -> dict:
        """Run whatever is due: IVF (re)training, HNSW merges, run compaction. Returns what ran."""
        c = self.c
        ran = {"trained": False, "merged": False, "compacted": 0}
        async with self.build_limiter:
            if c.training_due():
                prep = await trio.to_thread.run_sync(c.prepare_training, limiter=self.apply_limiter)
                result = await trio.to_thread.run_sync(c.train, prep)
                ran["trained"] = await trio.to_thread.run_sync(
                    c.install_training, result, self.clock(), limiter=self.apply_limiter)
            if optimize and c.hnsw is not None:
                await trio.to_thread.run_sync(c.seal_mutable, limiter=self.apply_limiter)
            segs = c.merge_due(all_segments=optimize)
            if segs:
                merged = await trio.to_thread.run_sync(c.merge_segments, segs)
                await trio.to_thread.run_sync(c.install_merge, segs, merged, limiter=self.apply_limiter)
                ran["merged"] = True
            force = force_compaction
            while True:
                prep = await trio.to_thread.run_sync(lambda: c.prepare_compaction(force=force),
                                                     limiter=self.apply_limiter)
                if prep is None:
                    break
                result = await trio.to_thread.run_sync(c.run_compaction, prep)
                await trio.to_thread.run_sync(c.install_compaction, prep, result, limiter=self.apply_limiter)
                ran["compacted"] += 1
                force = False
                if ran["compacted"] >= 64:
                    break
        if any(ran.values()):
            self.maintenance_runs += 1
        return ran

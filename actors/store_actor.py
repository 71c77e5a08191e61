"""The write actor of KV and documents: state in memory, state.sqlite on a store thread.

A WriteActor (actors/write_actor.py) whose model keeps a bounded cache of durable state and the
full set in state.sqlite. Before deciding a batch it loads the keys the batch needs that are
not cached. Applying a round of durable writes updates the cache first, then hands the changes
to the store thread as one state.sqlite transaction, without waiting. While the store thread is
busy, later rounds join the transaction still waiting for it (fewer, larger transactions:
SQLite writes each dirty page once per commit).

Reads do not go through the inbox: a cache hit is answered on the spot, a miss or a listing is
a job on the store thread, which runs after every apply submitted before it. An idle actor
still moves its applied offset to the durable offset at each checkpoint, so its materializer
never pins the WAL.

A subclass says what differs: how a command names its keys, what a decision answers, how an
applied change is counted, and which store method applies a batch of changes.
"""

from __future__ import annotations

import threading
from collections import deque

import trio

from kissvdb.recovery import replay

from kissvdb.actors.mailbox import Request
from kissvdb.actors.write_actor import Queued, WriteActor

APPLY_JOIN_MAX = 8192  # changes one state.sqlite transaction may gather while it waits


class StoreFailed(Exception):
    """state.sqlite refused an apply: the actor stops and its supervisor rebuilds it."""


class _ApplyJob:
    """The changes of one state.sqlite transaction. Until the store thread starts it, later
    batches may join it; the lock makes "join" and "start" exclude each other (held only to
    flip or test a flag, never during I/O)."""

    __slots__ = ("changes", "touched", "offset", "started", "_lock")

    def __init__(self, changes: list, touched: list, offset: int):
        self.changes = changes
        self.touched = touched
        self.offset = offset
        self.started = False
        self._lock = threading.Lock()

    def join(self, changes: list, touched: list, offset: int) -> bool:
        with self._lock:
            if self.started or len(self.changes) >= APPLY_JOIN_MAX:
                return False
            self.changes += changes
            self.touched += touched
            self.offset = max(self.offset, offset)
            return True

    def start(self) -> None:
        with self._lock:
            self.started = True


class StoreActor(WriteActor):
    STORE_NAME = "state.sqlite"

    def __init__(self, state, store, store_thread, wal_writer, *, inbox_size: int, inflight_max: int,
                 clock, counters):
        super().__init__(state, wal_writer, inbox_size=inbox_size, inflight_max=inflight_max, clock=clock,
                         counters=counters)
        self.store = store
        self.thread = store_thread
        self._store_error: BaseException | None = None
        self._store_failed = trio.Event()
        self._submitted_applied = 0
        self._apply_job: _ApplyJob | None = None  # the last one submitted to the store thread
        self._committed: deque = deque()  # touched lists of committed jobs (appended by the store thread)
        self._round: tuple[list, list] = ([], [])  # this applier round's (changes, touched)

    # -- what a subclass says ----------------------------------------------------------------

    def keys_of(self, command) -> list:
        raise NotImplementedError

    def applied(self, record, change) -> object:
        """Count an applied change; return the key its cache entry is committed under."""
        raise NotImplementedError

    def apply_to_store(self, changes, applied_offset: int) -> None:
        """The store thread's job: one state.sqlite transaction for `changes`."""
        raise NotImplementedError

    # -- the write loop's hooks ------------------------------------------------------------

    def start_tasks(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._watch_store)

    async def _watch_store(self) -> None:
        await self._store_failed.wait()
        raise StoreFailed(f"{self.STORE_NAME} failed: {self._store_error!r}") from self._store_error

    async def _decide_received(self, batch: list[Request]) -> None:
        keys = {k for r in batch for k in self.keys_of(r.command)}
        self.state.pin(keys)
        try:
            missing = self.state.missing(keys)
            if missing:
                await self._load(missing)
            await self._decide_batch(batch)
        finally:
            self.state.unpin(keys)

    async def apply_durable(self, done: list[Queued]) -> list:
        """Apply to the cache now; the state.sqlite transaction is submitted by after_apply,
        once the callers have their answers."""
        self._release_committed()
        state = self.state
        changes = []
        touched = []
        out = []
        for queued in done:
            results: list = []
            for record in queued.write.records:
                change = state.apply(record)
                results.append(change)
                if change is not None:
                    changes.append(change)
                    touched.append((self.applied(record, change), record.offset))
            out.append(results)
        self._round = (changes, touched)
        return out

    def after_apply(self) -> None:
        # Every event of this materializer up to the durable offset is applied now (a head
        # that is not done is not durable), so state.sqlite may record that offset even if
        # it was not ours.
        changes, touched = self._round
        self._round = ([], [])
        self._submit_apply(changes, touched, self.writer.durable_offset)

    def _submit_apply(self, changes, touched, applied_offset: int) -> None:
        if not changes and applied_offset <= self._submitted_applied:
            return
        self._submitted_applied = max(self._submitted_applied, applied_offset)
        job = self._apply_job
        if job is not None and job.join(changes, touched, applied_offset):
            return  # the store thread has not started it yet: one transaction for both
        job = self._apply_job = _ApplyJob(changes, touched, applied_offset)
        self.thread.submit(self._run_apply, job, callback=self._apply_failed, errors_only=True)

    def _run_apply(self, job: _ApplyJob) -> None:
        """On the store thread. Success is reported through `_committed`, which the actor
        reads at its next applier round, so a commit costs the event loop no wake-up."""
        job.start()
        self.apply_to_store(job.changes, job.offset)
        self._committed.append(job.touched)

    def _apply_failed(self, ok: bool, error: BaseException) -> None:
        if self._store_error is None:
            self._store_error = error
            self._store_failed.set()

    def _release_committed(self) -> None:
        """Let the cache evict keys whose changes state.sqlite has committed."""
        committed = self._committed
        while committed:
            self.state.committed(committed.popleft())

    # -- reads and maintenance ---------------------------------------------------------

    async def _load(self, keys) -> None:
        keys = list(keys)
        self.state.pin(keys)
        try:
            items = await self.thread.run(self.store.get_many, keys)
            self.state.loaded(items)
        finally:
            self.state.unpin(keys)

    async def _get(self, key):
        hit, item = self.state.lookup(key)
        if not hit:
            await self._load([key])
            hit, item = self.state.lookup(key)
            if not hit:  # evicted already (tiny cache): read straight through
                item = (await self.thread.run(self.store.get_many, [key]))[key]
        return item

    async def due_expirations(self, now_ms: int, limit: int):
        return await self.thread.run(self.store.due_expirations, now_ms, limit)

    async def checkpoint(self) -> dict[str, int]:
        """Advance the applied offset if idle, then make the store durable up to it."""
        if self.idle:
            self._submit_apply([], [], self.writer.durable_offset)
        offsets = await self.thread.run(self.store.checkpoint)
        self._release_committed()  # an idle actor's last commits
        return offsets


async def reopen_and_replay(service, open_store, materializer):
    """(Re)open a store service's state.sqlite connection on its thread and replay the WAL tail
    into it: the start of every build of the KV and document actors (first and after a crash).
    `service` has `store`, `thread`, `writer` and `wal_log`; returns the new store."""
    if service.store is not None:
        old, service.store = service.store, None
        await service.thread.run(old.close)
    service.store = store = await service.thread.run(open_store)
    upto = service.writer.durable_offset
    # At boot, actors/boot.py replayed the tail into every materializer: nothing to read.
    await service.thread.run(lambda: replay(service.wal_log, upto, [materializer(store)]))
    return store

"""The write actor behind KV and documents: state in memory, state.sqlite on a store thread.

Main loop: take the requests in the inbox (up to DRAIN_MAX), load the keys they need that are
not cached, decide each one against durable state + the in-flight overlay, and queue the events
of all of them to the WAL writer as ONE write. It never waits for a write's fsync before
deciding the next batch. One write per inbox wake-up (not per request) keeps the per-request
cost to the decision itself: one message, one event and one wake-up per batch.

Applier task: waits for the oldest queued write to be resolved, then applies every resolved
write at the head (cache first, then one state.sqlite transaction for the lot, submitted to the
store thread without waiting) and replies. Replies therefore come in offset order and only
after the change is visible to reads. While the store thread is busy, later batches join the
transaction still waiting for it (fewer, larger transactions: SQLite writes each dirty page
once per commit).

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

from kissvdb.errors import KissError, PersistenceError, Unavailable
from kissvdb.kv import Along

from kissvdb.actors.mailbox import CANCELLED, QUEUED, PendingWrites, Request, receive_batch, refuse_undecided
from kissvdb.actors.wal import WalWrite

DRAIN_MAX = 64  # requests decided per inbox wake-up
APPLY_JOIN_MAX = 8192  # changes one state.sqlite transaction may gather while it waits


class StoreFailed(Exception):
    """state.sqlite refused an apply: the actor stops and its supervisor rebuilds it."""


class Pending:
    """One request's part of a queued write: its decisions and, once durable, their records."""

    __slots__ = ("request", "decisions", "slots", "records", "changes", "along")

    def __init__(self, request, decisions, slots, along: int = 0):
        self.request = request
        self.decisions = decisions
        self.slots = slots  # for a batch: per-op result or error, decisions fill the None slots
        self.along = along  # events of another model logged before the decisions' (kv.Along)
        self.records = None  # this request's EventRecords, in decision order, once durable
        self.changes = None  # what state.apply returned for each record, once applied


class _Queued:
    """One write to the WAL: the events of the requests decided in one inbox wake-up."""

    __slots__ = ("write", "pendings")

    def __init__(self, write: WalWrite, pendings: list[Pending]):
        self.write = write
        self.pendings = pendings


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


class StoreActor:
    UNAVAILABLE = "store restarting, retry"  # what callers hear while it restarts
    STORE_NAME = "state.sqlite"
    EXPIRE: type = type(None)  # the TTL command, which answers None (not False) when a no-op

    def __init__(self, state, store, store_thread, wal_writer, *, inbox_size: int, inflight_max: int,
                 clock, counters):
        self.state = state
        self.store = store
        self.thread = store_thread
        self.writer = wal_writer
        self.inbox, self._receive = trio.open_memory_channel(inbox_size)
        self._wal = wal_writer.send_channel.clone()
        self.inflight_max = inflight_max
        self.clock = clock
        self.counters = counters
        self.epoch = wal_writer.epoch
        self._pending = PendingWrites()  # of _Queued, weighed by their requests
        self._applying: list = []  # (_Queued, apply results): durable, popped, being applied
        self._store_error: BaseException | None = None
        self._store_failed = trio.Event()
        self._submitted_applied = 0
        self._apply_job: _ApplyJob | None = None  # the last one submitted to the store thread
        self._committed: deque = deque()  # touched lists of committed jobs (appended by the store thread)
        self._batch: list[Request] = []  # taken from the inbox, not yet decided
        self.closed = False

    # -- what a subclass says ----------------------------------------------------------------

    def keys_of(self, command) -> list:
        raise NotImplementedError

    def batch_ops(self, command) -> list | None:
        """The operations of a batch command (each decided on its own), or None."""
        return None

    def result(self, p: Pending):
        """What the caller of a write that became durable hears."""
        raise NotImplementedError

    def applied(self, record, change) -> object:
        """Count an applied change; return the key its cache entry is committed under."""
        raise NotImplementedError

    def apply_to_store(self, changes, applied_offset: int) -> None:
        """The store thread's job: one state.sqlite transaction for `changes`."""
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._applier)
            nursery.start_soon(self._watch_store)
            task_status.started(self)
            async with self._receive, self._wal:
                await self._serve_inbox()
                await self._pending.drained()  # inbox closed (shutdown): finish what was accepted
            nursery.cancel_scope.cancel()

    async def wait_drained(self) -> None:
        await self._pending.drained()

    async def _watch_store(self) -> None:
        await self._store_failed.wait()
        raise StoreFailed(f"{self.STORE_NAME} failed: {self._store_error!r}") from self._store_error

    async def settle_after_crash(self) -> None:
        """After a crash: acknowledge what was durable and being applied (the rebuilt actor
        replays it from the WAL), refuse what was never queued, and report the WAL writer's
        verdict for everything queued, shielded."""
        self.closed = True
        for queued, _ in self._applying:
            self._reply(queued, None)
        self._applying = []
        refuse_undecided(self._batch, self._receive, Unavailable(self.UNAVAILABLE))
        with trio.CancelScope(shield=True):
            for queued in list(self._pending):
                await queued.write.done.wait()
                if queued.write.error is not None:
                    for p in queued.pendings:
                        p.request.fail(queued.write.error)
                else:
                    self._reply(queued, None)
        self._pending.clear()

    # -- deciding ----------------------------------------------------------------------------

    async def _serve_inbox(self) -> None:
        receive = self._receive
        while True:
            batch = await receive_batch(receive, DRAIN_MAX)
            if batch is None:
                return
            self._batch = batch
            keys = {k for r in batch for k in self.keys_of(r.command)}
            self.state.pin(keys)
            try:
                missing = self.state.missing(keys)
                if missing:
                    await self._load(missing)
                await self._decide_batch(batch)
            finally:
                self.state.unpin(keys)

    async def _decide_batch(self, batch: list[Request]) -> None:
        """Decide `batch` in order and queue the events as one write (more than one only when
        the in-flight bound is reached and the rest must wait for room)."""
        pending = self._pending
        now = self.clock()
        write, queued = WalWrite([], self.epoch), []
        try:
            for req in batch:
                if req.state == CANCELLED:
                    continue
                if pending.requests + len(queued) >= self.inflight_max:
                    await self._queue(write, queued)
                    await pending.room(self.inflight_max)
                    now = self.clock()
                    write, queued = WalWrite([], self.epoch), []
                p = self._decide(req, now, write)
                if p is not None:
                    queued.append(p)
        except BaseException:
            # A decision raised (a bug: the actor crashes) or the actor was cancelled: the
            # requests decided into `write` were never sent, so nothing of them was written.
            for p in queued:
                p.request.fail(Unavailable(self.UNAVAILABLE))
            raise
        await self._queue(write, queued)

    def _decide(self, req: Request, now: int, write: WalWrite) -> Pending | None:
        """Decide one request and add its events to `write`; None if it was answered here
        (refused, a no-op, or a batch whose every operation was refused)."""
        cmd = req.command
        state = self.state
        slots = None
        ops = self.batch_ops(cmd)
        if ops is not None:
            slots = []
            decisions = []
            for op in ops:
                try:
                    d = state.decide(op, now)
                except KissError as exc:
                    slots.append(exc)
                    continue
                slots.append(None)
                decisions.append(d)
                state.begin(d, write)  # later ops (and requests) see it; `write` is the token
            if not decisions:
                req.succeed(slots)
                return None
            write.events.extend((now, d.type, d.data) for d in decisions)
        else:
            along = None
            if type(cmd) is Along:  # another model's events first, in the same write
                along = cmd.events
                cmd = cmd.command
            try:
                d = state.decide(cmd, now)
            except KissError as exc:
                req.fail(exc)
                return None
            if along is not None:
                write.events.extend(along)
            if d is None:
                if along is None:
                    req.succeed(None if isinstance(cmd, self.EXPIRE) else False)
                    return None
                decisions = []
            else:
                decisions = [d]
                state.begin(d, write)
                write.events.append((now, d.type, d.data))
            if along is not None:
                req.state = QUEUED
                return Pending(req, decisions, slots, len(along))
        req.state = QUEUED
        return Pending(req, decisions, slots)

    async def _queue(self, write: WalWrite, queued: list[Pending]) -> None:
        if not queued:
            return
        self._pending.push(_Queued(write, queued), len(queued))
        try:
            try:
                self._wal.send_nowait(write)  # the common case: no task switch per batch
            except trio.WouldBlock:
                await self._wal.send(write)  # the WAL writer's inbox is full: backpressure
        except BaseException:
            # Not delivered (the actor is cancelled, or the WAL writer is gone): nothing of it
            # was written, and its callers, waiting shielded since QUEUED, must hear that.
            write.error = PersistenceError("failed to persist event: write abandoned, nothing was written", status=503)
            write.done.set()
            raise

    # -- applying ----------------------------------------------------------------------------

    async def _applier(self) -> None:
        pending = self._pending
        state = self.state
        while True:
            settled = await pending.settled()
            self._release_committed()
            changes = []
            touched = []
            for _ in range(settled):
                queued = pending.pop()
                write = queued.write
                if write.error is not None:
                    self._fail(queued, write.error)
                    continue
                results: list = []
                self._applying.append((queued, results))
                for record in write.records:
                    change = state.apply(record)
                    results.append(change)
                    if change is not None:
                        changes.append(change)
                        touched.append((self.applied(record, change), record.offset))
                for p in queued.pendings:
                    for d in p.decisions:
                        state.finish(d.key, write)
            applying, self._applying = self._applying, []
            for queued, results in applying:
                self._reply(queued, results)
            # Every event of this materializer up to the durable offset is applied now (a head
            # that is not done is not durable), so state.sqlite may record that offset even if
            # it was not ours.
            self._submit_apply(changes, touched, self.writer.durable_offset)
            pending.changed()

    def _reply(self, queued: _Queued, results: list | None) -> None:
        """Answer the requests of a durable write; `results` are the apply results of its
        records (None when the actor crashed before applying them)."""
        records = queued.write.records
        i = 0
        for p in queued.pendings:
            n = len(p.decisions) + p.along
            p.records = records[i : i + n]
            if results is not None:
                p.changes = results[i : i + n]
            i += n
            p.request.succeed(self.result(p))

    def _fail(self, queued: _Queued, error: PersistenceError) -> None:
        for p in queued.pendings:
            for d in p.decisions:
                self.state.finish(d.key, queued.write)
        if self.writer.epoch != self.epoch:
            # Writes decided on top of the failed ones will fail too; start from durable state.
            self.state.drop_inflight()
            self.epoch = self.writer.epoch
        for p in queued.pendings:
            p.request.fail(error)

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
        if not self._pending:
            self._submit_apply([], [], self.writer.durable_offset)
        offsets = await self.thread.run(self.store.checkpoint)
        self._release_committed()  # an idle actor's last commits
        return offsets

"""The write actor behind KV and documents: state in memory, state.sqlite on a store thread.

Main loop: take requests from the inbox (a few at a time), load the keys they need that are not
cached, decide each one against durable state + the in-flight overlay, and queue the events to
the WAL writer. It never waits for one write's fsync before deciding the next.

Applier task: waits for the oldest queued write to be resolved, then applies every resolved
write at the head (cache first, then one state.sqlite transaction for the lot, submitted to the
store thread without waiting) and replies. Replies therefore come in offset order and only
after the change is visible to reads.

Reads do not go through the inbox: a cache hit is answered on the spot, a miss or a listing is
a job on the store thread, which runs after every apply submitted before it. An idle actor
still moves its applied offset to the durable offset at each checkpoint, so its materializer
never pins the WAL.

A subclass says what differs: how a command names its keys, what a decision answers, how an
applied change is counted, and which store method applies a batch of changes.
"""

from __future__ import annotations

import trio

from kissvdb.errors import KissError, PersistenceError, Unavailable

from kissvdb.actors.mailbox import CANCELLED, QUEUED, PendingWrites, Request, receive_batch, settle_crashed
from kissvdb.actors.wal import WalWrite

DRAIN_MAX = 64  # requests decided per inbox wake-up


class StoreFailed(Exception):
    """state.sqlite refused an apply: the actor stops and its supervisor rebuilds it."""


class Pending:
    __slots__ = ("request", "decisions", "write", "slots")

    def __init__(self, request, decisions, write, slots):
        self.request = request
        self.decisions = decisions
        self.write = write
        self.slots = slots  # for a batch: per-op result or error, decisions fill the None slots


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
        self._pending = PendingWrites()  # of Pending
        self._store_error: BaseException | None = None
        self._store_failed = trio.Event()
        self._submitted_applied = 0
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
        """After a crash: refuse what was never queued, report the WAL verdict for what was."""
        self.closed = True
        await settle_crashed(self._batch, self._receive, self._pending, Unavailable(self.UNAVAILABLE), self.result)

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
                for req in batch:
                    if req.state == CANCELLED:
                        continue
                    await self._pending.room(self.inflight_max)
                    await self._decide_and_queue(req)
            finally:
                self.state.unpin(keys)

    async def _decide_and_queue(self, req: Request) -> None:
        cmd = req.command
        now = self.clock()
        state = self.state
        write = WalWrite([], self.epoch)  # also the in-flight overlay's token for these decisions
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
                state.begin(d, write)  # later ops of this batch see it
            if not decisions:
                req.succeed(slots)
                return
        else:
            try:
                d = state.decide(cmd, now)
            except KissError as exc:
                req.fail(exc)
                return
            if d is None:
                req.succeed(None if isinstance(cmd, self.EXPIRE) else False)
                return
            decisions = [d]
            state.begin(d, write)
        write.events = [(now, d.type, d.data) for d in decisions]
        req.state = QUEUED
        self._pending.push(Pending(req, decisions, write, slots))
        await self._wal.send(write)

    # -- applying ----------------------------------------------------------------------------

    async def _applier(self) -> None:
        pending = self._pending
        while True:
            settled = await pending.settled()
            changes = []
            touched = []
            for _ in range(settled):
                p = pending.pop()
                write = p.write
                if write.error is not None:
                    self._fail(p, write.error)
                    continue
                for record in write.records:
                    change = self.state.apply(record)
                    if change is not None:
                        changes.append(change)
                        touched.append((self.applied(record, change), record.offset))
                for d in p.decisions:
                    self.state.finish(d.key, write)
                p.request.succeed(self.result(p))
            # Every event of this materializer up to the durable offset is applied now (a head
            # that is not done is not durable), so state.sqlite may record that offset even if
            # it was not ours.
            self._submit_apply(changes, touched, self.writer.durable_offset)
            pending.changed()

    def _fail(self, p: Pending, error: PersistenceError) -> None:
        for d in p.decisions:
            self.state.finish(d.key, p.write)
        if self.writer.epoch != self.epoch:
            # Writes decided on top of the failed ones will fail too; start from durable state.
            self.state.drop_inflight()
            self.epoch = self.writer.epoch
        p.request.fail(error)

    def _submit_apply(self, changes, touched, applied_offset: int) -> None:
        if not changes and applied_offset <= self._submitted_applied:
            return
        self._submitted_applied = max(self._submitted_applied, applied_offset)

        def committed(ok: bool, result) -> None:
            if ok:
                self.state.committed(touched)
            elif self._store_error is None:
                self._store_error = result
                self._store_failed.set()

        self.thread.submit(self.apply_to_store, changes, applied_offset, callback=committed)

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
        return await self.thread.run(self.store.checkpoint)

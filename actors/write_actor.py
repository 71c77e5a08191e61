"""The one write loop every data model uses: decide -> WAL -> apply -> reply.

Main loop: take the requests in the inbox (up to DRAIN_MAX), decide each one against durable
state + the in-flight overlay, and queue the events of all of them to the WAL writer as ONE
write. It never waits for a write's fsync before deciding the next batch. One write per inbox
wake-up (not per request) keeps the per-request cost to the decision itself: one message, one
event and one wake-up per batch.

Applier task: waits for the oldest queued write to be resolved, takes every resolved write at
the head, has the model apply them (`apply_durable`), then replies. Replies therefore come in
offset order and only after the change is visible to reads.

A model says what differs, as hooks: the KV and document actors (actors/store_actor.py: a cache
in memory, state.sqlite on a store thread) and each vector collection's actor
(actors/vectors.py: run files and indexes applied in a worker thread). The state object a model
hands in decides (`decide(command, now)` -> Decision with `.key .type .data`, None for a no-op,
or raises KissError), tracks the in-flight overlay (`begin`, `finish`, `drop_inflight`) and,
for the store actors, applies (`apply`).
"""

from __future__ import annotations

import trio

from kissvdb.errors import KissError, PersistenceError, Unavailable
from kissvdb.kv.state import Along

from kissvdb.actors.mailbox import (
    CANCELLED, PendingWrites, Request, receive_batch, refuse_undecided, send_or_overload,
)
from kissvdb.actors.wal import WalWrite

DRAIN_MAX = 64  # requests decided per inbox wake-up
OVERLOAD_WAIT_S = 0.5  # how long a full inbox may hold a caller before 503


async def call(actor: "WriteActor", command, gone):
    """Send `command` to a write actor and wait for its answer: the one call path of every
    model. A full inbox holds the caller up to OVERLOAD_WAIT_S (then 503 `overloaded`, nothing
    queued); a closed one (the actor stopped) raises `gone()`."""
    req = Request(command)
    try:
        try:
            actor.inbox.send_nowait(req)  # the common case, without a coroutine
        except trio.WouldBlock:
            await send_or_overload(actor.inbox, req, OVERLOAD_WAIT_S)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        raise gone() from None
    return await req.wait()


class Pending:
    """One request's part of a queued write: its decisions and, once durable, their records."""

    __slots__ = ("request", "decisions", "slots", "records", "changes", "along")

    def __init__(self, request, decisions, slots, along: int = 0):
        self.request = request
        self.decisions = decisions
        self.slots = slots  # for a batch: per-op result or error, decisions fill the None slots
        self.along = along  # events of another model logged before the decisions' (kv.Along)
        self.records = None  # this request's EventRecords, in decision order, once durable
        self.changes = None  # what the model's apply returned for each record, once applied


class Queued:
    """One write to the WAL: the events of the requests decided in one inbox wake-up."""

    __slots__ = ("write", "pendings")

    def __init__(self, write: WalWrite, pendings: list[Pending]):
        self.write = write
        self.pendings = pendings


class WriteActor:
    UNAVAILABLE = "store restarting, retry"  # what callers hear while it restarts
    EXPIRE: type = type(None)  # the TTL command, which answers None (not False) when a no-op

    def __init__(self, state, wal_writer, *, inbox_size: int, inflight_max: int, clock, counters):
        self.state = state
        self.writer = wal_writer
        self.inbox, self._receive = trio.open_memory_channel(inbox_size)
        self._wal = wal_writer.send_channel.clone()
        self.inflight_max = inflight_max
        self.clock = clock
        self.counters = counters
        self.epoch = wal_writer.epoch
        self._pending = PendingWrites()  # of Queued, weighed by their requests
        self._applying: list[Queued] = []  # durable, popped, being applied
        self._batch: list[Request] = []  # taken from the inbox, not yet decided
        self.closed = False

    # -- what a model says -------------------------------------------------------------------

    def batch_ops(self, command) -> list | None:
        """The operations of a batch command (each decided on its own), or None."""
        return None

    def refused_batch(self, command, slots: list):
        """What a batch whose every operation was refused answers (nothing is written)."""
        return slots

    def result(self, p: Pending):
        """What the caller of a write that became durable hears."""
        raise NotImplementedError

    async def apply_durable(self, done: list[Queued]) -> list:
        """Apply the durable writes `done` (oldest first); per write, the list of what each of
        its records changed (handed to `result` as `Pending.changes`)."""
        raise NotImplementedError

    def after_apply(self) -> None:
        """After the replies of an applier round (the store actors submit their transaction)."""

    def start_tasks(self, nursery: trio.Nursery) -> None:
        """The model's own tasks beside the loop and the applier."""

    async def _decide_received(self, batch: list[Request]) -> None:
        """Decide what was taken from the inbox (a store actor loads missing keys first)."""
        await self._decide_batch(batch)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._applier)
            self.start_tasks(nursery)
            task_status.started(self)
            async with self._receive, self._wal:
                await self._serve_inbox()
                await self._pending.drained()  # inbox closed (shutdown): finish what was accepted
            nursery.cancel_scope.cancel()

    async def wait_drained(self) -> None:
        await self._pending.drained()

    @property
    def idle(self) -> bool:
        """No write of this actor waits for its verdict or its apply."""
        return not self._pending

    async def settle_after_crash(self) -> None:
        """After a crash: acknowledge what was durable and being applied (the rebuilt actor
        replays it from the WAL), refuse what was never queued, and report the WAL writer's
        verdict for everything queued, shielded."""
        self.closed = True
        for queued in self._applying:
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
            await self._decide_received(batch)

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
        ops = self.batch_ops(cmd)
        if ops is not None:
            return self._decide_ops(req, ops, now, write)
        state = self.state
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
            state.begin(d, write)  # later requests see it; `write` is the token
            write.events.append((now, d.type, d.data))
        req.queued()
        return Pending(req, decisions, None, len(along) if along is not None else 0)

    def _decide_ops(self, req: Request, ops, now: int, write: WalWrite) -> Pending | None:
        """A batch: each operation decided on its own, its error reported in its slot."""
        state = self.state
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
            state.begin(d, write)  # later ops (and requests) see it
        if not decisions:
            req.succeed(self.refused_batch(req.command, slots))
            return None
        write.events.extend((now, d.type, d.data) for d in decisions)
        req.queued()
        return Pending(req, decisions, slots)

    async def _queue(self, write: WalWrite, queued: list[Pending]) -> None:
        if not queued:
            return
        self._pending.push(Queued(write, queued), len(queued))
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
            done = []
            for _ in range(settled):
                queued = pending.pop()
                if queued.write.error is not None:
                    self._fail(queued, queued.write.error)
                else:
                    done.append(queued)
            self._applying = done  # durable: if the apply fails, settle_after_crash acks them
            results = await self.apply_durable(done)
            self._applying = []
            for queued, changes in zip(done, results):
                write = queued.write
                for p in queued.pendings:
                    for d in p.decisions:
                        state.finish(d.key, write)
                self._reply(queued, changes)
            self.after_apply()
            pending.changed()

    def _reply(self, queued: Queued, results: list | None) -> None:
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

    def _fail(self, queued: Queued, error: PersistenceError) -> None:
        for p in queued.pendings:
            for d in p.decisions:
                self.state.finish(d.key, queued.write)
        if self.writer.epoch != self.epoch:
            # Writes decided on top of the failed ones will fail too; start from durable state.
            self.state.drop_inflight()
            self.epoch = self.writer.epoch
        for p in queued.pendings:
            p.request.fail(error)

"""Requests to actors and their replies.

A `Request` carries a command and a reply slot. Its life: PENDING in an actor's inbox, QUEUED
once its event went to the WAL writer, then DONE. A caller cancelled while PENDING withdraws the
request (the actor skips it: nothing is written). Once QUEUED the caller waits for the verdict
shielded from cancellation, because the write may already be durable and the caller must hear
which way it went (DESIGN, "Write outcome").
"""

from __future__ import annotations

from collections import deque

import trio

from kissvdb.errors import KissError, Overloaded

PENDING, QUEUED, CANCELLED, DONE = range(4)


class Request:
    """A command and its reply slot. The caller parks in `wait()` with no Event of its own:
    `succeed`/`fail` reschedule its task directly (trio.lowlevel), one wake-up per request,
    and cancellation follows the states above through the abort callback."""

    __slots__ = ("command", "state", "_task", "_value", "_error")

    def __init__(self, command):
        self.command = command
        self.state = PENDING
        self._task = None  # the caller's task while it is parked in wait()
        self._value = None
        self._error: BaseException | None = None

    def queued(self) -> None:
        """Its events went to the WAL writer: from now on its caller waits for the verdict."""
        self.state = QUEUED

    def succeed(self, value) -> None:
        if self.state != DONE:
            self.state = DONE
            self._value = value
            self._wake()

    def fail(self, error: BaseException) -> None:
        if self.state != DONE:
            self.state = DONE
            self._error = error
            self._wake()

    def _wake(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    @property
    def done(self) -> bool:
        return self.state == DONE

    async def wait(self):
        if self.state == DONE:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            self._task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        if self._error is not None:
            raise self._error
        return self._value

    def _abort(self, raise_cancel) -> trio.lowlevel.Abort:
        if self.state == PENDING:
            # Still in the inbox: withdraw it (the actor skips it, nothing is written).
            self.state = CANCELLED
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED
        # Queued to the WAL: the outcome is decided elsewhere and must reach the caller, so the
        # caller stays parked until succeed/fail; the cancellation is delivered at its next
        # checkpoint.
        return trio.lowlevel.Abort.FAILED


async def send_or_overload(channel: trio.MemorySendChannel, item, wait_s: float) -> None:
    """Queue `item`, waiting at most `wait_s` for room; then Overloaded (nothing was queued)."""
    try:
        channel.send_nowait(item)
        return
    except trio.WouldBlock:
        pass
    with trio.move_on_after(wait_s):
        await channel.send(item)
        return
    raise Overloaded("server overloaded, retry later")


async def receive_batch(receive: trio.MemoryReceiveChannel, max_items: int) -> list | None:
    """One request (waiting for it), then whatever else is already queued, up to `max_items`.
    None once the inbox is closed and empty."""
    try:
        batch = [await receive.receive()]
    except trio.EndOfChannel:
        return None
    while len(batch) < max_items:
        try:
            batch.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return batch


def refuse_queued(receive: trio.MemoryReceiveChannel, error: KissError) -> None:
    """After an actor crash: fail every request still in its inbox (none was decided)."""
    while True:
        try:
            req = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        req.fail(error)


async def settle_crashed(taken: list, receive: trio.MemoryReceiveChannel, pending, error: KissError,
                         result) -> None:
    """After an actor crash: refuse the requests it had `taken` from its inbox but not queued
    and every request still in the inbox (none was decided), then report the WAL writer's
    verdict for each write it had queued."""
    refuse_undecided(taken, receive, error)
    await report_verdicts(pending, result)


def refuse_undecided(taken: list, receive: trio.MemoryReceiveChannel, error: KissError) -> None:
    """After an actor crash: fail the requests it had `taken` from its inbox but not queued,
    and every request still in the inbox (none of them was decided)."""
    for req in taken:
        if req.state not in (QUEUED, DONE):
            req.fail(error)
    refuse_queued(receive, error)


class PendingWrites:
    """An actor's writes sent to the WAL writer, oldest first, each awaiting its verdict
    (`item.write.done`); its applier takes them in offset order. An item may carry several
    requests (`push(item, requests)`): `requests` is what `room` bounds. One event, renewed on
    every change, wakes whoever waits for room in the queue, for the next write, or for it to
    drain."""

    __slots__ = ("_q", "_changed", "requests")

    def __init__(self):
        self._q: deque = deque()  # of (item, requests)
        self._changed = trio.Event()
        self.requests = 0  # requests in the queued items

    def __len__(self) -> int:
        return len(self._q)

    def __iter__(self):
        return (item for item, _ in self._q)

    def clear(self) -> None:
        self._q.clear()
        self.requests = 0
        self.changed()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def push(self, item, requests: int = 1) -> None:
        self._q.append((item, requests))
        self.requests += requests
        self.changed()

    async def room(self, limit: int) -> None:
        """Wait until fewer than `limit` requests are in flight."""
        while self.requests >= limit:
            await self._changed.wait()

    async def drained(self) -> None:
        while self._q:
            await self._changed.wait()

    async def settled(self) -> int:
        """Wait for the oldest write's verdict; return how many writes at the head have one.
        The caller pops and applies them one by one (what it has not popped when it crashes
        is still here for `report_verdicts`), then calls `changed()`."""
        while not self._q:
            await self._changed.wait()
        q = self._q
        await q[0][0].write.done.wait()
        n = 0
        for item, _ in q:
            if not item.write.done.is_set():
                break
            n += 1
        return n

    def pop(self):
        item, requests = self._q.popleft()
        self.requests -= requests
        return item


async def report_verdicts(pending, result) -> None:
    """After an actor crash: each write it queued gets the WAL writer's verdict, shielded,
    since a durable write must be acknowledged even though its actor is gone."""
    with trio.CancelScope(shield=True):
        for p in list(pending):
            await p.write.done.wait()
            if p.write.error is not None:
                p.request.fail(p.write.error)
            else:
                p.request.succeed(result(p))
    pending.clear()

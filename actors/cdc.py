"""The change stream broadcaster: durable events out to SSE subscribers, none lost, none twice.

What it owns: the published durable offset as the change stream sees it, a bounded ring of the
most recent durable events (each with its SSE frame, encoded at most once and only if some
subscriber wants it), and the set of open subscriptions.

Guarantees:
- `publish` never blocks, never awaits and never waits on a subscriber: it appends to the ring,
  advances `durable_offset` and wakes whoever is waiting. The WAL writer calls it after fsync.
- A subscription pulls; nothing is pushed into per-subscriber queues. It keeps its own
  `next_offset` and takes events from the ring while its offset is still there, else from the
  WAL files in a worker thread. Replay and live tail are one loop keyed on offsets, so every
  durable event after `since` that matches the filter is delivered exactly once, in offset
  order, and a slow subscriber is caught up from the log instead of being dropped.
- Nothing past `durable_offset` is ever read or sent (no dirty reads on the stream either).
- A `gap` notice is sent only when offsets a subscriber needs are no longer retained by the WAL,
  once per such jump, and the subscriber continues from the oldest retained event.

What it never does: parse HTTP, hold an unbounded buffer, or run log reads on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from kissvdb.cdc import KEEPALIVE, EventFilter, event_json, gap_frame, sse_frame
from kissvdb.errors import Overloaded, TooManyRequests
from kissvdb.events import EventRecord, decode_payload
from kissvdb.wal.log import OffsetNotRetained

# Bytes of WAL payload one catch-up read may return. Bounds the memory and the worker-thread
# time of one step; JSON for the same events is ~1-3x this.
LOG_READ_BYTES_MAX = 1 << 20
# A chunk taken from the ring stops growing past this many bytes, so one wake-up never builds
# (or encodes on the event loop) an unbounded amount of JSON.
CHUNK_BYTES_MAX = 1 << 20
# Worker threads reading the WAL for lagging subscribers, shared by all of them, so catch-up
# never takes more than this from the thread pool (fsync and SQL have their own limiters).
LOG_READERS_MAX = 2


@dataclass(frozen=True, slots=True)
class BroadcasterStats:
    subscribers: int
    published_total: int
    ring_len: int
    log_reads_total: int
    gaps_total: int


class _Published:
    """A ring entry: one durable record and, once some subscriber needed it, its SSE frame."""

    __slots__ = ("record", "_frame")

    def __init__(self, record: EventRecord):
        self.record = record
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        frame = self._frame
        if frame is None:
            frame = self._frame = sse_frame(self.record, event_json(self.record))
        return frame


class _Ring:
    """The last `size` published entries, addressed by publish sequence number (0, 1, ...)."""

    __slots__ = ("_slots", "_size", "end")

    def __init__(self, size: int):
        self._slots: list[_Published | None] = [None] * size
        self._size = size
        self.end = 0  # sequence number the next entry gets

    @property
    def start(self) -> int:
        return max(0, self.end - self._size)

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, seq: int) -> _Published:
        return self._slots[seq % self._size]

    def append(self, entry: _Published) -> _Published | None:
        """Add `entry`; return the entry it evicted, if the ring was full."""
        slot = self.end % self._size
        evicted = self._slots[slot] if self.end >= self._size else None
        self._slots[slot] = entry
        self.end += 1
        return evicted

    def first_at_or_after(self, offset: int) -> int:
        """Sequence number of the first entry whose offset is >= `offset` (`end` if none)."""
        lo, hi = self.start, self.end
        if lo == hi or offset <= self[lo].record.offset:
            return lo
        # Offsets are contiguous except after a `repair` hole, so try the direct index first.
        guess = lo + (offset - self[lo].record.offset)
        if guess < hi and self[guess].record.offset == offset:
            return guess
        while lo < hi:
            mid = (lo + hi) // 2
            if self[mid].record.offset < offset:
                lo = mid + 1
            else:
                hi = mid
        return lo


@dataclass(frozen=True, slots=True)
class _LogChunk:
    """What one catch-up read produced (built in the worker thread)."""

    frames: bytes
    next_offset: int
    last_delivered: int | None
    first_retained: int | None  # set when the range was no longer retained: send a gap


def _read_log_chunk(wal, start: int, end: int, flt: EventFilter, max_bytes: int) -> _LogChunk:
    # Runs in a worker thread: WalLog.read is thread-safe against the writer's appends, and
    # decoding + encoding here keeps a large catch-up off the event loop.
    try:
        rows = wal.read(start, end, max_bytes)
    except OffsetNotRetained as error:
        return _LogChunk(b"", start, None, error.first_offset)
    parts = []
    last_delivered = None
    for offset, payload in rows:
        record = decode_payload(offset, payload)
        if flt.matches(record):
            parts.append(sse_frame(record, event_json(record)))
            last_delivered = offset
    # An empty answer means no record exists in [start, end] (a hole left by `repair`); a
    # short one (max_bytes) continues after the last record returned.
    next_offset = rows[-1][0] + 1 if rows else end + 1
    return _LogChunk(b"".join(parts), next_offset, last_delivered, None)


class Broadcaster:
    """Fans durable events out to subscriptions; see the module docstring for the guarantees.

    Must be used from the Trio thread (publish wakes Trio tasks). `wal` is the
    `kissvdb.wal.log.WalLog` the events were written to; only `read` and `first_offset` are used.
    """

    def __init__(
        self,
        wal,
        *,
        ring_size: int,
        batch_max: int = 4096,
        keepalive_s: float = 15.0,
        log_readers: int = LOG_READERS_MAX,
        log_read_bytes_max: int = LOG_READ_BYTES_MAX,
        chunk_bytes_max: int = CHUNK_BYTES_MAX,
    ):
        if ring_size < 1:
            raise ValueError("ring_size must be at least 1")
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self._wal = wal
        self.batch_max = batch_max
        self.keepalive_s = keepalive_s
        self.log_read_bytes_max = log_read_bytes_max
        self.chunk_bytes_max = chunk_bytes_max
        self._ring = _Ring(ring_size)
        # Invariant: every durable event with offset > _ring_floor is in the ring. It starts at
        # the boot durable offset (those events are only in the WAL) and moves up to the
        # offset of each evicted entry.
        self._ring_floor = 0
        self.durable_offset = 0
        self._wakeup = trio.Event()
        self._subscriptions: set[Subscription] = set()
        self._by_owner: dict[str, set[Subscription]] = {}
        self._log_limiter = trio.CapacityLimiter(log_readers)
        self._closed = False
        self._published_total = 0
        self._log_reads_total = 0
        self._gaps_total = 0
        # Called with every published batch, after the ring: materializers that follow durable
        # events (the /search index, actors/search.py). Each must not block.
        self.followers: list = []

    def set_durable_offset(self, offset: int) -> None:
        """At boot: everything up to `offset` is already durable in the WAL (not in the ring)."""
        if self._published_total:
            raise RuntimeError("set_durable_offset is for boot, before the first publish")
        self.durable_offset = offset
        self._ring_floor = offset

    def publish(self, records: list[EventRecord]) -> None:
        """Make `records` (durable, in offset order) visible to subscribers. Never blocks.

        Offsets must be strictly increasing and above `durable_offset`; anything else is a bug
        in the caller and raises before any state changes.
        """
        previous = self.durable_offset
        for record in records:
            if record.offset <= previous:
                raise ValueError(
                    f"published offset {record.offset} is not above {previous}"
                )
            previous = record.offset
        for record in records:
            evicted = self._ring.append(_Published(record))
            if evicted is not None:
                self._ring_floor = evicted.record.offset
        self.durable_offset = previous
        self._published_total += len(records)
        for follow in self.followers:
            follow(records)
        if records and self._subscriptions:
            self._wake()

    def _wake(self) -> None:
        # One Event per "something changed": setting it wakes every waiting subscription at
        # O(1) cost to the publisher; each then pulls what it needs.
        wakeup, self._wakeup = self._wakeup, trio.Event()
        wakeup.set()

    def subscribe(self, since: int, flt: EventFilter, *, owner: str | None = None,
                  owner_max: int | None = None, replays_max: int | None = None) -> Subscription:
        """Every durable event with offset > `since` that matches `flt`, then the live tail.

        `owner` (the API key's id) ties the subscription to a credential: `revoke(owner)` ends
        it. Refused, with nothing subscribed, when `owner` already holds `owner_max` (429), or
        when the stream would replay from the log while `replays_max` others are (503): a
        replay from offset 0 reads the whole retained log, so only a few run at once.
        After `close()` the subscription is born closed: its iteration ends at once.
        """
        if since < 0:
            raise ValueError("since must be >= 0")
        owned = self._by_owner.get(owner) if owner is not None else None
        if owner_max is not None and owned is not None and len(owned) >= owner_max:
            raise TooManyRequests(f"this API key already holds {owner_max} open streams")
        replay = since + 1 <= self._ring_floor
        if replay and replays_max is not None:
            if sum(1 for s in self._subscriptions if s.replaying) >= replays_max:
                raise Overloaded(f"{replays_max} streams are already replaying from the log; retry")
        subscription = Subscription(self, since, flt, owner, replay)
        if self._closed:
            subscription._closed = True
            return subscription
        self._subscriptions.add(subscription)
        if owner is not None:
            self._by_owner.setdefault(owner, set()).add(subscription)
        return subscription

    def revoke(self, owner: str) -> int:
        """End every subscription opened with `owner`'s credential, now: none of them delivers
        another chunk (each checks `_closed` after every read). Returns how many ended."""
        owned = self._by_owner.pop(owner, set())
        for subscription in list(owned):
            subscription.close()
        return len(owned)

    def _forget(self, subscription: "Subscription") -> None:
        self._subscriptions.discard(subscription)
        owner = subscription.owner
        if owner is not None:
            owned = self._by_owner.get(owner)
            if owned is not None:
                owned.discard(subscription)
                if not owned:
                    del self._by_owner[owner]

    def close(self) -> None:
        """End every subscription's iteration (shutdown ends streams before draining writes).

        `publish` keeps working afterwards, so the WAL writer can drain without special cases.
        """
        self._closed = True
        for subscription in self._subscriptions:
            subscription._closed = True
        self._subscriptions.clear()
        self._by_owner.clear()
        self._wake()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> BroadcasterStats:
        return BroadcasterStats(
            subscribers=len(self._subscriptions),
            published_total=self._published_total,
            ring_len=len(self._ring),
            log_reads_total=self._log_reads_total,
            gaps_total=self._gaps_total,
        )


class Subscription:
    """An async iterator of SSE bytes: each item is one or more frames, or a keep-alive.

    One consumer task at a time. Items are meant to be written as they come (one write per
    wake-up). `next_offset` is the first offset not yet looked at; `last_offset` the offset of
    the last event delivered (starts at `since`; gap notices and keep-alives do not move it).
    Use as `async with broadcaster.subscribe(...) as sub: async for chunk in sub: ...`.
    """

    def __init__(self, broadcaster: Broadcaster, since: int, flt: EventFilter,
                 owner: str | None = None, replaying: bool = False):
        self._broadcaster = broadcaster
        self._filter = flt
        self.owner = owner
        # True while this stream started behind the ring and has not caught up to it yet.
        self.replaying = replaying
        self.next_offset = since + 1
        self.last_offset = since
        self._closed = False
        self._waiting = False
        self._last_sent = trio.current_time()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        b = self._broadcaster
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self.next_offset <= b.durable_offset:
                chunk = await self._read()
                if self._closed:
                    raise StopAsyncIteration
                if chunk:
                    self._last_sent = trio.current_time()
                    return chunk
                # Everything read was filtered out; look again without waiting.
                continue
            wakeup = b._wakeup
            self._waiting = True
            try:
                with trio.move_on_at(self._last_sent + b.keepalive_s) as scope:
                    await wakeup.wait()
            finally:
                self._waiting = False
            if scope.cancelled_caught and not self._closed and self.next_offset > b.durable_offset:
                self._last_sent = trio.current_time()
                return KEEPALIVE

    async def _read(self) -> bytes:
        # Ring reads never touch a thread; this checkpoint keeps a subscriber whose filter
        # rejects a long run of events from hogging the event loop. It must come before the
        # floor test: publishing during it can evict the entries the test found in the ring.
        await trio.lowlevel.checkpoint()
        wal = self._broadcaster._wal
        first_retained = wal.first_offset if wal is not None else 0
        if self.next_offset < first_retained:
            # Retention is the WAL's: an event still in the ring but no longer in the log is
            # reported as a gap too, so a stream looks the same before and after a restart.
            return self._gap(first_retained)
        if self.next_offset > self._broadcaster._ring_floor:
            self.replaying = False
            return self._read_ring()
        return await self._read_log()

    def _read_ring(self) -> bytes:
        b = self._broadcaster
        ring = b._ring
        flt = self._filter
        everything = flt.is_open
        seq = ring.first_at_or_after(self.next_offset)
        stop = min(ring.end, seq + b.batch_max)
        if seq == stop:
            # The newest ring entry is the durable offset, so this means the floor invariant
            # broke. Skipping ahead would lose events silently; stop this stream loudly instead.
            raise RuntimeError(
                f"CDC ring has no event at or after {self.next_offset} "
                f"(durable {b.durable_offset}, floor {b._ring_floor})"
            )
        parts = []
        size = 0
        for s in range(seq, stop):
            entry = ring[s]
            record = entry.record
            self.next_offset = record.offset + 1
            if everything or flt.matches(record):
                frame = entry.frame()
                parts.append(frame)
                self.last_offset = record.offset
                size += len(frame)
                if size >= b.chunk_bytes_max:
                    break
        return b"".join(parts)

    async def _read_log(self) -> bytes:
        b = self._broadcaster
        start = self.next_offset
        first_retained = b._wal.first_offset
        if start < first_retained:
            return self._gap(first_retained)
        # Read no further than the ring floor: from there on the ring has every event, with
        # frames shared between subscribers, and the floor is at most the durable offset.
        end = min(b._ring_floor, start + b.batch_max - 1)
        b._log_reads_total += 1
        chunk = await trio.to_thread.run_sync(
            _read_log_chunk,
            b._wal,
            start,
            end,
            self._filter,
            b.log_read_bytes_max,
            limiter=b._log_limiter,
        )
        if chunk.first_retained is not None:
            # Retention removed the range between the check above and the read.
            return self._gap(chunk.first_retained)
        self.next_offset = chunk.next_offset
        if chunk.last_delivered is not None:
            self.last_offset = chunk.last_delivered
        return chunk.frames

    def _gap(self, first_retained: int) -> bytes:
        from_offset = self.next_offset
        to_offset = first_retained - 1
        self.next_offset = first_retained
        self._broadcaster._gaps_total += 1
        return gap_frame(from_offset, to_offset, to_offset - from_offset + 1)

    def close(self) -> None:
        """Unsubscribe; a pending or later `__anext__` ends the iteration."""
        if self._closed:
            return
        self._closed = True
        b = self._broadcaster
        b._forget(self)
        if self._waiting:
            b._wake()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.close()

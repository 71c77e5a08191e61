"""One pass over the WAL tail, feeding every materializer: boot and every supervisor restart.

Boot time depends on the tail since the last checkpoint, not on the length of history: each
materializer's applied offset is read from its checkpoint, and the WAL is read ONCE, from the
smallest of them, each record decoded once and handed to every materializer that has not
applied it yet. At boot the pass feeds all of them (KV and documents in state.sqlite, every
vector collection); a restarted actor runs the same pass for its own materializer alone.
Replay never reads the clock; TTL expiry is itself a logged event.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from kissvdb.events import DOC_EVENTS, KV_EVENTS, EventRecord, decode_payload

log = logging.getLogger("kissvdb.recovery")

READ_BYTES = 8 << 20


class Materializer(Protocol):
    """What replay feeds. `applied` is the last offset it holds and `types` the event types it
    takes (it is fed later records of those types only); `feed` takes one record, `flush(last)`
    ends a read batch whose last offset is `last`, and `finish(upto)` records that everything up
    to `upto` is applied."""

    applied: int
    types: frozenset

    def feed(self, record: EventRecord) -> None: ...

    def flush(self, last: int) -> None: ...

    def finish(self, upto: int) -> None: ...


class StoreReplay:
    """A state.sqlite materializer (KV or documents): its changes applied one transaction per
    read batch, with the applied offset (`apply(changes, last)`)."""

    def __init__(self, applied: int, types, to_change, apply):
        self.applied = applied
        self.types = frozenset(types)
        self._to_change = to_change
        self._apply = apply
        self._changes: list = []

    def feed(self, record: EventRecord) -> None:
        change = self._to_change(record)
        if change is not None:
            self._changes.append(change)

    def flush(self, last: int) -> None:
        changes, self._changes = self._changes, []
        if changes or last > self.applied:
            self._apply(changes, last)

    def finish(self, upto: int) -> None:
        if self.applied < upto:
            self._apply([], upto)


def kv_replay(store) -> StoreReplay:
    from kissvdb.kv.state import event_to_change

    return StoreReplay(store.applied_offset("kv"), KV_EVENTS, event_to_change, store.apply_kv)


def docs_replay(store) -> StoreReplay:
    from kissvdb.documents.state import event_to_change

    return StoreReplay(store.applied_offset(), DOC_EVENTS, event_to_change, store.apply_docs)


def replay(wal, upto: int, materializers: list, *, progress=None) -> int:
    """Feed WAL records (min applied, upto] to `materializers`, each only the records past its
    own applied offset, reading in bounded batches and logging progress every second.
    Returns how many records were read (the WAL's `records_read` counts them too)."""
    start = min((m.applied for m in materializers), default=upto) + 1
    if start > upto:
        for m in materializers:
            m.finish(upto)
        log.info("recovery: replayed 0 events from offset %d (checkpoint is current)", start)
        return 0
    if start < wal.first_offset:
        # The checkpoint is older than the oldest segment: the log was cut (repair or loss).
        log.warning("recovery: checkpoint at %d but WAL starts at %d; replaying what exists",
                    start - 1, wal.first_offset)
        start = wal.first_offset
    total = upto - start + 1
    done = 0
    pos = start
    t0 = last_report = time.monotonic()
    while pos <= upto:
        batch = wal.read(pos, upto, READ_BYTES)
        if not batch:
            break
        for offset, payload in batch:
            record = decode_payload(offset, payload)
            for m in materializers:
                if offset > m.applied and record.type in m.types:
                    m.feed(record)
        last = batch[-1][0]
        for m in materializers:
            m.flush(last)
        done += len(batch)
        pos = last + 1
        if progress is not None:
            progress(done, total)
        now = time.monotonic()
        if now - last_report > 1.0:
            log.info("recovery: replayed %d/%d events (%.0f%%)", done, total, 100.0 * done / total)
            last_report = now
    for m in materializers:
        m.finish(upto)
    elapsed = time.monotonic() - t0
    log.info("recovery: replayed %d events from offset %d in %.2fs (%.0f events/s)",
             done, start, elapsed, done / elapsed if elapsed > 0 else 0.0)
    return done

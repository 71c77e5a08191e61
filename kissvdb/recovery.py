"""Boot plan: load checkpoints, replay only the WAL tail past them.

Boot time depends on the tail since the last checkpoint, not on the length of history: each
materializer's applied offset is read from its checkpoint and the WAL is read from the
smallest one. Replay never reads the clock; TTL expiry is itself a logged event.
"""

from __future__ import annotations

import logging
import time

from kissvdb.events import decode_payload
from kissvdb.kv import event_to_change

log = logging.getLogger("kissvdb.recovery")

READ_BYTES = 8 << 20


def replay_kv(store, wal, upto: int, *, progress=None) -> int:
    """Apply WAL events (store's kv offset, upto] to state.sqlite; return how many were read."""
    start = store.applied_offset("kv") + 1
    if start > upto:
        log.info("recovery: replayed 0 events from offset %d (checkpoint is current)", start)
        return 0
    if start < wal.first_offset:
        # The checkpoint is older than the oldest segment: the log was cut (repair or loss).
        log.warning("recovery: kv checkpoint at %d but WAL starts at %d; replaying what exists",
                    start - 1, wal.first_offset)
        start = wal.first_offset
    total = upto - start + 1
    done = 0
    pos = start
    t0 = time.monotonic()
    last_report = t0
    while pos <= upto:
        batch = wal.read(pos, upto, READ_BYTES)
        if not batch:
            break
        changes = []
        for offset, payload in batch:
            change = event_to_change(decode_payload(offset, payload))
            if change is not None:
                changes.append(change)
        last = batch[-1][0]
        store.apply_kv(changes, last)
        done += len(batch)
        pos = last + 1
        now = time.monotonic()
        if progress is not None:
            progress(done, total)
        if now - last_report > 1.0:
            log.info("recovery: replayed %d/%d events (%.0f%%)", done, total, 100.0 * done / total)
            last_report = now
    store.set_applied("kv", upto)
    elapsed = time.monotonic() - t0
    log.info("recovery: replayed %d events from offset %d in %.2fs (%.0f events/s)",
             done, start, elapsed, done / elapsed if elapsed > 0 else 0.0)
    return done


def replay_docs(store, wal, upto: int) -> int:
    """Apply WAL doc events (store's docs offset, upto] to state.sqlite; return how many were read.

    The same plan as `replay_kv`, for the document materializer (kissvdb/docstore.py): it reads
    from its own applied offset, so a checkpointed docs table replays only its tail.
    """
    from kissvdb.documents import event_to_change as doc_change

    start = store.applied_offset() + 1
    if start > upto:
        return 0
    if start < wal.first_offset:
        log.warning("recovery: docs checkpoint at %d but WAL starts at %d; replaying what exists",
                    start - 1, wal.first_offset)
        start = wal.first_offset
    done = 0
    pos = start
    t0 = time.monotonic()
    while pos <= upto:
        batch = wal.read(pos, upto, READ_BYTES)
        if not batch:
            break
        changes = []
        for offset, payload in batch:
            change = doc_change(decode_payload(offset, payload))
            if change is not None:
                changes.append(change)
        last = batch[-1][0]
        store.apply_docs(changes, last)
        done += len(batch)
        pos = last + 1
    store.set_applied(upto)
    log.info("recovery: docs replayed %d events from offset %d in %.2fs", done, start, time.monotonic() - t0)
    return done

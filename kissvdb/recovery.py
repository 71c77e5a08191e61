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
    applied = store.applied_offset("kv")
    done = _replay("", applied, wal, upto, event_to_change, store.apply_kv, progress)
    if applied < upto:
        store.set_applied("kv", upto)
    return done


def replay_docs(store, wal, upto: int) -> int:
    """Apply WAL doc events (store's docs offset, upto] to state.sqlite; return how many were read.

    The same plan as `replay_kv`, for the document materializer (kissvdb/docstore.py): it reads
    from its own applied offset, so a checkpointed docs table replays only its tail.
    """
    from kissvdb.documents import event_to_change as doc_change

    applied = store.applied_offset()
    done = _replay("docs ", applied, wal, upto, doc_change, store.apply_docs, None)
    if applied < upto:
        store.set_applied(upto)
    return done


def _replay(label: str, applied: int, wal, upto: int, to_change, apply, progress) -> int:
    """Read WAL events (applied, upto] in bounded batches, turn each into its materializer's
    change (`to_change`, None to skip) and `apply(changes, last offset)` per batch, logging
    progress every second. Returns how many events were read."""
    start = applied + 1
    if start > upto:
        log.info("recovery: %sreplayed 0 events from offset %d (checkpoint is current)", label, start)
        return 0
    if start < wal.first_offset:
        # The checkpoint is older than the oldest segment: the log was cut (repair or loss).
        log.warning("recovery: %scheckpoint at %d but WAL starts at %d; replaying what exists",
                    label, start - 1, wal.first_offset)
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
            change = to_change(decode_payload(offset, payload))
            if change is not None:
                changes.append(change)
        last = batch[-1][0]
        apply(changes, last)
        done += len(batch)
        pos = last + 1
        now = time.monotonic()
        if progress is not None:
            progress(done, total)
        if now - last_report > 1.0:
            log.info("recovery: %sreplayed %d/%d events (%.0f%%)", label, done, total, 100.0 * done / total)
            last_report = now
    elapsed = time.monotonic() - t0
    log.info("recovery: %sreplayed %d events from offset %d in %.2fs (%.0f events/s)",
             label, done, start, elapsed, done / elapsed if elapsed > 0 else 0.0)
    return done

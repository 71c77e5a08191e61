"""Retention: which WAL segments exist on disk, and dropping the checkpointed old ones.

Its own module because deciding what may be deleted is a policy apart from writing and
reading records: it runs on its own schedule (after each checkpoint round, with the floor of
the checkpointed offsets), under its own lock, and is the only code that removes segments (always from the front, so retained offsets stay one
contiguous range). `WalLog.segments`, `retained_bytes` and `retain` delegate here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import takewhile
from typing import TYPE_CHECKING

from kissvdb.fsutil import fsync_dir
from kissvdb.wal import sidecar as wal_sidecar

if TYPE_CHECKING:
    from kissvdb.wal.log import WalLog


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    path: str
    seq: int
    first_offset: int
    last_offset: int  # first_offset - 1 when the segment holds no record
    size_bytes: int
    mtime_s: float


def retained_bytes(log: WalLog) -> int:
    """Bytes of every retained segment (what the WAL holds on disk, give or take a sidecar)."""
    with log._lock:
        return sum(s.end for s in log._segments)


def segments(log: WalLog) -> list[SegmentInfo]:
    """The retained segments, oldest first (mtime_s is 0.0 for a file that just vanished)."""
    with log._lock:
        rows = [(s.path, s.seq, s.first_offset, s.end_offset - 1, s.end) for s in log._segments]
    return [SegmentInfo(path, seq, first, last, size, _mtime(path)) for path, seq, first, last, size in rows]


def retain(
    log: WalLog, checkpointed_offset: int, keep_segments: int, min_bytes: int, min_age_s: float, now_s: float
) -> list[str]:
    """Delete old segments that no reader of durable state needs; return their paths.

    A segment is deleted only if it is closed (never the newest one, which the next append
    continues or follows), fully checkpointed (last_offset <= checkpointed_offset), not
    among the newest `keep_segments` such segments, older than `min_age_s` (by mtime,
    against the caller's clock `now_s`), and if the segments left still hold `min_bytes`.
    Oldest first, stopping at the first one that must stay, so retained offsets stay one
    contiguous range. The directory is fsynced afterwards.
    """
    with log._retain_lock:
        with log._lock:
            if log._closed:
                raise ValueError("WAL is closed")
            closed = log._segments[:-1]
            checkpointed = list(takewhile(lambda s: s.end_offset - 1 <= checkpointed_offset, closed))
            deletable = checkpointed[: max(len(checkpointed) - keep_segments, 0)]
            retained_bytes = sum(s.end for s in log._segments)
        victims = []
        for segment in deletable:
            if retained_bytes - segment.end < min_bytes:
                break
            if _mtime(segment.path) > now_s - min_age_s:
                break
            victims.append(segment)
            retained_bytes -= segment.end
        removed: list[str] = []
        for segment in victims:
            with log._lock:
                # Only retain removes segments and only from the front, so this holds.
                assert log._segments[0] is segment
                del log._segments[0]
                log._first_offset = log._oldest_record_offset()
                log._dir_dirty = True
            try:
                os.unlink(segment.path)
            except FileNotFoundError:
                pass
            except OSError:
                with log._lock:
                    log._segments.insert(0, segment)
                    log._first_offset = log._oldest_record_offset()
                raise
            try:
                wal_sidecar.remove(segment.path)
            except OSError as exc:  # an orphan sidecar is harmless: no segment gets its name again
                log._logger.warning("WAL: could not delete the index sidecar of %s (%s)", segment.path, exc)
            removed.append(segment.path)
            log._logger.info("WAL: retention removed %s (offsets %d..%d)", segment.path, segment.first_offset, segment.end_offset - 1)
        if removed and log._fsync:
            fsync_dir(log._directory)
        return removed


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0

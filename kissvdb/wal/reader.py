"""Reading WAL records from any offset, concurrently with appends.

Its own module because reading is a separate idea from writing: it never takes the writers'
locks, only snapshots (under the log's `_lock`) which byte range of which segment files hold
the wanted offsets, then reads them on its own fds with no lock held. It is also the change
stream's hot loop (100k+ records per replay), so the record head is parsed inline here rather
than through wal/format.py. `WalLog.read` delegates to `read` here.
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from typing import TYPE_CHECKING

from kissvdb.errors import Corruption
from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, RECORD_MAX_BYTES
from kissvdb.wal.segment import INDEX_EVERY

if TYPE_CHECKING:
    from kissvdb.wal.log import WalLog
    from kissvdb.wal.open import Segment

# Record head [u32 length][u32 crc], as wal/format.py writes it. read() parses it inline
# because it is the change stream's hot loop (100k+ records per replay).
_FRAME_HEAD = struct.Struct("<II")
assert _FRAME_HEAD.size == FRAME_OVERHEAD_BYTES

# A read pulls at least this much per pread (fewer syscalls for small records) and at most
# READ_CHUNK_MAX_BYTES beyond what the current record needs (bounded memory per reader).
READ_CHUNK_MIN_BYTES = 64 * 1024
READ_CHUNK_MAX_BYTES = 8 * 1024 * 1024


class OffsetNotRetained(Exception):
    """The requested offset is older than the oldest retained one (retention dropped it).

    `first_offset` is the oldest offset still readable; a change-stream reader reports a gap
    and continues from there.
    """

    def __init__(self, first_offset: int):
        super().__init__(f"offset no longer retained; the oldest retained offset is {first_offset}")
        self.first_offset = first_offset


def _first_offset_of(segment: Segment) -> int:
    return segment.first_offset


def read(log: WalLog, start: int, end: int, max_bytes: int) -> list[tuple[int, bytes]]:
    """Records with start <= offset <= end, oldest first, as (offset, payload).

    Stops before a record that would take the payload total past `max_bytes`, but always
    returns at least one record if any exists in range. Offsets in a hole are simply
    absent. Raises OffsetNotRetained if start < first_offset or a segment is deleted by
    retention while being read; Corruption if a record's CRC no longer matches.
    Thread-safe: runs concurrently with append/sync/retain, each call on its own fds.
    """
    with log._lock:
        if log._closed:
            raise ValueError("WAL is closed")
        if start < log._first_offset:
            raise OffsetNotRetained(log._first_offset)
        end = min(end, log._last_offset)
        if end < start:
            return []
        segments = log._segments
        i = max(bisect.bisect_right(segments, start, key=_first_offset_of) - 1, 0)
        plan = []
        while i < len(segments) and segments[i].first_offset <= end:
            segment = segments[i]
            i += 1
            if segment.count == 0 or segment.end_offset <= start:
                continue
            low = max(start - segment.first_offset, 0)
            high = min(end - segment.first_offset, segment.count - 1)
            block = low // INDEX_EVERY
            after = high // INDEX_EVERY + 1
            limit = segment.sparse[after] if after < len(segment.sparse) else segment.end
            base = segment.first_offset
            plan.append((segment.path, segment.sparse[block], limit, base + block * INDEX_EVERY, base + low, base + high))
    out: list[tuple[int, bytes]] = []
    total = 0
    for path, position, limit, offset, low, high in plan:
        total, full = _read_range(log, out, total, max_bytes, path, position, limit, offset, low, high)
        if full:
            break
    log.records_read += len(out)  # a statistic (concurrent readers may race on it)
    return out


def _read_range(log, out, total, max_bytes, path, position, limit, offset, low, high) -> tuple[int, bool]:
    """Append records low..high of one segment to `out`, walking from `position` (the byte
    where record `offset` starts) and never reading at or past byte `limit`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OffsetNotRetained(log._first_offset) from None
    chunk_bytes = min(max(max_bytes, READ_CHUNK_MIN_BYTES), READ_CHUNK_MAX_BYTES)
    unpack = _FRAME_HEAD.unpack_from
    crc32 = zlib.crc32  # over the 4 length bytes + payload, as wal/format.py defines
    try:
        buf = b""
        base = position  # file position of buf[0]
        at = 0  # index in buf of the frame for `offset`
        while offset <= high:
            if len(buf) - at < FRAME_OVERHEAD_BYTES:
                buf, base, at = _refill(fd, path, buf, base, at, FRAME_OVERHEAD_BYTES, limit, chunk_bytes)
            length, crc = unpack(buf, at)
            if length == 0 or length > RECORD_MAX_BYTES:
                raise Corruption(path, base + at, f"invalid length {length} (read of offset {offset})")
            stop = at + FRAME_OVERHEAD_BYTES + length
            if stop > len(buf):
                buf, base, at = _refill(fd, path, buf, base, at, stop - at, limit, chunk_bytes)
                stop = at + FRAME_OVERHEAD_BYTES + length
            if offset >= low:
                if out and total + length > max_bytes:
                    return total, True
                payload = buf[at + FRAME_OVERHEAD_BYTES : stop]
                if crc32(payload, crc32(buf[at : at + 4])) != crc:
                    raise Corruption(path, base + at, f"crc mismatch (read of offset {offset})")
                out.append((offset, payload))
                total += length
            at = stop
            offset += 1
        return total, False
    finally:
        os.close(fd)


def _refill(fd, path, buf, base, at, need, limit, chunk_bytes) -> tuple[bytes, int, int]:
    """Keep buf[at:], read more after it so that at least `need` bytes are buffered."""
    rest = buf[at:]
    base += at
    have_to = base + len(rest)
    want = min(max(need - len(rest), chunk_bytes), limit - have_to)
    if len(rest) + want < need:
        raise Corruption(path, base, f"record runs past the written end of the segment (byte {limit})")
    data = os.pread(fd, want, have_to)
    if len(rest) + len(data) < need:
        raise Corruption(path, base, f"segment is shorter than the {limit} bytes written to it")
    return rest + data, base, 0

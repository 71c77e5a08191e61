"""Index sidecar of a sealed WAL segment: `events-NNNNNN.idx` beside `events-NNNNNN.log`.

Why it exists: `WalLog.open` needs, for every retained segment, its record count, its valid
end and its sparse index (byte position of every INDEX_EVERY-th record). Frames have no
back-pointers, so the only way to learn those from the segment itself is to walk every frame
of it, which made boot read the whole retained WAL (WAL_RETENTION_SEGMENTS x
WAL_SEGMENT_MAX_BYTES) even when nothing needs replaying. Nor can a segment's count be taken
from where the next segment starts: after `repair` a hole at a segment boundary is legal.
So when `WalLog.append` seals a segment it writes these facts, checksummed, into a small
sidecar, fdatasynced *before* the next segment is created; at open a sealed segment that is
never replayed (entirely below `verify_from`) is described by its sidecar and none of its
records are read.

Why it is safe to trust, and when it is not trusted:
- it is never trusted without its own CRC, magic, version and INDEX_EVERY matching;
- it must agree with the segment file: same first offset as the header, `end` equal to the
  file's size (a sealed segment is never appended to, so any other size means the sidecar is
  stale or the segment damaged: the segment is scanned and damage reported as before), and
  walking the frame heads from the last sparse entry (at most INDEX_EVERY of them, usually one
  small read) must meet exactly the records its count implies, the last one at `last` with the
  recorded 8-byte head (length, crc), ending at `end`; the sparse index must be structurally
  sane. Entries before the last one are trusted on the sidecar's CRC: `read` still checks the
  length and CRC of every record it returns, so a wrong one could not pass as data silently
  except by pointing at another record boundary, which only a bug in this code could write;
- it is consulted only for a segment that has a successor, and a successor is created only
  after the sidecar describing the segment's final bytes was written and fdatasynced
  (`WalLog.append`); repair and retention delete the sidecars of segments they cut or drop,
  and a failed append deletes the sidecars it wrote. So a sidecar left from an earlier life
  of the same sequence number can only describe a prefix of the file, which the size check
  rejects (and the last-record check would too).
Anything that fails a check is ignored: the segment is scanned exactly as without a sidecar
(old data directories have none) and a fresh sidecar is written. Writing one is best effort:
if it fails the segment is simply scanned at the next open. `kissvdb check` never uses
sidecars; it reads and CRC-checks every record of every segment.

Layout, little-endian:
    magic b"KVDBIDX\\0" | u16 version=1 | u16 reserved=0 | u32 index_every | u64 first_offset
    | u64 count | u64 end | u64 last (byte position of the last record; 0 if none)
    | 8 bytes: the last record's [u32 length][u32 crc] (zeros if none) | u32 sparse entries
    | u64 x entries | u32 crc32 of everything before it
"""

from __future__ import annotations

import os
import struct
import zlib

from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, HEADER_BYTES, RECORD_MAX_BYTES
from kissvdb.wal.segment import INDEX_EVERY, SegmentScan

MAGIC = b"KVDBIDX\x00"
VERSION = 1
SUFFIX = ".idx"

_HEAD = struct.Struct("<8sHHIQQQQ8sI")
_U32 = struct.Struct("<I")
_FRAME_HEAD = struct.Struct("<II")
_MIN_RECORD_BYTES = FRAME_OVERHEAD_BYTES + 1
# The records after the last sparse entry (at most INDEX_EVERY) are walked at load; this much
# is read at once (typically all of them), larger records cost one 8-byte pread per head.
TAIL_READ_BYTES = 64 * 1024
# A 64 MiB segment of minimal records has 7.5M records = 29k sparse entries (233 KB); anything
# much bigger is not a sidecar we wrote.
_SIDECAR_MAX_BYTES = 16 * 1024 * 1024


def sidecar_path(segment_path: str) -> str:
    """`.../events-000001.idx` for `.../events-000001.log`."""
    base, _ = os.path.splitext(segment_path)
    return base + SUFFIX


def encode(first_offset: int, count: int, end: int, sparse: list[int], last: int, last_head: bytes) -> bytes:
    if count and len(last_head) != FRAME_OVERHEAD_BYTES:
        raise ValueError("last_head must be the last record's 8-byte frame head")
    head = last_head if count else bytes(FRAME_OVERHEAD_BYTES)
    body = _HEAD.pack(MAGIC, VERSION, 0, INDEX_EVERY, first_offset, count, end, last if count else 0, head, len(sparse))
    body += struct.pack(f"<{len(sparse)}Q", *sparse)
    return body + _U32.pack(zlib.crc32(body))


def write(segment_path: str, scan_or_fields, *, fsync: bool) -> str:
    """Write the sidecar of a sealed segment (in place, then fdatasync); return its path.

    Not atomic on purpose: a torn sidecar fails its CRC and is ignored. `scan_or_fields` is a
    SegmentScan or (first_offset, count, end, sparse, last, last_head). Raises OSError.
    """
    if isinstance(scan_or_fields, SegmentScan):
        s = scan_or_fields
        fields = (s.first_offset, s.count, s.end, s.sparse, s.last, s.last_head)
    else:
        fields = scan_or_fields
    data = encode(*fields)
    path = sidecar_path(segment_path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return path


def remove(segment_path: str) -> bool:
    """Delete the sidecar of `segment_path` if there is one; True if one was deleted."""
    try:
        os.unlink(sidecar_path(segment_path))
    except FileNotFoundError:
        return False
    return True


def load(segment_path: str, first_offset: int | None) -> tuple[SegmentScan | None, str | None]:
    """(what the segment holds, None) from its sidecar, or (None, why it cannot be used).

    `first_offset` is the segment header's (None if the header is bad: never trusted then).
    Reads the sidecar, stats the segment and walks the frame heads after its last sparse entry
    (see _check_tail); never the other records. The reason is "missing" when there is no sidecar.
    """
    if first_offset is None:
        return None, "segment header is bad"
    try:
        with open(sidecar_path(segment_path), "rb", buffering=0) as f:
            data = f.read(_SIDECAR_MAX_BYTES + 1)
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc})"
    fields, reason = decode(data)
    if fields is None:
        return None, reason
    side_first, count, end, last, last_head, sparse = fields
    if side_first != first_offset:
        return None, f"first offset {side_first} but the segment header says {first_offset}"
    try:
        fd = os.open(segment_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return None, f"segment unreadable ({exc})"
    try:
        size = os.fstat(fd).st_size
        if size != end:
            return None, f"describes {end} bytes but the segment has {size}"
        if count:
            reason = _check_tail(fd, count, end, sparse, last, last_head)
            if reason is not None:
                return None, reason
    except OSError as exc:
        return None, f"segment unreadable ({exc})"
    finally:
        os.close(fd)
    scan = SegmentScan(segment_path, first_offset, count, end, size, sparse, False, None, last, last_head)
    return scan, None


def _check_tail(fd: int, count: int, end: int, sparse: list[int], last: int, last_head: bytes) -> str | None:
    """Walk the frame heads after the last sparse entry: exactly the records the count says
    are there (count - (entries - 1) * INDEX_EVERY, at most INDEX_EVERY) must lead to `last`,
    whose head must be `last_head`, and end at `end`. One pread of up to TAIL_READ_BYTES, plus
    8-byte preads for heads beyond it (large records). Payloads are not CRC-checked here."""
    records = count - (len(sparse) - 1) * INDEX_EVERY
    pos = sparse[-1]
    buf = os.pread(fd, min(end - pos, TAIL_READ_BYTES), pos)
    base = pos
    for i in range(records):
        if end - pos < _MIN_RECORD_BYTES:
            return f"record {count - records + i} would start at byte {pos}, past the end {end}"
        at = pos - base
        head = buf[at : at + FRAME_OVERHEAD_BYTES] if at + FRAME_OVERHEAD_BYTES <= len(buf) else os.pread(fd, 8, pos)
        (length, _) = _FRAME_HEAD.unpack(head)
        if length == 0 or length > RECORD_MAX_BYTES:
            return f"invalid record length {length} at byte {pos}"
        if i == records - 1 and (pos != last or head != last_head):
            return f"its last record (byte {last}) is not the segment's (byte {pos})"
        pos += FRAME_OVERHEAD_BYTES + length
    if pos != end:
        return f"its {count} records end at byte {pos}, not at the segment's end {end}"
    return None


def decode(data: bytes):
    """((first_offset, count, end, last, last_head, sparse), None) or (None, reason).

    Checks the CRC and that the fields are self-consistent; not that they match a segment.
    """
    if len(data) > _SIDECAR_MAX_BYTES:
        return None, "too large"
    if len(data) < _HEAD.size + _U32.size:
        return None, f"short ({len(data)} bytes)"
    (crc,) = _U32.unpack_from(data, len(data) - _U32.size)
    if zlib.crc32(memoryview(data)[: -_U32.size]) != crc:
        return None, "crc mismatch"
    magic, version, reserved, index_every, first, count, end, last, last_head, entries = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION or reserved != 0:
        return None, f"unknown magic/version {bytes(magic)!r}/{version}/{reserved}"
    if index_every != INDEX_EVERY:
        return None, f"index every {index_every} records, this build uses {INDEX_EVERY}"
    if len(data) != _HEAD.size + 8 * entries + _U32.size:
        return None, f"{entries} sparse entries do not fit its {len(data)} bytes"
    sparse = list(struct.unpack_from(f"<{entries}Q", data, _HEAD.size))
    if first < 1 or end < HEADER_BYTES:
        return None, f"impossible first offset {first} or end {end}"
    if count == 0:
        if end != HEADER_BYTES or sparse or last:
            return None, "empty segment with records described"
    else:
        if count * _MIN_RECORD_BYTES > end - HEADER_BYTES:
            return None, f"{count} records cannot fit in {end} bytes"
        if entries != (count + INDEX_EVERY - 1) // INDEX_EVERY or sparse[0] != HEADER_BYTES:
            return None, f"{entries} sparse entries for {count} records"
        if any(b - a < _MIN_RECORD_BYTES for a, b in zip(sparse, sparse[1:])):
            return None, "sparse index is not increasing"
        if not sparse[-1] <= last <= end - _MIN_RECORD_BYTES:
            return None, f"last record position {last} out of range"
    return (first, count, end, last, bytes(last_head), sparse), None

"""One WAL segment file: naming, creation, and the scan that tells a torn tail from corruption.

A scan reads a segment and reports what it holds (first offset, record count, valid end, a
sparse index) and any damage. It never modifies the file: truncating a torn tail is the
caller's decision (`WalLog.open` does it at boot, `inspect.check` only reports).

The rule (docs/architecture.md, "WAL"): a bad frame is a torn tail only if it is in the last
segment and no valid frame starts at any later byte of that segment; a zero-filled tail is a
torn tail. A last segment shorter than a header, or all zeros, is a crash right after creation
(torn header). Everything else is `Corruption(path, byte_position, reason)`. This rule is sound
only because a segment is made durable before the next one is created (see `WalLog.append`),
so a crash can tear only the newest segment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from kissvdb.errors import Corruption
from kissvdb.wal import format as wal_format
from kissvdb.wal.format import HEADER_BYTES

# One sparse-index entry per INDEX_EVERY records: a read skips at most INDEX_EVERY - 1 frames
# (lengths only) to reach its start, and the index costs 8 bytes per ~256 records.
INDEX_EVERY = 256

_NAME = re.compile(r"events-(\d{6,})\.log")


def segment_name(seq: int) -> str:
    """`events-000001.log`; more digits once seq passes 999999."""
    if seq < 1:
        raise ValueError(f"segment sequence must be >= 1, got {seq}")
    return f"events-{seq:06d}.log"


def parse_segment_name(name: str) -> int | None:
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def list_segment_files(directory: str) -> list[tuple[int, str]]:
    """(seq, path) of every segment file in `directory`, sorted by seq (numerically).

    Raises Corruption for two names with the same sequence number (e.g. events-000007.log and
    events-0000007.log): we could not tell which one is real.
    """
    found: dict[int, str] = {}
    for entry in os.scandir(directory):
        seq = parse_segment_name(entry.name)
        if seq is None or not entry.is_file(follow_symlinks=False):
            continue
        if seq in found:
            raise Corruption(entry.path, 0, f"segment sequence {seq} also used by {os.path.basename(found[seq])}")
        found[seq] = entry.path
    return sorted(found.items())


def sequence_gap(files: list[tuple[int, str]]) -> tuple[str, str] | None:
    """(path, reason) for the first segment whose predecessor is missing, else None.

    Retention deletes oldest first and every other deletion takes the newest, so sequence
    numbers are always contiguous; a gap means a segment file was lost.
    """
    for (prev_seq, _), (seq, path) in zip(files, files[1:]):
        if seq != prev_seq + 1:
            missing = segment_name(prev_seq + 1)
            return path, f"previous segment {missing} is missing (sequence gap {prev_seq} -> {seq})"
    return None


@dataclass(frozen=True, slots=True)
class Damage:
    """The first bad frame (or header) found by a scan.

    position  byte where the bad frame (0 for the header) starts
    torn      True if this is a torn tail/header the caller may cut away; False is corruption
    """

    position: int
    reason: str
    torn: bool


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What one segment file holds, up to its first damage.

    first_offset  from the header; None if the header itself is damaged
    count         complete records before any damage; record i has offset first_offset + i
    end           byte length of header + those records (where a torn tail would be cut)
    size          file size as found
    sparse        byte positions of records 0, INDEX_EVERY, 2*INDEX_EVERY, ...
    verified      CRCs of all records checked (False: lengths only or read from the sidecar)
    damage        None if the whole file parsed
    last          byte position of the last complete record (0 if none)
    last_head     that record's 8-byte [length][crc] head (b"" if none); the index sidecar
                  keeps it to check, with one 8-byte read, that it describes this file
    """

    path: str
    first_offset: int | None
    count: int
    end: int
    size: int
    sparse: list[int]
    verified: bool
    damage: Damage | None
    last: int = 0
    last_head: bytes = b""

    @property
    def last_offset(self) -> int:
        """Offset of the last complete record; first_offset - 1 when empty."""
        assert self.first_offset is not None
        return self.first_offset + self.count - 1


def read_first_offset(path: str) -> int | None:
    """The header's first_offset, or None if the header is short or bad (scan() says why)."""
    try:
        with open(path, "rb", buffering=0) as f:  # unbuffered: read 24 bytes, not a block
            return wal_format.decode_header(f.read(HEADER_BYTES))
    except ValueError:
        return None


def scan(path: str, *, is_last: bool, verify: bool = True, strict: bool = True) -> SegmentScan:
    """Scan one segment file; see the module docstring for the torn-tail rule.

    The last segment is always CRC-verified (its tail decides what survives a crash);
    `verify=False` does a structural walk of lengths for older segments. With `strict`
    (the default) non-torn damage raises Corruption; with strict=False it is returned in
    `damage` (for offline checking, which wants every problem, not the first).
    """
    with open(path, "rb") as f:
        data = f.read()
    result = _scan_bytes(path, data, is_last=is_last, verify=verify or is_last)
    if strict and result.damage is not None and not result.damage.torn:
        raise Corruption(path, result.damage.position, result.damage.reason)
    return result


def _scan_bytes(path: str, data: bytes, *, is_last: bool, verify: bool) -> SegmentScan:
    size = len(data)
    first_offset = None
    crash_shaped = size < HEADER_BYTES  # what a crash right after creating the file leaves
    problem = f"short header ({size} bytes)"
    if not crash_shaped:
        try:
            first_offset = wal_format.decode_header(data)
        except ValueError as exc:
            crash_shaped = data.count(0) == size
            problem = f"all {size} bytes are zero" if crash_shaped else str(exc)
    if first_offset is None:
        # Only the newest segment can be caught between creation and its header reaching
        # disk; a damaged header anywhere else, or any other header damage, is corruption.
        torn = is_last and crash_shaped
        label = "torn header" if torn else "bad header"
        return SegmentScan(path, None, 0, 0, size, [], verify, Damage(0, f"{label}: {problem}", torn))

    walk = wal_format.walk_frames(data, HEADER_BYTES, verify_crc=verify, index_every=INDEX_EVERY)
    damage = None
    if walk.error is not None:
        damage = _classify(data, walk.end, walk.error, is_last=is_last)
    last_head = bytes(data[walk.last : walk.last + 8]) if walk.count else b""
    return SegmentScan(path, first_offset, walk.count, walk.end, size, walk.sparse, verify, damage, walk.last, last_head)


def _classify(data: bytes, position: int, reason: str, *, is_last: bool) -> Damage:
    if not is_last:
        return Damage(position, f"{reason} (not the last segment)", False)
    following = wal_format.find_valid_frame(data, position + 1)
    if following is not None:
        return Damage(position, f"{reason}; a valid record follows at byte {following}", False)
    return Damage(position, f"torn tail: {reason}", True)


def create(path: str, first_offset: int) -> int:
    """Create a new segment file holding only its header; return an O_APPEND write fd.

    O_EXCL: never clobber an existing segment. The caller fsyncs the file before writing
    records into it (so a crash leaves no file, a torn header, or a valid header) and fsyncs
    the directory before acknowledging anything in it. On failure nothing is left behind.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, wal_format.encode_header(first_offset))
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
    return fd


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written (a regular-file write may be short, e.g. near ENOSPC)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]

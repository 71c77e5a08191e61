"""WAL byte layout: the segment header and record framing. Bytes in, records out; no files.

This module owns the on-disk encoding and nothing else. It guarantees that a frame it accepts
has a sane length and (when asked) a matching CRC, and it never decides what a bad frame means:
whether damage is a torn tail or corruption is `segment.py`'s call, because that depends on
where in the segment set the bytes live.

Layout, little-endian:
    header (24 bytes): magic b"KVDBWAL\\0" | u16 version=1 | u16 reserved=0 | u64 first_offset
                       | u32 crc32 of the previous 20 bytes
    record:            u32 length | u32 crc32(the 4 length bytes + payload) | payload
A length of 0 or above RECORD_MAX_BYTES is invalid, so a zero-filled region never parses as records.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MAGIC = b"KVDBWAL\x00"
FORMAT_VERSION = 1
HEADER_BYTES = 24
FRAME_OVERHEAD_BYTES = 8
RECORD_MAX_BYTES = 64 * 1024 * 1024

_HEADER_BODY = struct.Struct("<8sHHQ")  # the 20 bytes the header CRC covers
_U32 = struct.Struct("<I")
_FRAME_HEAD = struct.Struct("<II")  # length, crc
_NONZERO = re.compile(rb"[^\x00]")

assert _HEADER_BODY.size + _U32.size == HEADER_BYTES


class FrameError(ValueError):
    """A frame that does not parse. `position` is the byte where the bad frame starts."""

    def __init__(self, position: int, reason: str):
        super().__init__(f"bad frame at byte {position}: {reason}")
        self.position = position
        self.reason = reason


def encode_header(first_offset: int) -> bytes:
    """The 24-byte segment header for a segment whose first record gets `first_offset`."""
    if first_offset < 1:
        raise ValueError(f"first_offset must be >= 1, got {first_offset}")
    body = _HEADER_BODY.pack(MAGIC, FORMAT_VERSION, 0, first_offset)
    return body + _U32.pack(zlib.crc32(body))


def decode_header(buf: bytes | memoryview) -> int:
    """Return the header's first_offset, or raise ValueError saying what is wrong with it."""
    if len(buf) < HEADER_BYTES:
        raise ValueError(f"short header: {len(buf)} of {HEADER_BYTES} bytes")
    magic, version, reserved, first_offset = _HEADER_BODY.unpack_from(buf, 0)
    (crc,) = _U32.unpack_from(buf, _HEADER_BODY.size)
    if magic != MAGIC:
        raise ValueError(f"bad magic {bytes(magic)!r}")
    if zlib.crc32(memoryview(buf)[: _HEADER_BODY.size]) != crc:
        raise ValueError("header crc mismatch")
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported WAL format version {version} (this build reads {FORMAT_VERSION})")
    if reserved != 0:
        raise ValueError(f"reserved header field is {reserved}, expected 0")
    if first_offset < 1:
        raise ValueError(f"header first_offset {first_offset} is below 1")
    return first_offset


def frame_header(payload: bytes | memoryview) -> bytes:
    """The 8 bytes that precede `payload` in a record. Raises ValueError for an invalid length.

    Callers that build a batch join `[frame_header(p), p, ...]` themselves so each payload is
    copied once, into the buffer that goes to write().
    """
    length = len(payload)
    if length == 0 or length > RECORD_MAX_BYTES:
        raise ValueError(f"payload length {length} outside 1..{RECORD_MAX_BYTES}")
    return _FRAME_HEAD.pack(length, zlib.crc32(payload, zlib.crc32(_U32.pack(length))))


def frame(payload: bytes | memoryview) -> bytes:
    """One complete record."""
    return frame_header(payload) + bytes(payload)


def frames(payloads: Sequence[bytes | memoryview]) -> bytes:
    """Records for all payloads, back to back, as one bytes object (one write)."""
    parts: list[bytes | memoryview] = []
    for payload in payloads:
        parts.append(frame_header(payload))
        parts.append(payload)
    return b"".join(parts)


@dataclass(slots=True)
class Walk:
    """Result of walking frames from `start` to the end of a buffer.

    count   valid frames found
    end     byte position just after the last valid frame; when `error` is set this is also
            where the first bad frame starts
    sparse  byte positions of frames 0, index_every, 2*index_every, ... (for a sparse index)
    last    byte position of the last valid frame (0 if none)
    error   why the frame at `end` is bad, or None if the walk reached the end of the buffer
    """

    count: int
    end: int
    sparse: list[int]
    error: str | None
    last: int = 0


def walk_frames(
    buf: bytes, start: int = 0, *, verify_crc: bool = True, index_every: int = 256
) -> Walk:
    """Walk every frame from `start`, stopping at the first bad one (see `Walk`).

    This is the boot-time hot loop (100k+ records), so it is one flat loop with bound locals
    and no per-record allocation beyond the memoryview slices zlib needs. With
    verify_crc=False only the lengths are checked: a quick structural walk for old segments.
    """
    if index_every < 1:
        raise ValueError("index_every must be >= 1")
    view = memoryview(buf)
    size = len(buf)
    unpack = _FRAME_HEAD.unpack_from
    crc32 = zlib.crc32
    limit = RECORD_MAX_BYTES
    sparse: list[int] = []
    count = 0
    until_index = 0  # countdown to the next sparse-index entry (cheaper than count % n)
    pos = start
    last = 0
    while pos < size:
        if size - pos < FRAME_OVERHEAD_BYTES:
            return Walk(count, pos, sparse, f"partial frame header ({size - pos} bytes)", last)
        length, crc = unpack(buf, pos)
        if length == 0 or length > limit:
            return Walk(count, pos, sparse, f"invalid length {length}", last)
        stop = pos + FRAME_OVERHEAD_BYTES + length
        if stop > size:
            return Walk(count, pos, sparse, f"record of {length} bytes runs past the end ({size - pos - 8} present)", last)
        if verify_crc and crc32(view[pos + 8 : stop], crc32(view[pos : pos + 4])) != crc:
            return Walk(count, pos, sparse, "crc mismatch", last)
        if until_index == 0:
            sparse.append(pos)
            until_index = index_every
        until_index -= 1
        count += 1
        last = pos
        pos = stop
    return Walk(count, pos, sparse, None, last)


def iter_frames(buf: bytes | memoryview, start: int = 0) -> Iterator[tuple[int, memoryview]]:
    """Yield (position, payload) for each frame from `start`; raise FrameError at the first bad one.

    Payloads are memoryview slices of `buf` (no copy); copy them if they must outlive it.
    """
    view = memoryview(buf)
    size = len(view)
    pos = start
    while pos < size:
        reason = frame_error(view, pos)
        if reason is not None:
            raise FrameError(pos, reason)
        (length,) = _U32.unpack_from(view, pos)
        stop = pos + FRAME_OVERHEAD_BYTES + length
        yield pos, view[pos + 8 : stop]
        pos = stop


def frame_error(buf: bytes | memoryview, pos: int) -> str | None:
    """None if a complete, valid frame starts at `pos`, else why not."""
    size = len(buf)
    if size - pos < FRAME_OVERHEAD_BYTES:
        return f"partial frame header ({size - pos} bytes)"
    length, crc = _FRAME_HEAD.unpack_from(buf, pos)
    if length == 0 or length > RECORD_MAX_BYTES:
        return f"invalid length {length}"
    stop = pos + FRAME_OVERHEAD_BYTES + length
    if stop > size:
        return f"record of {length} bytes runs past the end ({size - pos - 8} present)"
    view = memoryview(buf)
    if zlib.crc32(view[pos + 8 : stop], zlib.crc32(view[pos : pos + 4])) != crc:
        return "crc mismatch"
    return None


def find_valid_frame(buf: bytes, start: int) -> int | None:
    """First position >= start where a complete frame with a matching CRC begins, else None.

    Used to tell a torn tail (nothing valid after the damage) from corruption (good data
    follows). It tries every byte, but jumps over zero runs with a C-speed regex, so a large
    zero-filled tail (preallocated or never-written blocks) costs almost nothing.
    """
    view = memoryview(buf)
    size = len(buf)
    unpack = _FRAME_HEAD.unpack_from
    crc32 = zlib.crc32
    pos = start
    last = size - FRAME_OVERHEAD_BYTES - 1  # a frame needs 8 header bytes + at least 1 payload byte
    while pos <= last:
        length, crc = unpack(buf, pos)
        if length == 0:
            # buf[pos:pos+4] is all zero. Any candidate whose 4 length bytes lie entirely in
            # this zero run also has length 0, so the next one worth trying is 3 bytes before
            # the next non-zero byte.
            found = _NONZERO.search(buf, pos + 4)
            if found is None:
                return None
            pos = max(pos + 1, found.start() - 3)
            continue
        if length <= RECORD_MAX_BYTES and pos + 8 + length <= size:
            if crc32(view[pos + 8 : pos + 8 + length], crc32(view[pos : pos + 4])) == crc:
                return pos
        pos += 1
    return None

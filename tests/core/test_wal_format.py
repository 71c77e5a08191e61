"""WAL byte layout: header and record framing round-trip, and every way a frame can be bad."""

import random
import struct
import zlib

import pytest

from kissvdb.wal import format as wal_format
from kissvdb.wal.format import (
    FRAME_OVERHEAD_BYTES,
    HEADER_BYTES,
    RECORD_MAX_BYTES,
    FrameError,
    decode_header,
    encode_header,
    find_valid_frame,
    frame,
    frame_error,
    frames,
    iter_frames,
    walk_frames,
)


def test_header_layout_is_exactly_as_documented():
    header = encode_header(1234567890123)
    assert len(header) == HEADER_BYTES == 24
    assert header[:8] == b"KVDBWAL\x00"
    assert struct.unpack_from("<HHQ", header, 8) == (1, 0, 1234567890123)
    assert struct.unpack_from("<I", header, 20)[0] == zlib.crc32(header[:20])
    assert decode_header(header) == 1234567890123


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h: h[:10], "short header"),
        (lambda h: b"XVDBWAL\x00" + h[8:], "magic"),
        (lambda h: h[:20] + bytes([h[20] ^ 1]) + h[21:], "crc"),
        (lambda h: h[:16] + bytes([h[16] ^ 1]) + h[17:], "crc"),
    ],
)
def test_decode_header_rejects_damage(mutate, message):
    with pytest.raises(ValueError, match=message):
        decode_header(mutate(encode_header(7)))


def test_decode_header_rejects_a_newer_version_with_a_valid_crc():
    body = struct.pack("<8sHHQ", b"KVDBWAL\x00", 2, 0, 7)
    with pytest.raises(ValueError, match="version 2"):
        decode_header(body + struct.pack("<I", zlib.crc32(body)))


def test_frame_layout_crc_covers_length_bytes_and_payload():
    record = frame(b"hello")
    length, crc = struct.unpack_from("<II", record)
    assert length == 5 and record[8:] == b"hello"
    assert crc == zlib.crc32(struct.pack("<I", 5) + b"hello")
    assert frames([b"a", b"bc"]) == frame(b"a") + frame(b"bc")


def test_invalid_payload_sizes_are_refused():
    with pytest.raises(ValueError):
        frame(b"")
    with pytest.raises(ValueError):
        wal_format.frame_header(memoryview(bytearray(RECORD_MAX_BYTES + 1)))


def test_iter_frames_round_trips_and_reports_first_bad_position():
    payloads = [bytes([i]) * (i + 1) for i in range(50)]
    buf = frames(payloads)
    assert [bytes(p) for _, p in iter_frames(buf)] == payloads
    positions = [pos for pos, _ in iter_frames(buf)]
    damaged = bytearray(buf)
    damaged[positions[30] + 9] ^= 0x10
    with pytest.raises(FrameError) as info:
        list(iter_frames(bytes(damaged)))
    assert info.value.position == positions[30]


def test_walk_frames_counts_indexes_and_stops_at_damage():
    payloads = [b"x" * (1 + i % 7) for i in range(1000)]
    buf = b"H" * 5 + frames(payloads)
    walk = walk_frames(buf, 5, index_every=256)
    assert (walk.count, walk.end, walk.error) == (1000, len(buf), None)
    positions = [pos for pos, _ in iter_frames(buf, 5)]
    assert walk.sparse == positions[::256]

    for cut in (len(buf) - 1, positions[999] + 3, positions[999] + 8):
        walk = walk_frames(buf[:cut], 5)
        assert (walk.count, walk.end) == (999, positions[999]) and walk.error

    zeros = walk_frames(buf + bytes(100), 5)
    assert (zeros.count, zeros.end, zeros.error) == (1000, len(buf), "invalid length 0")


def test_structural_walk_skips_crc_but_checks_lengths():
    buf = bytearray(frames([b"abc"] * 10))
    buf[8] ^= 1  # payload of record 0
    assert walk_frames(bytes(buf), verify_crc=False).count == 10
    assert walk_frames(bytes(buf)).error == "crc mismatch"
    struct.pack_into("<I", buf, 11 * 1, 0)  # length of record 1 (frames are 11 bytes)
    assert walk_frames(bytes(buf), verify_crc=False).count == 1


def test_oversized_length_is_invalid():
    buf = struct.pack("<II", RECORD_MAX_BYTES + 1, 0) + b"x" * 16
    assert "invalid length" in frame_error(buf, 0)
    assert walk_frames(buf).error.startswith("invalid length")


def test_find_valid_frame_skips_zeros_and_garbage():
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(3000))
    record = frame(b"payload!")
    assert find_valid_frame(bytes(5000), 0) is None
    assert find_valid_frame(garbage, 0) is None
    assert find_valid_frame(garbage + bytes(4000) + record + bytes(10), 0) == 7000
    assert find_valid_frame(bytes(4001) + record, 1) == 4001
    # A frame whose length bytes start right after a zero run (non-zero low byte first).
    assert find_valid_frame(b"\x00\x00\x00" + record, 0) == 3
    assert find_valid_frame(record, 1) is None
    assert find_valid_frame(record[:-1], 0) is None


def test_frame_overhead_constant():
    assert len(frame(b"z")) == FRAME_OVERHEAD_BYTES + 1

"""WalLog on real files: recovery (torn tail vs corruption), rotation, offsets, read, retention,
and append rollback. Faults are real: files are truncated, zero-filled or bit-flipped on disk;
the only patched calls are os.write / os.fdatasync, at the OS edge."""

import errno
import logging
import os
import random
import shutil
import struct
import threading

import pytest

from kissvdb.errors import Corruption, PersistenceError
from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, HEADER_BYTES, decode_header, encode_header, iter_frames
from kissvdb.wal.log import OffsetNotRetained, WalLog

MiB = 1 << 20


def payload(offset: int) -> bytes:
    """Deterministic, varied-size payload for an offset, so any mix-up shows."""
    return b"event-%06d:" % offset + bytes([offset % 251]) * (offset % 13 + 1)


def open_log(path, **kwargs) -> WalLog:
    kwargs.setdefault("segment_max_bytes", MiB)
    kwargs.setdefault("fsync", False)
    return WalLog.open(path, **kwargs)


def fill(log: WalLog, count: int, batch: int = 7) -> None:
    """Append payload(offset) for the next `count` offsets, in batches."""
    while count > 0:
        n = min(batch, count)
        start = log.next_offset
        assert log.append([payload(o) for o in range(start, start + n)]) == (start, start + n - 1)
        count -= n


def positions(path) -> list[int]:
    data = open(path, "rb").read()
    return [pos for pos, _ in iter_frames(data, HEADER_BYTES)]


def segment_names(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".log"))


def seg_path(directory, seq: int) -> str:
    return os.path.join(directory, f"events-{seq:06d}.log")


def read_all(log: WalLog, start: int = 1) -> list[tuple[int, bytes]]:
    out = []
    while True:
        rows = log.read(start, 1 << 62, 64 * 1024)
        if not rows:
            return out
        out.extend(rows)
        start = rows[-1][0] + 1


def flip_bit(path, position: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ (1 << bit)]))


def truncation_logged(caplog, path, position: int, dropped: int) -> bool:
    return any(
        path in r.getMessage() and f"byte {position}" in r.getMessage() and f"dropped {dropped} bytes" in r.getMessage()
        for r in caplog.records
        if r.name == "kissvdb.wal" and r.levelno == logging.WARNING
    )


# ----------------------------------------------------------------------------- basics


def test_offsets_are_continuous_across_batches_rotation_and_restart(tmp_path):
    log = open_log(tmp_path, segment_max_bytes=400)
    assert (log.first_offset, log.last_offset, log.next_offset) == (1, 0, 1)
    fill(log, 100)
    infos = log.segments()
    assert len(infos) > 3
    assert infos[0].first_offset == 1 and infos[-1].last_offset == 100
    for prev, cur in zip(infos, infos[1:]):
        assert cur.first_offset == prev.last_offset + 1 and cur.seq == prev.seq + 1
    log.close()

    log = open_log(tmp_path, segment_max_bytes=400)
    assert (log.first_offset, log.last_offset, log.next_offset) == (1, 100, 101)
    assert [(i.path, i.first_offset, i.last_offset, i.size_bytes) for i in log.segments()] == [
        (i.path, i.first_offset, i.last_offset, i.size_bytes) for i in infos
    ]
    fill(log, 5)
    assert read_all(log) == [(o, payload(o)) for o in range(1, 106)]
    log.close()


def test_rotation_keeps_segments_within_max_bytes_and_big_records_alone(tmp_path):
    limit = 300
    log = open_log(tmp_path, segment_max_bytes=limit)
    big = b"B" * 1000
    fill(log, 20)
    assert log.append([payload(21), big, payload(23)]) == (21, 23)
    fill(log, 20)
    for info in log.segments():
        records = info.last_offset - info.first_offset + 1
        assert info.size_bytes == os.path.getsize(info.path)
        assert info.size_bytes <= limit or records == 1
    alone = [i for i in log.segments() if i.first_offset == 22]
    assert len(alone) == 1 and alone[0].last_offset == 22
    rows = read_all(log)
    assert [o for o, _ in rows] == list(range(1, 44))
    assert rows[21] == (22, big)
    log.close()


def test_empty_append_and_invalid_payloads_write_nothing(tmp_path):
    log = open_log(tmp_path)
    fill(log, 3)
    size = os.path.getsize(seg_path(tmp_path, 1))
    assert log.append([]) == (4, 3)
    with pytest.raises(ValueError):
        log.append([b"ok", b""])
    assert os.path.getsize(seg_path(tmp_path, 1)) == size and log.next_offset == 4
    log.close()


def test_sync_and_reopen_with_fsync(tmp_path):
    log = WalLog.open(tmp_path, segment_max_bytes=200, fsync=True)
    fill(log, 30)
    log.sync()
    log.sync()
    log.close()
    log = WalLog.open(tmp_path, segment_max_bytes=200, fsync=True)
    assert read_all(log) == [(o, payload(o)) for o in range(1, 31)]
    log.close()


def test_closed_log_refuses_use(tmp_path):
    log = open_log(tmp_path)
    fill(log, 1)
    log.close()
    log.close()
    with pytest.raises(ValueError):
        log.append([b"x"])
    with pytest.raises(ValueError):
        log.read(1, 1, 100)


# ---------------------------------------------------------------------- torn tails


def test_torn_tail_at_every_byte_of_the_last_record(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kissvdb.wal")
    source = tmp_path / "source"
    log = open_log(source, segment_max_bytes=200)
    fill(log, 12, batch=3)
    log.close()
    last_seq = len(segment_names(source))
    assert last_seq >= 2  # the torn segment has predecessors
    last = seg_path(source, last_seq)
    intact = open(last, "rb").read()
    cut_from = positions(last)[-1]
    work = tmp_path / "work"
    shutil.copytree(source, work)
    torn = seg_path(work, last_seq)
    for cut in range(cut_from + 1, len(intact)):
        with open(torn, "wb") as f:
            f.write(intact[:cut])
        caplog.clear()
        log = open_log(work, segment_max_bytes=200)
        assert (log.last_offset, log.next_offset) == (11, 12), cut
        assert os.path.getsize(torn) == cut_from
        assert truncation_logged(caplog, torn, cut_from, cut - cut_from), [r.getMessage() for r in caplog.records]
        assert log.append([b"after"]) == (12, 12)
        log.close()
        log = open_log(work, segment_max_bytes=200)
        assert log.read(11, 12, MiB) == [(11, payload(11)), (12, b"after")]
        log.close()


def test_torn_header_of_a_fresh_last_segment_at_every_byte(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kissvdb.wal")
    log = open_log(tmp_path)
    fill(log, 4)
    log.close()
    fresh = seg_path(tmp_path, 2)
    header = encode_header(5)
    for content in [header[:cut] for cut in range(HEADER_BYTES)] + [bytes(HEADER_BYTES), bytes(5000)]:
        with open(fresh, "wb") as f:
            f.write(content)
        caplog.clear()
        log = open_log(tmp_path)
        assert not os.path.exists(fresh)
        assert any(fresh in r.getMessage() and f"dropped {len(content)} bytes" in r.getMessage() for r in caplog.records)
        assert (log.last_offset, log.next_offset) == (4, 5)
        log.close()
    # A complete header with no records is a valid empty segment: appends continue in it.
    with open(fresh, "wb") as f:
        f.write(header)
    log = open_log(tmp_path)
    assert log.append([b"x"]) == (5, 5)
    assert [i.path for i in log.segments()] == [seg_path(tmp_path, 1), fresh]
    log.close()


def test_rotation_after_a_torn_header_reuses_the_sequence_number(tmp_path):
    log = open_log(tmp_path, segment_max_bytes=100)
    fill(log, 3, batch=1)
    log.close()
    count = len(segment_names(tmp_path))
    with open(seg_path(tmp_path, count + 1), "wb") as f:
        f.write(b"KVDB")
    log = open_log(tmp_path, segment_max_bytes=100)
    fill(log, 3, batch=1)
    with open(seg_path(tmp_path, count + 1), "rb") as f:
        assert decode_header(f.read(HEADER_BYTES)) == 4
    log.close()


def test_zero_filled_tails_are_torn_tails(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kissvdb.wal")
    log = open_log(tmp_path)
    fill(log, 10)
    log.close()
    path = seg_path(tmp_path, 1)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(bytes(1 << 16))  # preallocated / never-written blocks
    log = open_log(tmp_path)
    assert log.last_offset == 10 and os.path.getsize(path) == size
    assert truncation_logged(caplog, path, size, 1 << 16)
    log.close()

    # The last record's payload never reached disk: its bytes are zeros.
    last = positions(path)[-1]
    with open(path, "r+b") as f:
        f.seek(last + FRAME_OVERHEAD_BYTES)
        f.write(bytes(size - last - FRAME_OVERHEAD_BYTES) + bytes(300))
    log = open_log(tmp_path)
    assert log.last_offset == 9 and os.path.getsize(path) == last
    log.close()


def test_a_bit_flip_in_the_last_record_reads_as_a_torn_write(tmp_path):
    log = open_log(tmp_path)
    fill(log, 5)
    log.close()
    path = seg_path(tmp_path, 1)
    flip_bit(path, positions(path)[-1] + FRAME_OVERHEAD_BYTES + 1)
    log = open_log(tmp_path)
    assert log.last_offset == 4
    log.close()


# ---------------------------------------------------------------------- corruption


def test_bit_flips_in_earlier_records_are_corruption_naming_file_and_byte(tmp_path):
    rng = random.Random(20240601)
    log = open_log(tmp_path)
    fill(log, 40)
    log.close()
    path = seg_path(tmp_path, 1)
    pristine = open(path, "rb").read()
    starts = positions(path)
    for _ in range(40):
        victim = rng.randrange(len(starts) - 1)  # any record but the last
        end = starts[victim + 1]
        position = rng.randrange(starts[victim], end)
        with open(path, "wb") as f:
            f.write(pristine)
        flip_bit(path, position, rng.randrange(8))
        with pytest.raises(Corruption) as info:
            open_log(tmp_path)
        assert (info.value.path, info.value.position) == (path, starts[victim]), (victim, position)
        assert path in str(info.value) and str(starts[victim]) in str(info.value)


def test_bad_record_followed_by_a_valid_one_in_the_last_segment(tmp_path):
    log = open_log(tmp_path)
    fill(log, 3)
    log.close()
    path = seg_path(tmp_path, 1)
    second_to_last = positions(path)[-2]
    flip_bit(path, second_to_last + 4)  # its crc field
    with pytest.raises(Corruption, match="valid record follows") as info:
        open_log(tmp_path)
    assert info.value.position == second_to_last
    # Even when the damage looks like a tail (zeros), a valid record after it means corruption.
    with open(path, "r+b") as f:
        f.seek(second_to_last)
        f.write(bytes(FRAME_OVERHEAD_BYTES))
    with pytest.raises(Corruption):
        open_log(tmp_path)


def test_damage_in_a_non_last_segment_is_corruption(tmp_path):
    log = open_log(tmp_path, segment_max_bytes=200)
    fill(log, 20)
    log.close()
    first = seg_path(tmp_path, 1)
    pristine = open(first, "rb").read()
    last_record = positions(first)[-1]
    for position, expected in [
        (last_record + FRAME_OVERHEAD_BYTES, last_record),  # its last record: torn only if last segment
        (len(pristine) - 1, last_record),
        (10, 0),  # header
    ]:
        with open(first, "wb") as f:
            f.write(pristine)
        flip_bit(first, position)
        with pytest.raises(Corruption) as info:
            open_log(tmp_path, segment_max_bytes=200)
        assert (info.value.path, info.value.position) == (first, expected)
    # A short (torn-looking) non-last segment is corruption too.
    with open(first, "wb") as f:
        f.write(pristine[: last_record + 3])
    with pytest.raises(Corruption):
        open_log(tmp_path, segment_max_bytes=200)
    with open(first, "wb") as f:
        f.write(b"")
    with pytest.raises(Corruption, match="bad header"):
        open_log(tmp_path, segment_max_bytes=200)


def test_damaged_header_of_the_last_segment_is_corruption(tmp_path):
    log = open_log(tmp_path)
    fill(log, 3)
    log.close()
    flip_bit(seg_path(tmp_path, 1), 3)
    with pytest.raises(Corruption, match="magic"):
        open_log(tmp_path)


def test_missing_middle_segment_and_overlapping_offsets_are_corruption(tmp_path):
    log = open_log(tmp_path, segment_max_bytes=150)
    fill(log, 20)
    log.close()
    second, third = seg_path(tmp_path, 2), seg_path(tmp_path, 3)
    data = open(third, "rb").read()
    first_of_third = decode_header(data)
    with open(third, "wb") as f:  # claims offsets the second segment already holds
        f.write(encode_header(first_of_third - 1) + data[HEADER_BYTES:])
    with pytest.raises(Corruption, match="overlaps") as info:
        open_log(tmp_path, segment_max_bytes=150)
    assert info.value.path == third
    with open(third, "wb") as f:
        f.write(data)
    os.unlink(second)
    with pytest.raises(Corruption, match="events-000002.log is missing"):
        open_log(tmp_path, segment_max_bytes=150)


def test_verify_from_skips_crc_of_old_segments_but_read_still_checks(tmp_path):
    log = open_log(tmp_path, segment_max_bytes=200)
    fill(log, 30)
    log.close()
    first = seg_path(tmp_path, 1)
    victim = positions(first)[1]  # offset 2
    flip_bit(first, victim + FRAME_OVERHEAD_BYTES)
    with pytest.raises(Corruption):
        open_log(tmp_path, segment_max_bytes=200)
    log = open_log(tmp_path, segment_max_bytes=200, verify_from=25)
    assert log.read(3, 4, MiB) == [(3, payload(3)), (4, payload(4))]
    with pytest.raises(Corruption) as info:
        log.read(1, 4, MiB)
    assert (info.value.path, info.value.position) == (first, victim)
    log.close()


# ---------------------------------------------------------------- min_next_offset


def test_min_next_offset_hole_starts_a_new_segment_and_survives_reopen(tmp_path):
    log = open_log(tmp_path)
    fill(log, 10)
    log.close()
    log = open_log(tmp_path, min_next_offset=100)
    assert (log.first_offset, log.last_offset, log.next_offset) == (1, 10, 100)
    assert log.read(11, 99, MiB) == []
    assert log.append([b"a", b"b"]) == (100, 101)
    with open(seg_path(tmp_path, 2), "rb") as f:
        assert decode_header(f.read(HEADER_BYTES)) == 100
    log.close()
    log = open_log(tmp_path)
    assert (log.first_offset, log.last_offset, log.next_offset) == (1, 101, 102)
    rows = read_all(log)
    assert [o for o, _ in rows] == list(range(1, 11)) + [100, 101]
    assert log.read(50, 1000, MiB) == [(100, b"a"), (101, b"b")]
    assert log.append([b"c"]) == (102, 102)  # continues in the second segment
    assert len(log.segments()) == 2
    log.close()


def test_min_next_offset_on_an_empty_log(tmp_path):
    log = open_log(tmp_path, min_next_offset=50)
    assert (log.first_offset, log.last_offset, log.next_offset) == (50, 0, 50)
    with pytest.raises(OffsetNotRetained) as info:
        log.read(1, 100, MiB)
    assert info.value.first_offset == 50
    assert log.read(50, 100, MiB) == []
    assert log.append([b"x"]) == (50, 50)
    assert log.read(50, 100, MiB) == [(50, b"x")]
    log.close()
    log = open_log(tmp_path, min_next_offset=10)
    assert (log.first_offset, log.last_offset, log.next_offset) == (50, 50, 51)
    log.close()


# ---------------------------------------------------------------------------- read


def expected_read(model: dict[int, bytes], start: int, end: int, max_bytes: int) -> list[tuple[int, bytes]]:
    out, total = [], 0
    for offset in sorted(o for o in model if start <= o <= end):
        if out and total + len(model[offset]) > max_bytes:
            break
        out.append((offset, model[offset]))
        total += len(model[offset])
    return out


@pytest.mark.parametrize("segment_max_bytes", [MiB, 2000])
def test_read_from_arbitrary_offsets_respects_max_bytes(tmp_path, segment_max_bytes):
    rng = random.Random(segment_max_bytes)
    log = open_log(tmp_path, segment_max_bytes=segment_max_bytes)
    fill(log, 1500, batch=50)  # > 256 records per segment in the MiB case: sparse index hops
    model = {o: payload(o) for o in range(1, 1501)}
    for _ in range(300):
        start = rng.randrange(1, 1600)
        end = start + rng.randrange(0, 800)
        max_bytes = rng.choice([1, 20, 500, 5000, MiB])
        assert log.read(start, end, max_bytes) == expected_read(model, start, end, max_bytes), (start, end, max_bytes)
    log.close()
    log = open_log(tmp_path, segment_max_bytes=segment_max_bytes)  # the index rebuilt by the scan
    for start in (1, 255, 256, 257, 513, 1000, 1500):
        assert log.read(start, start + 300, 3000) == expected_read(model, start, start + 300, 3000)
    log.close()


def test_read_runs_concurrently_with_append(tmp_path):
    log = open_log(tmp_path, segment_max_bytes=32 * 1024)
    total = 20_000
    failures: list[BaseException] = []

    def writer():
        try:
            fill(log, total, batch=100)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def tail_reader():
        try:
            start = 1
            while start <= total and not failures:
                for offset, data in log.read(start, 1 << 62, 16 * 1024):
                    assert (offset, data) == (start, payload(start))
                    start += 1
        except BaseException as exc:
            failures.append(exc)

    def random_reader():
        try:
            rng = random.Random(3)
            while log.last_offset < total and not failures:
                last = log.last_offset
                if last == 0:
                    continue
                start = rng.randrange(1, last + 1)
                rows = log.read(start, last, 4096)
                assert rows and rows[0][0] == start and all(data == payload(o) for o, data in rows)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=t) for t in (writer, tail_reader, random_reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert log.last_offset == total and len(log.segments()) > 10
    log.close()


# ----------------------------------------------------------------------- retention


def three_record_segments(path, segments: int = 5, **kwargs) -> WalLog:
    """A log whose segments hold exactly 3 records each: [1-3], [4-6], ..."""
    record = FRAME_OVERHEAD_BYTES + 10
    log = open_log(path, segment_max_bytes=HEADER_BYTES + 3 * record, **kwargs)
    for offset in range(1, 3 * segments + 1):
        log.append([b"%010d" % offset])
    infos = log.segments()
    assert [(i.first_offset, i.last_offset) for i in infos] == [(s * 3 + 1, s * 3 + 3) for s in range(segments)]
    return log


def firsts(log: WalLog) -> list[int]:
    return [i.first_offset for i in log.segments()]


FAR_FUTURE = 1e12


def test_retain_drops_only_closed_checkpointed_segments_oldest_first(tmp_path):
    log = three_record_segments(tmp_path)
    assert log.retain(0, 0, 0, 0, FAR_FUTURE) == []
    assert log.retain(8, 0, 0, 0, FAR_FUTURE) == [seg_path(tmp_path, 1), seg_path(tmp_path, 2)]  # 3rd ends at 9
    assert firsts(log) == [7, 10, 13] and log.first_offset == 7
    assert log.retain(1000, 0, 0, 0, FAR_FUTURE) == [seg_path(tmp_path, 3), seg_path(tmp_path, 4)]
    assert firsts(log) == [13]  # never the active segment, even fully checkpointed
    assert sorted(os.listdir(tmp_path)) == ["events-000005.log"]
    with pytest.raises(OffsetNotRetained) as info:
        log.read(12, 20, MiB)
    assert info.value.first_offset == 13
    assert [o for o, _ in log.read(13, 20, MiB)] == [13, 14, 15]
    log.close()
    log = open_log(tmp_path, segment_max_bytes=HEADER_BYTES + 54)
    assert (log.first_offset, log.last_offset) == (13, 15)
    log.close()


def test_retain_keeps_the_newest_keep_segments_of_the_checkpointed_ones(tmp_path):
    log = three_record_segments(tmp_path)
    assert log.retain(9, 1, 0, 0, FAR_FUTURE) == [seg_path(tmp_path, 1), seg_path(tmp_path, 2)]
    assert log.retain(9, 1, 0, 0, FAR_FUTURE) == []
    assert log.retain(12, 1, 0, 0, FAR_FUTURE) == [seg_path(tmp_path, 3)]
    assert firsts(log) == [10, 13]
    log.close()


def test_retain_keeps_min_bytes(tmp_path):
    log = three_record_segments(tmp_path)
    size = log.segments()[0].size_bytes
    assert log.retain(1000, 0, 3 * size, 0, FAR_FUTURE) == [seg_path(tmp_path, 1), seg_path(tmp_path, 2)]
    assert log.retain(1000, 0, 3 * size, 0, FAR_FUTURE) == []
    assert log.retain(1000, 0, 3 * size - 1, 0, FAR_FUTURE) == []  # dropping one more leaves 2 * size
    assert firsts(log) == [7, 10, 13]
    log.close()


def test_retain_keeps_segments_younger_than_min_age(tmp_path):
    log = three_record_segments(tmp_path)
    now = 1_000_000.0
    for seq, mtime in [(1, now - 100), (2, now - 5), (3, now - 100), (4, now - 100)]:
        os.utime(seg_path(tmp_path, seq), (mtime, mtime))
    # Segment 2 is too young; segment 3 is old enough but stays, so retained offsets remain contiguous.
    assert log.retain(1000, 0, 0, 10, now) == [seg_path(tmp_path, 1)]
    assert log.retain(1000, 0, 0, 10, now + 10) == [seg_path(tmp_path, 2), seg_path(tmp_path, 3), seg_path(tmp_path, 4)]
    log.close()


def test_retain_with_fsync_and_reading_a_segment_that_vanished(tmp_path):
    log = three_record_segments(tmp_path, fsync=True)
    assert log.retain(3, 0, 0, 0, FAR_FUTURE) == [seg_path(tmp_path, 1)]
    os.unlink(seg_path(tmp_path, 2))  # as if retention won a race against this reader
    with pytest.raises(OffsetNotRetained):
        log.read(4, 6, MiB)
    log.close()


# ------------------------------------------------------------- append failure rollback


class FailingWrite:
    """os.write that lets `allowed` calls through (the first of them short), then fails."""

    def __init__(self, allowed: int, error: int = errno.ENOSPC):
        self.real = os.write
        self.allowed = allowed
        self.error = error
        self.calls = 0

    def __call__(self, fd, data):
        self.calls += 1
        if self.calls > self.allowed:
            raise OSError(self.error, os.strerror(self.error))
        view = memoryview(data)
        return self.real(fd, view[: max(1, len(view) // 2)] if self.calls == 1 else view)


def test_failed_append_truncates_back_and_the_log_keeps_working(tmp_path, monkeypatch):
    log = open_log(tmp_path)
    fill(log, 5)
    path = seg_path(tmp_path, 1)
    size = os.path.getsize(path)
    monkeypatch.setattr(os, "write", FailingWrite(allowed=1))  # half the batch lands, then ENOSPC
    with pytest.raises(OSError) as info:
        log.append([payload(6), payload(7), payload(8)])
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert os.path.getsize(path) == size
    assert (log.next_offset, log.last_offset) == (6, 5)
    assert log.append([b"later"]) == (6, 6)
    assert log.read(5, 6, MiB) == [(5, payload(5)), (6, b"later")]
    log.close()
    log = open_log(tmp_path)
    assert log.last_offset == 6
    log.close()


def test_failed_append_across_rotation_deletes_the_new_segment(tmp_path, monkeypatch):
    log = WalLog.open(tmp_path, segment_max_bytes=200, fsync=True)
    fill(log, 3)
    log.sync()
    before = {name: os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)}
    segments_before = [(i.path, i.first_offset, i.last_offset, i.size_bytes) for i in log.segments()]
    # Call 1: the chunk for the active segment (short write), 2: its rest, 3: the new header, 4: fails.
    failing = FailingWrite(allowed=3)
    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(OSError):
        log.append([b"y" * 60 for _ in range(6)])
    monkeypatch.undo()
    assert failing.calls == 4 and not os.path.exists(seg_path(tmp_path, 2))
    assert {name: os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)} == before
    assert [(i.path, i.first_offset, i.last_offset, i.size_bytes) for i in log.segments()] == segments_before
    assert log.next_offset == 4
    fill(log, 10)
    log.sync()
    log.close()
    log = WalLog.open(tmp_path, segment_max_bytes=200, fsync=True)
    assert read_all(log) == [(o, payload(o)) for o in range(1, 14)]
    log.close()


def test_failed_fsync_is_fail_stop(tmp_path, monkeypatch):
    log = WalLog.open(tmp_path, segment_max_bytes=MiB, fsync=True)
    fill(log, 2)

    def broken_fdatasync(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fdatasync", broken_fdatasync)
    with pytest.raises(OSError):
        log.sync()
    monkeypatch.undo()
    with pytest.raises(PersistenceError) as info:
        log.append([b"x"])  # a later fsync must not be trusted: no more writes
    assert info.value.outcome_unknown
    with pytest.raises(PersistenceError):
        log.sync()
    assert log.read(1, 2, MiB) == [(1, payload(1)), (2, payload(2))]  # reads still work
    log.close()


def test_segment_file_names_sort_numerically_past_six_digits(tmp_path):
    from kissvdb.wal.segment import list_segment_files, parse_segment_name, segment_name

    assert segment_name(1) == "events-000001.log" and segment_name(1234567) == "events-1234567.log"
    assert parse_segment_name("events-1234567.log") == 1234567 and parse_segment_name("events-1.log") is None
    for seq in (999999, 1000000, 1000001):
        (tmp_path / segment_name(seq)).write_bytes(b"")
    (tmp_path / "events-000001.log.tmp").write_bytes(b"")
    assert [seq for seq, _ in list_segment_files(str(tmp_path))] == [999999, 1000000, 1000001]


def test_segment_info_fields(tmp_path):
    log = open_log(tmp_path, min_next_offset=7)
    fill(log, 2)
    (info,) = log.segments()
    assert (info.path, info.seq, info.first_offset, info.last_offset) == (seg_path(tmp_path, 1), 1, 7, 8)
    assert info.size_bytes == HEADER_BYTES + 2 * FRAME_OVERHEAD_BYTES + len(payload(7)) + len(payload(8))
    assert info.mtime_s == os.stat(info.path).st_mtime
    with open(info.path, "rb") as f:
        assert struct.unpack_from("<Q", f.read(HEADER_BYTES), 12)[0] == 7
    log.close()

"""Index sidecars (`events-NNNNNN.idx`): opening a WAL without reading the records of sealed
segments that are never replayed, and never trusting a sidecar that does not match its segment.

Real files in tmp_path; bytes read are counted at the OS edge (/proc/self/io rchar, which counts
every read syscall of this process), and damage is done to the files on disk."""

import errno
import logging
import os
import random
import shutil

import pytest

from kissvdb.errors import Corruption
from kissvdb.wal import segment as wal_segment
from kissvdb.wal import sidecar as wal_sidecar
from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, HEADER_BYTES, iter_frames
from kissvdb.wal.inspect import apply_repair, check, plan_repair
from kissvdb.wal.log import WalLog
from kissvdb.wal.segment import INDEX_EVERY

SEGMENT_MAX = 16 * 1024  # ~600 records of ~20 bytes: more than INDEX_EVERY, so sparse entries matter
MiB = 1 << 20


def payload(offset: int) -> bytes:
    return b"event-%06d:" % offset + bytes([offset % 251]) * (offset % 13 + 1)


def open_log(path, **kwargs) -> WalLog:
    kwargs.setdefault("segment_max_bytes", SEGMENT_MAX)
    kwargs.setdefault("fsync", False)
    return WalLog.open(path, **kwargs)


def fill(log: WalLog, count: int, batch: int = 50) -> None:
    while count > 0:
        n = min(batch, count)
        start = log.next_offset
        assert log.append([payload(o) for o in range(start, start + n)]) == (start, start + n - 1)
        count -= n


def build(path, records: int = 6000, **kwargs) -> dict[int, bytes]:
    log = open_log(path, **kwargs)
    first = log.next_offset
    fill(log, records)
    log.close()
    return {o: payload(o) for o in range(first, first + records)}


def seg_path(directory, seq: int) -> str:
    return os.path.join(directory, f"events-{seq:06d}.log")


def log_files(directory) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".log"))


def idx_files(directory) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".idx"))


def state(log: WalLog) -> list[tuple]:
    """Everything open() derives per segment (what read() and retention rely on)."""
    return [(s.path, s.seq, s.first_offset, s.count, s.end, list(s.sparse), s.last, s.last_head) for s in log._segments]


def offsets(log: WalLog) -> tuple[int, int, int]:
    return log.first_offset, log.last_offset, log.next_offset


def reference(path, **kwargs):
    """state/offsets of a log opened the old way: every segment scanned, every CRC checked."""
    copy = str(path) + "-reference"
    shutil.copytree(path, copy)
    for idx in idx_files(copy):
        os.unlink(idx)
    log = open_log(copy, verify_from=1, **kwargs)
    try:
        return [(p.replace(copy, str(path)), *rest) for p, *rest in state(log)], offsets(log)
    finally:
        log.close()
        shutil.rmtree(copy)


def rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


class ScanSpy:
    """Records which segment files wal_segment.scan reads (the only reader of whole segments)."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real = wal_segment.scan

        def spy(path, **kwargs):
            self.paths.append(path)
            return real(path, **kwargs)

        monkeypatch.setattr(wal_segment, "scan", spy)


def read_all(log: WalLog, start: int) -> list[tuple[int, bytes]]:
    out = []
    while True:
        rows = log.read(start, 1 << 62, 64 * 1024)
        if not rows:
            return out
        out.extend(rows)
        start = rows[-1][0] + 1


# --------------------------------------------------------------------------- the point


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")
def test_reopen_reads_only_the_segments_it_may_replay(tmp_path, monkeypatch):
    model = build(tmp_path, 50_000, segment_max_bytes=64 * 1024)
    segments = log_files(tmp_path)
    assert len(segments) >= 10
    # Every sealed segment got its sidecar when it was sealed; the newest one has none.
    assert [wal_sidecar.sidecar_path(p) for p in segments[:-1]] == idx_files(tmp_path)
    expected_state, expected_offsets = reference(tmp_path, segment_max_bytes=64 * 1024)
    sealed_bytes = sum(os.path.getsize(p) for p in segments[:-1])
    last_bytes = os.path.getsize(segments[-1])
    sidecar_bytes = sum(os.path.getsize(p) for p in idx_files(tmp_path))
    # What the sidecar check walks: the (at most INDEX_EVERY) records after the last sparse entry.
    tail_bytes = sum(s[4] - s[5][-1] for s in expected_state[:-1])

    spy = ScanSpy(monkeypatch)
    before = rchar()
    log = open_log(tmp_path, verify_from=50_001, segment_max_bytes=64 * 1024)
    read_bytes = rchar() - before
    assert spy.paths == [segments[-1]]
    # The last segment, the sidecars, 24-byte headers and the sealed segments' last few records.
    assert read_bytes <= last_bytes + sidecar_bytes + tail_bytes + 24 * len(segments) + 4096, (read_bytes, sealed_bytes)
    assert read_bytes < sealed_bytes / 5
    assert state(log) == expected_state and offsets(log) == expected_offsets
    assert read_all(log, 1) == sorted(model.items())
    log.close()

    # A checkpoint further back: only segments that may hold offsets >= verify_from are read.
    spy.paths.clear()
    third_first = wal_segment.read_first_offset(segments[2])
    log = open_log(tmp_path, verify_from=third_first, segment_max_bytes=64 * 1024)
    assert spy.paths == segments[2:]
    assert state(log) == expected_state
    log.close()


def test_reads_across_sidecar_described_segments(tmp_path):
    model = build(tmp_path, 8000)
    rng = random.Random(8000)
    log = open_log(tmp_path, verify_from=10**9)
    segment_records = [s.count for s in log._segments]
    assert max(segment_records) > 2 * INDEX_EVERY  # reads start mid-segment via the sparse index
    for _ in range(400):
        start = rng.randrange(1, 8100)
        end = start + rng.randrange(0, 2000)
        max_bytes = rng.choice([1, 100, 5000, MiB])
        rows = log.read(start, end, max_bytes)
        expected, total = [], 0
        for offset in range(start, min(end, 8000) + 1):
            if expected and total + len(model[offset]) > max_bytes:
                break
            expected.append((offset, model[offset]))
            total += len(model[offset])
        assert rows == expected, (start, end, max_bytes)
    fill(log, 3000)  # appends and rotation continue after such an open
    log.close()
    log = open_log(tmp_path, verify_from=10**9)
    assert read_all(log, 7990) == [(o, payload(o)) for o in range(7990, 11001)]
    log.close()


# ------------------------------------------------------------- old data dirs and damage


def test_data_dir_without_sidecars_opens_by_scanning_and_gets_them(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="kissvdb.wal")
    model = build(tmp_path, 6000)
    expected_state, expected_offsets = reference(tmp_path)
    written = {p: open(p, "rb").read() for p in idx_files(tmp_path)}
    for path in written:
        os.unlink(path)
    spy = ScanSpy(monkeypatch)
    log = open_log(tmp_path, verify_from=10**9)
    assert spy.paths == log_files(tmp_path)  # the old way: every segment walked
    assert state(log) == expected_state and offsets(log) == expected_offsets
    log.close()
    # Rebuilt at open, byte for byte what sealing wrote.
    assert {p: open(p, "rb").read() for p in idx_files(tmp_path)} == written
    assert not any("ignoring" in r.getMessage() for r in caplog.records)  # missing is not news
    spy.paths.clear()
    log = open_log(tmp_path, verify_from=10**9)
    assert spy.paths == log_files(tmp_path)[-1:]
    assert read_all(log, 1) == sorted(model.items())
    log.close()


def rewrite_sidecar(path, **changes) -> None:
    """Write a sidecar with a valid CRC but changed fields (what a stale or buggy one looks like)."""
    fields, reason = wal_sidecar.decode(open(wal_sidecar.sidecar_path(path), "rb").read())
    assert reason is None
    first, count, end, last, last_head, sparse = fields
    values = dict(first_offset=first, count=count, end=end, sparse=sparse, last=last, last_head=last_head)
    values.update(changes)
    data = wal_sidecar.encode(values["first_offset"], values["count"], values["end"], values["sparse"],
                              values["last"], values["last_head"])
    with open(wal_sidecar.sidecar_path(path), "wb") as f:
        f.write(data)


def positions(path) -> list[int]:
    return [pos for pos, _ in iter_frames(open(path, "rb").read(), HEADER_BYTES)]


def damage_flip(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(path, "wb").write(bytes(data))


def damage_truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 5])


def damage_empty(path):
    open(path, "wb").write(b"")


def damage_garbage(path):
    open(path, "wb").write(os.urandom(300))


def damage_other_segment(path):  # the sidecar of another segment under this name
    seq = wal_segment.parse_segment_name(os.path.basename(path).replace(".idx", ".log"))
    other = os.path.join(os.path.dirname(path), f"events-{seq + 1:06d}.idx")
    shutil.copyfile(other, path)


def stale_prefix(segment):  # describes the segment as it was 3 records earlier
    starts = positions(segment)
    count = len(starts) - 3
    rewrite_sidecar(segment, count=count, end=starts[count], last=starts[count - 1],
                    last_head=open(segment, "rb").read()[starts[count - 1] : starts[count - 1] + 8],
                    sparse=[p for i, p in enumerate(starts[:count]) if i % INDEX_EVERY == 0])


def wrong_count(segment):  # right size and last record, but a count that would shift every offset
    fields, _ = wal_sidecar.decode(open(wal_sidecar.sidecar_path(segment), "rb").read())
    rewrite_sidecar(segment, count=fields[1] - 1)


def wrong_last_head(segment):  # e.g. a segment rewritten to the same size by repair + new appends
    fields, _ = wal_sidecar.decode(open(wal_sidecar.sidecar_path(segment), "rb").read())
    head = bytearray(fields[4])
    head[5] ^= 1
    rewrite_sidecar(segment, last_head=bytes(head))


def wrong_first_offset(segment):
    fields, _ = wal_sidecar.decode(open(wal_sidecar.sidecar_path(segment), "rb").read())
    rewrite_sidecar(segment, first_offset=fields[0] + 1)


def wrong_sparse(segment):  # its last entry one record late: the count no longer adds up
    fields, _ = wal_sidecar.decode(open(wal_sidecar.sidecar_path(segment), "rb").read())
    starts = positions(segment)
    sparse = list(fields[5])
    sparse[-1] = starts[starts.index(sparse[-1]) + 1]
    rewrite_sidecar(segment, sparse=sparse)


@pytest.mark.parametrize(
    "damage",
    [damage_flip, damage_truncate, damage_empty, damage_garbage, damage_other_segment],
    ids=lambda f: f.__name__,
)
def test_a_damaged_sidecar_is_ignored_and_rewritten(tmp_path, damage, caplog):
    caplog.set_level(logging.INFO, logger="kissvdb.wal")
    model = build(tmp_path, 6000)
    expected_state, expected_offsets = reference(tmp_path)
    victim = idx_files(tmp_path)[1]
    good = open(victim, "rb").read()
    damage(victim)
    log = open_log(tmp_path, verify_from=10**9)
    assert state(log) == expected_state and offsets(log) == expected_offsets
    assert read_all(log, 1) == sorted(model.items())
    log.close()
    assert any("ignoring the index sidecar" in r.getMessage() and victim.replace(".idx", ".log") in r.getMessage()
               for r in caplog.records)
    assert open(victim, "rb").read() == good


@pytest.mark.parametrize(
    "change", [stale_prefix, wrong_count, wrong_last_head, wrong_first_offset, wrong_sparse], ids=lambda f: f.__name__
)
def test_a_sidecar_with_a_valid_crc_that_does_not_match_its_segment_is_not_trusted(tmp_path, change):
    model = build(tmp_path, 6000)
    expected_state, expected_offsets = reference(tmp_path)
    segment = log_files(tmp_path)[2]
    good = open(wal_sidecar.sidecar_path(segment), "rb").read()
    change(segment)
    scan, reason = wal_sidecar.load(segment, wal_segment.read_first_offset(segment))
    assert scan is None and reason
    log = open_log(tmp_path, verify_from=10**9)
    assert state(log) == expected_state and offsets(log) == expected_offsets
    assert read_all(log, 1) == sorted(model.items())
    log.close()
    assert open(wal_sidecar.sidecar_path(segment), "rb").read() == good


def test_damage_in_a_sidecar_described_segment_is_still_found(tmp_path):
    build(tmp_path, 6000)
    segment = log_files(tmp_path)[1]
    starts = positions(segment)
    victim = starts[len(starts) // 2]
    first = wal_segment.read_first_offset(segment)
    offset = first + len(starts) // 2
    data = bytearray(open(segment, "rb").read())
    data[victim + FRAME_OVERHEAD_BYTES] ^= 0x01  # a payload byte: the length walk cannot see it
    open(segment, "wb").write(bytes(data))
    log = open_log(tmp_path, verify_from=10**9)  # never replayed, so not read at open ...
    with pytest.raises(Corruption) as info:  # ... but a read of it checks its CRC
        log.read(offset - 1, offset + 1, MiB)
    assert (info.value.path, info.value.position) == (segment, victim)
    log.close()
    report = check(tmp_path)  # and the offline check reads every record
    assert [(p.file, p.position, p.offset) for p in report.problems] == [(segment, victim, offset)]
    with pytest.raises(Corruption):
        open_log(tmp_path, verify_from=1)  # a checkpoint that needs it replayed refuses to start

    # A sealed segment whose size no longer matches its sidecar is scanned, and the damage named.
    open(segment, "wb").write(bytes(data[: victim + 3]))
    with pytest.raises(Corruption) as info:
        open_log(tmp_path, verify_from=10**9)
    assert (info.value.path, info.value.position) == (segment, victim)


# ------------------------------------------------------------------ holes and repair


def test_hole_after_repair_then_more_segments(tmp_path, monkeypatch):
    build(tmp_path, 6000)
    segments = log_files(tmp_path)
    bad_segment = segments[3]
    starts = positions(bad_segment)
    data = bytearray(open(bad_segment, "rb").read())
    data[starts[10] + FRAME_OVERHEAD_BYTES] ^= 0x01
    open(bad_segment, "wb").write(bytes(data))
    plan = plan_repair(tmp_path)
    assert plan.file == bad_segment and plan.truncate_to == starts[10]
    apply_repair(plan)
    # Repair deleted the sidecars of what it cut or deleted; the others are untouched.
    assert idx_files(tmp_path) == [wal_sidecar.sidecar_path(p) for p in segments[:3]]
    kept_last = wal_segment.read_first_offset(bad_segment) + 9

    # The checkpoints were at 6000: offsets continue from 6001, leaving a hole after kept_last.
    log = open_log(tmp_path, min_next_offset=6001)
    assert log.last_offset == kept_last and log.next_offset == 6001
    fill(log, 3000)
    assert len(log.segments()) > len(segments[:4]) + 2
    log.close()
    # The segment left by repair was the inactive newest one at the first rotation: it got its
    # sidecar then, before its successor existed.
    assert wal_sidecar.sidecar_path(bad_segment) in idx_files(tmp_path)
    expected_state, expected_offsets = reference(tmp_path)
    spy = ScanSpy(monkeypatch)
    log = open_log(tmp_path, verify_from=10**9)
    assert spy.paths == log_files(tmp_path)[-1:]
    assert state(log) == expected_state and offsets(log) == expected_offsets
    rows = read_all(log, 1)
    assert [o for o, _ in rows] == list(range(1, kept_last + 1)) + list(range(6001, 9001))
    assert all(data == payload(o) for o, data in rows)
    assert log.read(kept_last + 1, 6000, MiB) == []  # the hole reads as nothing
    assert log.read(kept_last, 6001, MiB) == [(kept_last, payload(kept_last)), (6001, payload(6001))]
    log.close()
    assert check(tmp_path).ok


def test_hole_from_min_next_offset_at_every_kind_of_open(tmp_path):
    build(tmp_path, 100)  # one segment, no sidecar yet (never sealed)
    assert idx_files(tmp_path) == []
    log = open_log(tmp_path, min_next_offset=500)
    assert log.append([b"x"]) == (500, 500)  # new segment: the old newest one is sealed first
    assert idx_files(tmp_path) == [wal_sidecar.sidecar_path(seg_path(tmp_path, 1))]
    log.close()
    expected_state, expected_offsets = reference(tmp_path)
    log = open_log(tmp_path, verify_from=10**9)
    assert state(log) == expected_state and offsets(log) == expected_offsets
    assert [o for o, _ in read_all(log, 1)] == list(range(1, 101)) + [500]
    log.close()


# --------------------------------------------------------------- writing them at seal


def test_sidecar_write_failure_does_not_fail_the_append(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="kissvdb.wal")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    log = open_log(tmp_path)
    monkeypatch.setattr(wal_sidecar, "write", no_space)
    fill(log, 3000)
    monkeypatch.undo()
    log.close()
    assert len(log_files(tmp_path)) > 2 and idx_files(tmp_path) == []
    assert any("could not write the index sidecar" in r.getMessage() for r in caplog.records)
    log = open_log(tmp_path, verify_from=10**9)  # scanned, as an old data dir is
    assert read_all(log, 1) == [(o, payload(o)) for o in range(1, 3001)]
    log.close()
    assert len(idx_files(tmp_path)) == len(log_files(tmp_path)) - 1


def test_sidecar_matches_a_scan_for_every_rotation_shape(tmp_path):
    """Batches that rotate mid-batch, several times in one batch, records alone in a segment,
    and a batch that starts with a rotation: each sealed segment's sidecar equals its scan."""
    log = open_log(tmp_path, segment_max_bytes=2000)
    rng = random.Random(7)
    offset = 1
    for _ in range(200):
        batch = [b"r%06d" % (offset + i) + b"." * rng.choice([1, 10, 100, 700, 3000]) for i in range(rng.randrange(1, 30))]
        log.append(batch)
        offset += len(batch)
    log.close()
    segments = log_files(tmp_path)
    assert len(segments) > 20
    for path in segments[:-1]:
        scan = wal_segment.scan(path, is_last=False)
        loaded, reason = wal_sidecar.load(path, scan.first_offset)
        assert reason is None, (path, reason)
        assert (loaded.count, loaded.end, loaded.sparse, loaded.last, loaded.last_head) == (
            scan.count, scan.end, scan.sparse, scan.last, scan.last_head
        ), path
    assert not os.path.exists(wal_sidecar.sidecar_path(segments[-1]))


def test_retention_deletes_sidecars_with_their_segments(tmp_path):
    build(tmp_path, 6000)
    log = open_log(tmp_path, verify_from=10**9)
    removed = log.retain(3000, 1, 0, 0, 1e12)
    assert removed
    for path in removed:
        assert not os.path.exists(path) and not os.path.exists(wal_sidecar.sidecar_path(path))
    assert idx_files(tmp_path) == [wal_sidecar.sidecar_path(p) for p in log_files(tmp_path)[:-1]]
    first = log.first_offset
    log.close()
    log = open_log(tmp_path, verify_from=10**9)
    assert read_all(log, first) == [(o, payload(o)) for o in range(first, 6001)]
    log.close()

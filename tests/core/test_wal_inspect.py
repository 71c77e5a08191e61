"""Offline check and repair on real damaged data directories."""

import os

import pytest

from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, HEADER_BYTES, encode_header, iter_frames
from kissvdb.wal.inspect import StalePlan, apply_repair, check, plan_repair
from kissvdb.wal.log import WalLog

SEGMENT_MAX = 300


def build(path, records: int = 60) -> list[str]:
    log = WalLog.open(path, segment_max_bytes=SEGMENT_MAX, fsync=False)
    for offset in range(1, records + 1):
        log.append([b"record-%04d" % offset])
    log.close()
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".log"))


def positions(path) -> list[int]:
    return [pos for pos, _ in iter_frames(open(path, "rb").read(), HEADER_BYTES)]


def flip(path, position: int) -> None:
    data = bytearray(open(path, "rb").read())
    data[position] ^= 0x40
    open(path, "wb").write(bytes(data))


def snapshot(path) -> dict[str, bytes]:
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


def test_check_reports_segments_and_ok_on_a_clean_wal(tmp_path):
    files = build(tmp_path)
    calls = []
    report = check(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert report.ok and report.problems == () and report.torn_tail is None
    assert [s.path for s in report.segments] == files
    assert report.segments[0].first_offset == 1 and report.segments[-1].last_offset == 60
    assert sum(s.records for s in report.segments) == 60
    total = sum(os.path.getsize(f) for f in files)
    assert calls[-1] == (total, total) and len(calls) == len(files)
    assert "OK" in report.format() and os.path.basename(files[0]) in report.format()
    assert plan_repair(tmp_path) is None


def test_check_finds_damage_everywhere_without_modifying_anything(tmp_path):
    files = build(tmp_path)
    assert len(files) >= 4
    first_bad = positions(files[0])[1]
    flip(files[0], first_bad + FRAME_OVERHEAD_BYTES)  # offset 2
    flip(files[2], 5)  # header of the third segment
    with open(files[-1], "ab") as f:
        f.write(b"\x09\x00\x00\x00torn")  # torn tail: cut at start, not a problem
    before = snapshot(tmp_path)
    report = check(tmp_path)
    assert snapshot(tmp_path) == before
    assert not report.ok
    assert [(p.file, p.position, p.offset) for p in report.problems] == [(files[0], first_bad, 2), (files[2], 0, None)]
    assert report.torn_tail is not None and report.torn_tail.file == files[-1]
    text = report.format()
    assert f"{os.path.basename(files[0])} byte {first_bad} (offset 2)" in text and "torn tail" in text


def test_repair_truncates_at_first_bad_record_and_deletes_later_segments(tmp_path):
    files = build(tmp_path)
    starts = positions(files[1])
    bad = starts[2]
    flip(files[1], bad + 2)  # the length field of the third record of segment 2
    first_of_second = check(tmp_path).segments[1].first_offset
    before = snapshot(tmp_path)

    plan = plan_repair(tmp_path)
    assert snapshot(tmp_path) == before  # planning changes nothing
    assert (plan.file, plan.position, plan.offset, plan.truncate_to) == (files[1], bad, first_of_second + 2, bad)
    assert plan.records_dropped == len(starts) - 3  # the bad one is not intact; those after it are
    assert plan.bytes_dropped == os.path.getsize(files[1]) - bad
    assert [d.path for d in plan.delete_files] == files[2:]
    text = plan.describe()
    for name in files[1:]:
        assert os.path.basename(name) in text
    assert f"byte {bad}" in text and "not reused" in text

    apply_repair(plan)
    # The untouched first segment keeps its index sidecar; the cut one's is gone with the rest.
    assert sorted(os.listdir(tmp_path)) == ["events-000001.idx"] + [os.path.basename(f) for f in files[:2]]
    assert os.path.getsize(files[1]) == bad
    assert check(tmp_path).ok
    # Offsets stay unique: the checkpoints' applied offset becomes min_next_offset.
    log = WalLog.open(tmp_path, segment_max_bytes=SEGMENT_MAX, fsync=False, min_next_offset=61)
    assert log.last_offset == first_of_second + 1
    assert log.append([b"new"]) == (61, 61)
    log.close()


def test_repair_of_a_bad_header_deletes_that_file(tmp_path):
    files = build(tmp_path)
    flip(files[1], 0)
    plan = plan_repair(tmp_path)
    assert plan.truncate_to is None and plan.file == files[1]
    assert plan.records_dropped == len(positions(files[1]))
    assert "delete" in plan.describe()
    apply_repair(plan)
    assert sorted(os.listdir(tmp_path)) == ["events-000001.idx", os.path.basename(files[0])]
    assert check(tmp_path).ok


def test_repair_of_overlapping_offsets_and_of_a_torn_tail(tmp_path):
    files = build(tmp_path)
    data = open(files[2], "rb").read()
    open(files[2], "wb").write(encode_header(3) + data[HEADER_BYTES:])
    report = check(tmp_path)
    assert [(p.file, p.position) for p in report.problems] == [(files[2], 0)] and "overlaps" in report.problems[0].reason
    apply_repair(plan_repair(tmp_path))
    assert check(tmp_path).ok

    with open(files[1], "ab") as f:
        f.write(bytes(100))
    report = check(tmp_path)
    assert report.ok and report.torn_tail.position == os.path.getsize(files[1]) - 100
    plan = plan_repair(tmp_path)
    assert (plan.truncate_to, plan.records_dropped, plan.bytes_dropped) == (plan.position, 0, 100)
    apply_repair(plan)
    assert check(tmp_path).torn_tail is None


def test_missing_segment_is_reported(tmp_path):
    files = build(tmp_path)
    os.unlink(files[1])
    report = check(tmp_path)
    assert [(p.file, p.position) for p in report.problems] == [(files[2], 0)]
    assert "events-000002.log is missing" in report.problems[0].reason


def test_apply_repair_refuses_a_stale_plan(tmp_path):
    files = build(tmp_path)
    flip(files[0], positions(files[0])[0] + 9)
    plan = plan_repair(tmp_path)
    with open(files[-1], "ab") as f:
        f.write(b"x")
    before = snapshot(tmp_path)
    with pytest.raises(StalePlan):
        apply_repair(plan)
    assert snapshot(tmp_path) == before


def test_check_of_an_empty_directory(tmp_path):
    report = check(tmp_path)
    assert report.ok and report.segments == ()
    assert plan_repair(tmp_path) is None

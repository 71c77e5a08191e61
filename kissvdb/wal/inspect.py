"""Offline WAL tools behind the CLI: `check` (read-only) and repair (`--truncate-at-first-bad`).

`check` verifies every segment header, every record CRC in every segment, segment sequence
numbers and offset continuity, and never modifies anything. It never uses the index sidecars
(`events-NNNNNN.idx`) that let the server open without reading old segments: it reads every
record of every segment. `plan_repair` computes exactly what
truncating at the first bad record would drop, `RepairPlan.describe()` says it in words, and
`apply_repair` does it. Repair never deletes anything `describe()` did not name, refuses to run
if the files changed since the plan, and must run while the caller holds the DataDir lock (no
server running).

Repair never makes offsets reusable: WAL offsets continue after the highest offset any
checkpoint in state.sqlite (or a vector manifest) recorded, because `WalLog.open` takes
`min_next_offset` from the checkpoints. Dropped records that were already applied stay applied
in the materialized state; records that were not are lost, which is what the user accepts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from kissvdb.errors import Corruption
from kissvdb.fsutil import fsync_dir
from kissvdb.wal import format as wal_format
from kissvdb.wal import segment as wal_segment
from kissvdb.wal import sidecar as wal_sidecar
from kissvdb.wal.format import HEADER_BYTES

Progress = Callable[[int, int], None]  # (done_bytes, total_bytes)


class StalePlan(Exception):
    """The WAL files changed between plan_repair and apply_repair; nothing was modified."""


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    name: str
    path: str
    first_offset: int | None  # None if the header is unreadable
    last_offset: int | None  # of the last intact record before any damage; first - 1 if none
    records: int  # intact records before any damage
    bytes: int  # file size


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    position: int  # byte where the bad record (or header, 0) starts
    offset: int | None  # offset the bad record would have had, if known
    reason: str

    def format(self) -> str:
        where = f"{os.path.basename(self.file)} byte {self.position}"
        if self.offset is not None:
            where += f" (offset {self.offset})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class CheckReport:
    data_dir: str
    segments: tuple[SegmentSummary, ...]
    problems: tuple[Problem, ...]  # corruption, in file order; the server refuses to start
    torn_tail: Problem | None  # an incomplete last record; the server cuts it at start

    @property
    def ok(self) -> bool:
        """True if the server would start on this WAL (a torn tail is cut automatically)."""
        return not self.problems

    def format(self) -> str:
        total = sum(s.bytes for s in self.segments)
        lines = [f"WAL check of {self.data_dir}: {len(self.segments)} segment(s), {total} bytes"]
        for s in self.segments:
            offsets = "header unreadable" if s.first_offset is None else f"offsets {s.first_offset}..{s.last_offset}"
            lines.append(f"  {s.name}  {offsets}  {s.records} records  {s.bytes} bytes")
        if self.torn_tail is not None:
            lines.append(f"torn tail (cut automatically at next start): {self.torn_tail.format()}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  {p.format()}" for p in self.problems)
            lines.append("the server will refuse to start; see `repair --truncate-at-first-bad`")
        else:
            lines.append("OK")
        return "\n".join(lines)


def check(data_dir: str | os.PathLike, progress: Progress | None = None) -> CheckReport:
    """Verify every header and record CRC in every segment, plus sequence and offset continuity.

    Read-only. Each segment is read whole (one segment at a time); `progress(done, total)` is
    called after each one.
    """
    data_dir = os.path.abspath(os.fspath(data_dir))
    problems: list[tuple[int, Problem]] = []  # (file index, problem), sorted at the end
    try:
        files = wal_segment.list_segment_files(data_dir)
    except Corruption as exc:
        return CheckReport(data_dir, (), (Problem(exc.path, exc.position, None, exc.reason),), None)
    gap = wal_segment.sequence_gap(files)
    if gap is not None:
        index = [path for _, path in files].index(gap[0])
        problems.append((index, Problem(gap[0], 0, None, gap[1])))
    total = sum(_size(path) for _, path in files)
    done = 0
    summaries = []
    torn_tail = None
    prev_end_offset: int | None = None  # offset after the previous segment's last record
    for index, (_, path) in enumerate(files):
        scan = wal_segment.scan(path, is_last=index == len(files) - 1, verify=True, strict=False)
        first = scan.first_offset
        summaries.append(
            SegmentSummary(
                os.path.basename(path), path, first, None if first is None else first + scan.count - 1, scan.count, scan.size
            )
        )
        if first is not None and prev_end_offset is not None and first < prev_end_offset:
            reason = f"first offset {first} overlaps the previous segment, which holds offsets up to {prev_end_offset - 1}"
            problems.append((index, Problem(path, 0, first, reason)))
        if scan.damage is not None:
            offset = None if first is None else first + scan.count
            problem = Problem(path, scan.damage.position, offset, scan.damage.reason)
            if scan.damage.torn:
                torn_tail = problem
            else:
                problems.append((index, problem))
        prev_end_offset = None if first is None else first + scan.count
        done += scan.size
        if progress is not None:
            progress(done, total)
    problems.sort(key=lambda item: (item[0], item[1].position))
    return CheckReport(data_dir, tuple(summaries), tuple(p for _, p in problems), torn_tail)


@dataclass(frozen=True, slots=True)
class DroppedFile:
    path: str
    size_bytes: int
    records: int  # intact records in it (found by resynchronizing past any damage)
    first_offset: int | None


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """Truncate `file` at the first bad record and delete every later segment.

    truncate_to is None when the bad spot is the header (or the whole file overlaps its
    predecessor): the file is deleted instead. records_dropped counts intact records in `file`
    from `position` on (the damaged record itself is not intact and not counted).
    """

    data_dir: str
    file: str
    position: int
    offset: int | None
    reason: str
    file_size: int
    truncate_to: int | None
    records_dropped: int
    bytes_dropped: int
    delete_files: tuple[DroppedFile, ...]

    def describe(self) -> str:
        name = os.path.basename(self.file)
        at = f"byte {self.position}" + ("" if self.offset is None else f" (offset {self.offset})")
        lines = [f"first bad record: {name} {at}: {self.reason}"]
        if self.truncate_to is None:
            lines.append(
                f"delete {name} entirely: {self.bytes_dropped} bytes, {self.records_dropped} intact record(s)"
            )
        else:
            lines.append(
                f"truncate {name} to {self.truncate_to} bytes: drop the bad record and "
                f"{self.records_dropped} intact record(s) after it, {self.bytes_dropped} bytes"
            )
        for dropped in self.delete_files:
            first = "" if dropped.first_offset is None else f" from offset {dropped.first_offset}"
            lines.append(
                f"delete {os.path.basename(dropped.path)}: {dropped.records} record(s){first}, {dropped.size_bytes} bytes"
            )
        total_records = self.records_dropped + sum(d.records for d in self.delete_files)
        total_bytes = self.bytes_dropped + sum(d.size_bytes for d in self.delete_files)
        lines.append(f"in total {total_records} intact record(s) and {total_bytes} bytes are dropped")
        lines.append(
            "offsets are not reused: new writes continue after the highest offset any checkpoint recorded"
        )
        return "\n".join(lines)


def plan_repair(data_dir: str | os.PathLike, progress: Progress | None = None) -> RepairPlan | None:
    """What `--truncate-at-first-bad` would do, or None if every record is intact.

    The first bad record is the first problem `check` reports, or else a torn tail (which the
    server would also cut by itself).
    """
    report = check(data_dir, progress)
    bad = report.problems[0] if report.problems else report.torn_tail
    if bad is None:
        return None
    files = [path for _, path in wal_segment.list_segment_files(report.data_dir)]
    index = files.index(bad.file)
    data = _read(bad.file)
    if bad.position < HEADER_BYTES:
        truncate_to = None
        records = _intact_records(data, HEADER_BYTES) if len(data) >= HEADER_BYTES else 0
        bytes_dropped = len(data)
    else:
        truncate_to = bad.position
        records = _intact_records(data, bad.position + 1)
        bytes_dropped = len(data) - bad.position
    later = []
    for path in files[index + 1 :]:
        later_data = _read(path)
        first = wal_segment.read_first_offset(path)
        later.append(DroppedFile(path, len(later_data), _intact_records(later_data, HEADER_BYTES), first))
    return RepairPlan(
        report.data_dir,
        bad.file,
        bad.position,
        bad.offset,
        bad.reason,
        len(data),
        truncate_to,
        records,
        bytes_dropped,
        tuple(later),
    )


def apply_repair(plan: RepairPlan, *, fsync: bool = True) -> None:
    """Carry out `plan`: delete the later segments (newest first), then truncate or delete the
    bad one, fsyncing files and the directory.

    Newest first, and the truncation last, so a crash part-way leaves a WAL that still fails
    its check (the server refuses to start and repair can simply be run again), never one with
    a silent hole. The index sidecars of every file it cuts or deletes are deleted first (they
    would describe bytes that are gone; the server rebuilds them). Raises StalePlan, changing
    nothing, if any file changed since the plan.
    """
    expected = [(plan.file, plan.file_size)] + [(d.path, d.size_bytes) for d in plan.delete_files]
    for path, size in expected:
        if _size(path) != size:
            raise StalePlan(f"{path} changed since the repair was planned; plan again")
    for path in [plan.file] + [d.path for d in plan.delete_files]:
        wal_sidecar.remove(path)
    for dropped in reversed(plan.delete_files):
        os.unlink(dropped.path)
    if plan.delete_files and fsync:
        fsync_dir(plan.data_dir)
    if plan.truncate_to is None:
        os.unlink(plan.file)
    else:
        with open(plan.file, "r+b") as f:
            os.ftruncate(f.fileno(), plan.truncate_to)
            if fsync:
                os.fsync(f.fileno())
    if fsync:
        fsync_dir(plan.data_dir)


def _intact_records(data: bytes, start: int) -> int:
    """Count valid frames from `start`, resynchronizing past damage byte by byte."""
    count = 0
    position = wal_format.find_valid_frame(data, start)
    while position is not None:
        walk = wal_format.walk_frames(data, position)
        count += walk.count
        if walk.error is None:
            break
        position = wal_format.find_valid_frame(data, walk.end + 1)
    return count


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1

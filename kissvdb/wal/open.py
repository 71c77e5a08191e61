"""Opening a WAL directory: every segment's header checked, the last segment and every segment
that may be replayed scanned (CRC-verified), older sealed segments described by their index
sidecar (kissvdb/wal/sidecar.py) without reading their records, a torn tail or torn header of the
last segment cut away, missing or stale sidecars rewritten. `WalLog.open` (kissvdb/wal/log.py)
builds the log from what this returns.
"""

from __future__ import annotations

import logging
import os

from kissvdb.errors import Corruption
from kissvdb.fsutil import fsync_dir
from kissvdb.wal import segment as wal_segment
from kissvdb.wal import sidecar as wal_sidecar


class Segment:
    """In-memory view of one segment. Mutable fields change only under WalLog._lock."""

    __slots__ = ("path", "seq", "first_offset", "count", "end", "sparse", "last", "last_head")

    def __init__(
        self, path: str, seq: int, first_offset: int, count: int, end: int, sparse: list[int],
        last: int = 0, last_head: bytes = b"",
    ):
        self.path = path
        self.seq = seq
        self.first_offset = first_offset
        self.count = count  # complete records; record i has offset first_offset + i
        self.end = end  # bytes of header + complete records: readers never look past it
        self.sparse = sparse  # byte position of record k * INDEX_EVERY (append-only list)
        self.last = last  # byte position of the last record, and its 8-byte frame head:
        self.last_head = last_head  # what the index sidecar records when the segment is sealed

    @property
    def end_offset(self) -> int:
        """The offset the next record in this segment would get."""
        return self.first_offset + self.count


def open_segments(directory: str, *, verify_from: int, fsync: bool,
                  logger: logging.Logger) -> tuple[list[Segment], int, int]:
    """The segments of `directory`, checked and recovered as WalLog.open describes; with how
    many were described by their sidecar and how many sidecars were rewritten."""
    segments: list[Segment] = []
    files = wal_segment.list_segment_files(directory)
    gap = wal_segment.sequence_gap(files)
    if gap is not None:
        raise Corruption(gap[0], 0, gap[1])
    # Headers first: whether segment i needs CRC verification depends on where i+1 starts.
    firsts = [wal_segment.read_first_offset(path) for _, path in files]
    dir_changed = False
    rebuild: list[wal_segment.SegmentScan] = []  # sealed segments whose sidecar is missing or bad
    from_sidecar = 0
    for i, (seq, path) in enumerate(files):
        is_last = i == len(files) - 1
        upper = None if is_last else firsts[i + 1]
        verify = is_last or upper is None or upper - 1 >= verify_from
        scan, from_index, stale = _describe(path, firsts[i], is_last=is_last, verify=verify, logger=logger)
        from_sidecar += from_index
        if stale:
            rebuild.append(scan)
        if scan.first_offset is None:
            # Torn header (strict scan lets only that through): the segment never held a record.
            os.unlink(path)
            wal_sidecar.remove(path)
            dir_changed = True
            logger.warning(
                "WAL: removed %s: %s; dropped %d bytes, no records", path, scan.damage.reason, scan.size
            )
            continue
        if segments and scan.first_offset < segments[-1].end_offset:
            prev = segments[-1]
            raise Corruption(
                path,
                0,
                f"first offset {scan.first_offset} overlaps {os.path.basename(prev.path)}, "
                f"which holds offsets up to {prev.end_offset - 1}",
            )
        if scan.damage is not None:
            _cut_torn_tail(path, scan, fsync=fsync, logger=logger)
        segments.append(
            Segment(path, seq, scan.first_offset, scan.count, scan.end, scan.sparse, scan.last, scan.last_head)
        )
    for scan in rebuild:  # the next open reads these from their sidecars
        try:
            wal_sidecar.write(scan.path, scan, fsync=fsync)
            dir_changed = True
        except OSError as exc:
            logger.warning("WAL: could not write the index sidecar of %s (%s)", scan.path, exc)
    if fsync:
        # What we just read may be page cache left by a process that died before syncing;
        # replaying it and then losing it to a power cut would un-happen applied writes.
        # Earlier segments were sealed (fsynced) before their successor was created.
        if segments:
            with open(segments[-1].path, "rb") as f:
                os.fsync(f.fileno())
        if dir_changed or segments:
            fsync_dir(directory)
    return segments, from_sidecar, len(rebuild)


def _same_index(scan: wal_segment.SegmentScan, indexed: wal_segment.SegmentScan | None) -> bool:
    """Whether a sidecar's description matches what a scan of the segment found."""
    if indexed is None or scan.damage is not None:
        return False
    return (scan.first_offset, scan.count, scan.end, scan.sparse, scan.last, scan.last_head) == (
        indexed.first_offset, indexed.count, indexed.end, indexed.sparse, indexed.last, indexed.last_head
    )


def _describe(path: str, first: int, *, is_last: bool, verify: bool, logger: logging.Logger):
    """(scan, 1 if its sidecar described it else 0, whether its sidecar must be rewritten)."""
    scan = indexed = None
    if not is_last:
        # Sealed: its sidecar may describe it (checked against the file, see sidecar.py).
        indexed, why = wal_sidecar.load(path, first)
        if indexed is None and why != "missing":
            logger.info("WAL: ignoring the index sidecar of %s: %s", path, why)
        if not verify:
            scan = indexed  # never replayed: no need to read its records at all
    if scan is not None:
        return scan, 1, False
    scan = wal_segment.scan(path, is_last=is_last, verify=verify)  # raises Corruption
    return scan, 0, not is_last and not _same_index(scan, indexed)


def _cut_torn_tail(path: str, scan: wal_segment.SegmentScan, *, fsync: bool, logger: logging.Logger) -> None:
    with open(path, "r+b") as f:
        os.ftruncate(f.fileno(), scan.end)
        if fsync:
            os.fsync(f.fileno())
    logger.warning(
        "WAL: truncated torn tail of %s at byte %d (offset %d): dropped %d bytes (%s)",
        path,
        scan.end,
        scan.first_offset + scan.count,
        scan.size - scan.end,
        scan.damage.reason,
    )

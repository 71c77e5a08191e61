"""The WAL segment set: append a batch -> offsets, sync; the state readers and retention share.

`WalLog` owns the files `events-NNNNNN.log` in one directory. It guarantees:
- offsets are one global sequence, never reused: `next_offset` starts at
  max(end of the WAL, `min_next_offset`), and a hole (after `repair`) starts a new segment whose
  header records the new first offset;
- `append` either writes a whole batch or leaves no byte of it behind (it truncates back and
  re-raises the OSError); it never fsyncs data, except to seal a segment before the next one is
  created (the rule that a crash can tear only the last segment depends on that);
- after `sync` returns, everything appended before the call is on disk, including the directory
  entries of segments created or deleted since the previous sync;
- `read` may run in other threads concurrently with `append`/`sync`/`retain`, and never returns
  a byte beyond what `append` has finished writing;
- opening reads the records of the last segment and of segments that may be replayed only;
  older sealed segments are described by the index sidecar (`events-NNNNNN.idx`, see
  kissvdb/wal/sidecar.py) written when they were sealed, before their successor was created.
It never decides what to do about a failed fsync: it raises, marks itself broken (every later
append/sync raises `PersistenceError(outcome_unknown=True)`) and the caller stops (fail-stop).
It never imports trio: the WAL writer actor calls it from a worker thread.
Opening is in kissvdb/wal/open.py, reading from an offset in kissvdb/wal/reader.py, listing
and dropping checkpointed segments in kissvdb/wal/retention.py; `WalLog` keeps thin methods
for them, so callers see one object.
"""

from __future__ import annotations

import logging
import os
import threading

from kissvdb.errors import PersistenceError
from kissvdb.fsutil import fsync_dir
from kissvdb.wal import format as wal_format
from kissvdb.wal import reader as wal_reader
from kissvdb.wal import retention as wal_retention
from kissvdb.wal import segment as wal_segment
from kissvdb.wal import sidecar as wal_sidecar
from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, HEADER_BYTES
from kissvdb.wal.open import Segment, open_segments
from kissvdb.wal.reader import OffsetNotRetained
from kissvdb.wal.retention import SegmentInfo
from kissvdb.wal.segment import INDEX_EVERY

LOGGER_NAME = "kissvdb.wal"

__all__ = ["LOGGER_NAME", "OffsetNotRetained", "SegmentInfo", "WalLog"]  # the last two live in reader/retention


class _Chunk:
    """The part of one append that goes to one segment (planned before any I/O)."""

    __slots__ = ("segment", "parts", "sparse", "count", "end", "last", "last_head")

    def __init__(self, segment: Segment | None, end: int):
        self.segment = segment  # None: a segment this append creates
        self.parts: list = []
        self.sparse: list[int] = []
        self.count = 0
        self.end = end  # segment byte end after this chunk
        self.last = 0  # byte position and frame head of the chunk's last record
        self.last_head = b""


class WalLog:
    """See the module docstring. Create with `WalLog.open(...)`."""

    def __init__(self, directory: str, segment_max_bytes: int, fsync: bool, logger: logging.Logger):
        self._directory = directory
        self._segment_max_bytes = segment_max_bytes
        self._fsync = fsync
        self._logger = logger
        # _lock guards everything readers look at: the segment list, each segment's
        # count/end/sparse, the offsets, and the fd bookkeeping. It is never held during I/O
        # except closing fds, so reads and appends overlap.
        self._lock = threading.Lock()
        # Writers of one kind are serialized separately, so a slow retain (unlink, dir fsync)
        # or sync (fdatasync in a worker thread) never blocks append or read.
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._retain_lock = threading.Lock()
        self._segments: list[Segment] = []
        self._active: Segment | None = None  # segment the next append continues, if any
        self._fd: int | None = None  # O_APPEND fd of _active
        self._retired_fds: list[int] = []  # fds of sealed segments; closed by sync (it may be using them)
        self._dir_dirty = False  # a segment was created or deleted since the last dir fsync
        self._next_offset = 1
        self._last_offset = 0
        self._first_offset = 1
        self._broken: str | None = None
        self._closed = False
        self.records_read = 0  # records returned by read() (replay, change-stream replays)

    # ---------------------------------------------------------------------------- open (kissvdb/wal/open.py)

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        *,
        segment_max_bytes: int,
        min_next_offset: int = 1,
        verify_from: int = 1,
        fsync: bool = True,
        logger: logging.Logger | None = None,
    ) -> "WalLog":
        """Scan and recover the segments in `directory` (created if missing).

        Every header is checked. Records are CRC-verified in the last segment and in every
        segment that may hold offsets >= `verify_from` (pass the smallest applied checkpoint
        offset + 1). Older segments are never replayed, so none of their records is read: each
        is described by its index sidecar (count, end, sparse index; written when the segment
        was sealed, CRC-checked and checked against the segment file, see
        kissvdb/wal/sidecar.py), which keeps boot time independent of how much history is
        retained. Without a usable sidecar (old data directories, damage) such a segment gets
        the lengths-only walk it always had, and a fresh sidecar is written. Their record CRCs
        are still checked whenever `read` returns them, and `kissvdb check` reads them all.
        Segment sequence numbers must be contiguous and a segment's first offset must not
        overlap its predecessor (a hole at a segment boundary is allowed). A torn tail or torn
        header of the last segment is cut away and logged at WARNING on logger "kissvdb.wal"; anything else raises Corruption.

        `min_next_offset` comes from the checkpoints (every applied offset + 1), so offsets
        are never reused even after `repair` dropped records from the WAL.
        """
        if segment_max_bytes < HEADER_BYTES + FRAME_OVERHEAD_BYTES + 1:
            raise ValueError(f"segment_max_bytes {segment_max_bytes} is too small")
        logger = logger or logging.getLogger(LOGGER_NAME)
        directory = os.path.abspath(os.fspath(directory))
        os.makedirs(directory, exist_ok=True)
        log = cls(directory, segment_max_bytes, fsync, logger)

        segments, from_sidecar, rebuilt = open_segments(directory, verify_from=verify_from, fsync=fsync,
                                                        logger=logger)
        log._segments = segments
        log._last_offset = max((s.end_offset - 1 for s in segments if s.count), default=0)
        end_offset = segments[-1].end_offset if segments else 1
        log._next_offset = max(end_offset, min_next_offset, 1)
        log._first_offset = log._oldest_record_offset()
        if segments and segments[-1].end_offset == log._next_offset:
            log._active = segments[-1]
            log._fd = os.open(log._active.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        logger.info(
            "WAL: opened %s: %d segments (%d described by their index sidecar, %d sidecars rebuilt), "
            "offsets %d..%d, next offset %d",
            directory,
            len(segments),
            from_sidecar,
            rebuilt,
            log._first_offset,
            log._last_offset,
            log._next_offset,
        )
        return log

    # ------------------------------------------------------------------------- offsets

    @property
    def directory(self) -> str:
        return self._directory

    @property
    def next_offset(self) -> int:
        """The offset the next appended record gets."""
        return self._next_offset

    @property
    def last_offset(self) -> int:
        """Offset of the newest record in the log (0 if it holds none)."""
        return self._last_offset

    @property
    def first_offset(self) -> int:
        """Oldest retained offset; == next_offset when the log holds no record."""
        return self._first_offset

    def _oldest_record_offset(self) -> int:
        for segment in self._segments:
            if segment.count:
                return segment.first_offset
        return self._next_offset

    # -------------------------------------------------------------------------- append

    def append(self, payloads: list[bytes]) -> tuple[int, int]:
        """Frame and write all payloads; return (first, last) offset. No fsync of the data.

        One write per segment touched. A record that would push the active segment past
        segment_max_bytes goes into a new segment (a record larger than that goes alone into
        a fresh one). Creating a segment first fdatasyncs the one it replaces (so only the
        newest segment can ever be torn), then writes and fsyncs the new header; the
        directory is fsynced by the next `sync`.

        On OSError from a write: the active segment is truncated back to its length before
        the call (and fdatasynced, so a crash cannot resurrect the batch), segments created by
        this call are deleted, offsets are restored, and the OSError is re-raised: the batch
        did not happen and a later append may succeed. If an fsync fails, or that cleanup
        fails, the outcome is unknown: raises PersistenceError(outcome_unknown=True) and the
        log refuses further writes. Invalid payload sizes raise ValueError before any I/O.
        An empty list returns (next_offset, next_offset - 1) and writes nothing.
        """
        with self._append_lock:
            self._check_writable()
            if not payloads:
                return self._next_offset, self._next_offset - 1
            chunks = self._plan(payloads)
            first = self._next_offset
            old_active, old_fd = self._active, self._fd
            old_end = old_active.end if old_active is not None else 0
            fd, active = old_fd, old_active
            seq = self._segments[-1].seq + 1 if self._segments else 1
            offset = first
            created: list[tuple[Segment, int]] = []
            sidecars: list[str] = []  # written by this call: deleted again if it fails
            written: _Chunk | None = None  # the chunk last written (to the segment `active`)
            try:
                for chunk in chunks:
                    if chunk.segment is None:
                        if fd is not None and self._fsync:
                            self._fsync_or_break(os.fdatasync, fd, "sealing a segment before rotation")
                        sealed = active if active is not None else (self._segments[-1] if self._segments else None)
                        if sealed is not None:
                            sidecar = self._write_sidecar(sealed, written)
                            if sidecar is not None:
                                sidecars.append(sidecar)
                        path = os.path.join(self._directory, wal_segment.segment_name(seq))
                        new_fd = wal_segment.create(path, offset)
                        created.append((Segment(path, seq, offset, 0, HEADER_BYTES, []), new_fd))
                        if self._fsync:
                            self._fsync_or_break(os.fsync, new_fd, "writing a new segment header")
                        chunk.segment, fd, active = created[-1][0], new_fd, created[-1][0]
                        seq += 1
                    wal_segment.write_all(fd, b"".join(chunk.parts))
                    written = chunk
                    offset += chunk.count
            except PersistenceError:
                # Fail-stop: leave the files alone for boot recovery; just release the fds.
                for _, created_fd in created:
                    os.close(created_fd)
                raise
            except BaseException:
                self._rollback(old_fd, old_end, created, sidecars)
                raise
            self._publish(chunks, created, old_fd, fd, active, offset)
            return first, offset - 1

    def _plan(self, payloads: list[bytes]) -> list[_Chunk]:
        """Split the batch into per-segment chunks of frames; validates every payload first."""
        segment_max = self._segment_max_bytes
        active = self._active
        chunk = _Chunk(active, active.end) if active is not None else None
        chunks = [chunk] if chunk is not None else []
        count = active.count if active is not None else 0  # records in chunk's segment so far
        frame_header = wal_format.frame_header
        for payload in payloads:
            head = frame_header(payload)  # ValueError on a bad size, before any I/O
            size = FRAME_OVERHEAD_BYTES + len(payload)
            # A record never makes a segment outgrow segment_max unless it is alone in it.
            if chunk is None or (count > 0 and chunk.end + size > segment_max):
                if chunk is not None and chunk.count == 0:
                    chunks.pop()  # the batch starts with a rotation: nothing for the old segment
                chunk = _Chunk(None, HEADER_BYTES)
                chunks.append(chunk)
                count = 0
            if count % INDEX_EVERY == 0:
                chunk.sparse.append(chunk.end)
            chunk.last, chunk.last_head = chunk.end, head
            chunk.parts.append(head)
            chunk.parts.append(payload)
            chunk.end += size
            chunk.count += 1
            count += 1
        return chunks

    def _publish(self, chunks, created, old_fd, fd, active, next_offset) -> None:
        with self._lock:
            for chunk in chunks:
                segment = chunk.segment
                segment.count += chunk.count
                segment.end = chunk.end
                segment.sparse.extend(chunk.sparse)
                if chunk.count:
                    segment.last, segment.last_head = chunk.last, chunk.last_head
            for segment, _ in created:
                self._segments.append(segment)
            if created:
                self._dir_dirty = True
                sealed = [old_fd] if old_fd is not None else []
                sealed += [created_fd for _, created_fd in created if created_fd != fd]
                if self._fsync:
                    self._retired_fds.extend(sealed)  # sync() may be fdatasyncing one right now
                else:
                    for sealed_fd in sealed:
                        os.close(sealed_fd)
            # first_offset needs no update: if the log held no record it already equals the
            # old next_offset, which is the first offset of this batch.
            self._active, self._fd = active, fd
            self._next_offset = next_offset
            self._last_offset = next_offset - 1

    def _write_sidecar(self, segment: Segment, chunk: _Chunk | None) -> str | None:
        """Write the index sidecar of `segment`, which is being sealed (already fdatasynced),
        as it stands after `chunk` (this append's last chunk written, if it went to `segment`).

        Runs before the successor segment is created: that order is what lets `open` trust a
        sidecar (see kissvdb/wal/sidecar.py). Best effort: if it cannot be written, any old
        one is deleted and the segment is scanned at the next open instead; only if that
        deletion fails too does the OSError propagate (the append is rolled back).
        """
        if chunk is not None and chunk.segment is segment and chunk.count:
            fields = (segment.first_offset, segment.count + chunk.count, chunk.end,
                      segment.sparse + chunk.sparse, chunk.last, chunk.last_head)
        else:  # `segment` got nothing from this call (or it is the inactive newest one)
            fields = (segment.first_offset, segment.count, segment.end, list(segment.sparse),
                      segment.last, segment.last_head)
        try:
            return wal_sidecar.write(segment.path, fields, fsync=self._fsync)
        except OSError as exc:
            self._logger.warning("WAL: could not write the index sidecar of %s (%s); it will be scanned at the next open",
                                 segment.path, exc)
            wal_sidecar.remove(segment.path)
            return None

    def _rollback(
        self, old_fd: int | None, old_end: int, created: list[tuple[Segment, int]], sidecars: list[str]
    ) -> None:
        """Undo a failed append's bytes. Nothing was published, so no reader saw them."""
        try:
            for sidecar in sidecars:  # they describe bytes about to be cut, or a sealing undone
                try:
                    os.unlink(sidecar)
                except FileNotFoundError:
                    pass
            for segment, created_fd in reversed(created):
                os.close(created_fd)
                try:
                    os.unlink(segment.path)
                except FileNotFoundError:
                    pass
            if old_fd is not None:
                os.ftruncate(old_fd, old_end)
                if self._fsync:
                    os.fdatasync(old_fd)
            if created and self._fsync:
                fsync_dir(self._directory)
        except OSError as exc:
            self._broken = f"could not undo a failed append ({exc})"
            raise PersistenceError(f"WAL {self._broken}", outcome_unknown=True) from exc

    def _fsync_or_break(self, fsync_call, fd: int, doing: str) -> None:
        try:
            fsync_call(fd)
        except OSError as exc:
            self._broken = f"fsync failed while {doing} ({exc})"
            raise PersistenceError(f"WAL {self._broken}", outcome_unknown=True) from exc

    def _check_writable(self) -> None:
        if self._closed:
            raise ValueError("WAL is closed")
        if self._broken is not None:
            raise PersistenceError(f"WAL refuses writes: {self._broken}", outcome_unknown=True)

    # ---------------------------------------------------------------------------- sync

    def sync(self) -> None:
        """Make every record appended before this call durable: fdatasync the active segment
        and, if segments were created or deleted since the last sync, fsync the directory.

        Segments rotated away were already fdatasynced when they were sealed (see append).
        Errors propagate as OSError and mark the log broken: a failed fsync is never retried,
        since a retry can report success for data the kernel already dropped. No-op when the
        log was opened with fsync=False.
        """
        if not self._fsync:
            return
        with self._sync_lock:
            self._check_writable()
            with self._lock:
                fd, dirty = self._fd, self._dir_dirty
                self._dir_dirty = False
                retired, self._retired_fds = self._retired_fds, []
            try:
                if fd is not None:
                    os.fdatasync(fd)
                if dirty:
                    fsync_dir(self._directory)
            except OSError as exc:
                self._broken = f"fsync failed ({exc})"
                raise
            finally:
                for retired_fd in retired:
                    os.close(retired_fd)

    # -------------------------------------------------------------- read (kissvdb/wal/reader.py)

    def read(self, start: int, end: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """Records with start <= offset <= end, oldest first; see kissvdb/wal/reader.py."""
        return wal_reader.read(self, start, end, max_bytes)

    # ------------------------------------------------- segments (kissvdb/wal/retention.py)

    @property
    def retained_bytes(self) -> int:
        """Bytes of every retained segment; see kissvdb/wal/retention.py."""
        return wal_retention.retained_bytes(self)

    def segments(self) -> list[SegmentInfo]:
        """The retained segments, oldest first; see kissvdb/wal/retention.py."""
        return wal_retention.segments(self)

    def retain(
        self, checkpointed_offset: int, keep_segments: int, min_bytes: int, min_age_s: float, now_s: float
    ) -> list[str]:
        """Delete old checkpointed segments; return their paths. See kissvdb/wal/retention.py."""
        return wal_retention.retain(self, checkpointed_offset, keep_segments, min_bytes, min_age_s, now_s)

    # --------------------------------------------------------------------------- close

    def close(self) -> None:
        """Release file handles. Does not sync: call sync() first if the tail must be durable."""
        with self._append_lock, self._sync_lock, self._retain_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                fds = self._retired_fds + ([self._fd] if self._fd is not None else [])
                self._retired_fds, self._fd, self._active = [], None, None
            for fd in fds:
                os.close(fd)

    def __enter__(self) -> "WalLog":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WalLog({self._directory!r}, offsets {self._first_offset}..{self._last_offset}, next {self._next_offset})"


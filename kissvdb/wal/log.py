"""The WAL segment set: append a batch -> offsets, sync, read from an offset, retention.

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
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from itertools import takewhile

from kissvdb.errors import Corruption, PersistenceError
from kissvdb.fsutil import fsync_dir
from kissvdb.wal import format as wal_format
from kissvdb.wal import segment as wal_segment
from kissvdb.wal import sidecar as wal_sidecar
from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, HEADER_BYTES, RECORD_MAX_BYTES
from kissvdb.wal.open import Segment, open_segments
from kissvdb.wal.segment import INDEX_EVERY

LOGGER_NAME = "kissvdb.wal"

# Record head [u32 length][u32 crc], as wal/format.py writes it. read() parses it inline
# because it is the change stream's hot loop (100k+ records per replay).
_FRAME_HEAD = struct.Struct("<II")
assert _FRAME_HEAD.size == FRAME_OVERHEAD_BYTES

# A read pulls at least this much per pread (fewer syscalls for small records) and at most
# READ_CHUNK_MAX_BYTES beyond what the current record needs (bounded memory per reader).
READ_CHUNK_MIN_BYTES = 64 * 1024
READ_CHUNK_MAX_BYTES = 8 * 1024 * 1024


class OffsetNotRetained(Exception):
    """The requested offset is older than the oldest retained one (retention dropped it).

    `first_offset` is the oldest offset still readable; a change-stream reader reports a gap
    and continues from there.
    """

    def __init__(self, first_offset: int):
        super().__init__(f"offset no longer retained; the oldest retained offset is {first_offset}")
        self.first_offset = first_offset


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    path: str
    seq: int
    first_offset: int
    last_offset: int  # first_offset - 1 when the segment holds no record
    size_bytes: int
    mtime_s: float


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


def _first_offset_of(segment: Segment) -> int:
    return segment.first_offset


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

    # ---------------------------------------------------------------------------- read

    def read(self, start: int, end: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """Records with start <= offset <= end, oldest first, as (offset, payload).

        Stops before a record that would take the payload total past `max_bytes`, but always
        returns at least one record if any exists in range. Offsets in a hole are simply
        absent. Raises OffsetNotRetained if start < first_offset or a segment is deleted by
        retention while being read; Corruption if a record's CRC no longer matches.
        Thread-safe: runs concurrently with append/sync/retain, each call on its own fds.
        """
        with self._lock:
            if self._closed:
                raise ValueError("WAL is closed")
            if start < self._first_offset:
                raise OffsetNotRetained(self._first_offset)
            end = min(end, self._last_offset)
            if end < start:
                return []
            segments = self._segments
            i = max(bisect.bisect_right(segments, start, key=_first_offset_of) - 1, 0)
            plan = []
            while i < len(segments) and segments[i].first_offset <= end:
                segment = segments[i]
                i += 1
                if segment.count == 0 or segment.end_offset <= start:
                    continue
                low = max(start - segment.first_offset, 0)
                high = min(end - segment.first_offset, segment.count - 1)
                block = low // INDEX_EVERY
                after = high // INDEX_EVERY + 1
                limit = segment.sparse[after] if after < len(segment.sparse) else segment.end
                base = segment.first_offset
                plan.append((segment.path, segment.sparse[block], limit, base + block * INDEX_EVERY, base + low, base + high))
        out: list[tuple[int, bytes]] = []
        total = 0
        for path, position, limit, offset, low, high in plan:
            total, full = self._read_range(out, total, max_bytes, path, position, limit, offset, low, high)
            if full:
                break
        self.records_read += len(out)  # a statistic (concurrent readers may race on it)
        return out

    def _read_range(self, out, total, max_bytes, path, position, limit, offset, low, high) -> tuple[int, bool]:
        """Append records low..high of one segment to `out`, walking from `position` (the byte
        where record `offset` starts) and never reading at or past byte `limit`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise OffsetNotRetained(self._first_offset) from None
        chunk_bytes = min(max(max_bytes, READ_CHUNK_MIN_BYTES), READ_CHUNK_MAX_BYTES)
        unpack = _FRAME_HEAD.unpack_from
        crc32 = zlib.crc32  # over the 4 length bytes + payload, as wal/format.py defines
        try:
            buf = b""
            base = position  # file position of buf[0]
            at = 0  # index in buf of the frame for `offset`
            while offset <= high:
                if len(buf) - at < FRAME_OVERHEAD_BYTES:
                    buf, base, at = self._refill(fd, path, buf, base, at, FRAME_OVERHEAD_BYTES, limit, chunk_bytes)
                length, crc = unpack(buf, at)
                if length == 0 or length > RECORD_MAX_BYTES:
                    raise Corruption(path, base + at, f"invalid length {length} (read of offset {offset})")
                stop = at + FRAME_OVERHEAD_BYTES + length
                if stop > len(buf):
                    buf, base, at = self._refill(fd, path, buf, base, at, stop - at, limit, chunk_bytes)
                    stop = at + FRAME_OVERHEAD_BYTES + length
                if offset >= low:
                    if out and total + length > max_bytes:
                        return total, True
                    payload = buf[at + FRAME_OVERHEAD_BYTES : stop]
                    if crc32(payload, crc32(buf[at : at + 4])) != crc:
                        raise Corruption(path, base + at, f"crc mismatch (read of offset {offset})")
                    out.append((offset, payload))
                    total += length
                at = stop
                offset += 1
            return total, False
        finally:
            os.close(fd)

    @staticmethod
    def _refill(fd, path, buf, base, at, need, limit, chunk_bytes) -> tuple[bytes, int, int]:
        """Keep buf[at:], read more after it so that at least `need` bytes are buffered."""
        rest = buf[at:]
        base += at
        have_to = base + len(rest)
        want = min(max(need - len(rest), chunk_bytes), limit - have_to)
        if len(rest) + want < need:
            raise Corruption(path, base, f"record runs past the written end of the segment (byte {limit})")
        data = os.pread(fd, want, have_to)
        if len(rest) + len(data) < need:
            raise Corruption(path, base, f"segment is shorter than the {limit} bytes written to it")
        return rest + data, base, 0

    # ------------------------------------------------------------------------ segments

    @property
    def retained_bytes(self) -> int:
        """Bytes of every retained segment (what the WAL holds on disk, give or take a sidecar)."""
        with self._lock:
            return sum(s.end for s in self._segments)

    def segments(self) -> list[SegmentInfo]:
        """The retained segments, oldest first (mtime_s is 0.0 for a file that just vanished)."""
        with self._lock:
            rows = [(s.path, s.seq, s.first_offset, s.end_offset - 1, s.end) for s in self._segments]
        return [SegmentInfo(path, seq, first, last, size, _mtime(path)) for path, seq, first, last, size in rows]

    def retain(
        self, checkpointed_offset: int, keep_segments: int, min_bytes: int, min_age_s: float, now_s: float
    ) -> list[str]:
        """Delete old segments that no reader of durable state needs; return their paths.

        A segment is deleted only if it is closed (never the newest one, which the next append
        continues or follows), fully checkpointed (last_offset <= checkpointed_offset), not
        among the newest `keep_segments` such segments, older than `min_age_s` (by mtime,
        against the caller's clock `now_s`), and if the segments left still hold `min_bytes`.
        Oldest first, stopping at the first one that must stay, so retained offsets stay one
        contiguous range. The directory is fsynced afterwards.
        """
        with self._retain_lock:
            with self._lock:
                if self._closed:
                    raise ValueError("WAL is closed")
                closed = self._segments[:-1]
                checkpointed = list(takewhile(lambda s: s.end_offset - 1 <= checkpointed_offset, closed))
                deletable = checkpointed[: max(len(checkpointed) - keep_segments, 0)]
                retained_bytes = sum(s.end for s in self._segments)
            victims = []
            for segment in deletable:
                if retained_bytes - segment.end < min_bytes:
                    break
                if _mtime(segment.path) > now_s - min_age_s:
                    break
                victims.append(segment)
                retained_bytes -= segment.end
            removed: list[str] = []
            for segment in victims:
                with self._lock:
                    # Only retain removes segments and only from the front, so this holds.
                    assert self._segments[0] is segment
                    del self._segments[0]
                    self._first_offset = self._oldest_record_offset()
                    self._dir_dirty = True
                try:
                    os.unlink(segment.path)
                except FileNotFoundError:
                    pass
                except OSError:
                    with self._lock:
                        self._segments.insert(0, segment)
                        self._first_offset = self._oldest_record_offset()
                    raise
                try:
                    wal_sidecar.remove(segment.path)
                except OSError as exc:  # an orphan sidecar is harmless: no segment gets its name again
                    self._logger.warning("WAL: could not delete the index sidecar of %s (%s)", segment.path, exc)
                removed.append(segment.path)
                self._logger.info("WAL: retention removed %s (offsets %d..%d)", segment.path, segment.first_offset, segment.end_offset - 1)
            if removed and self._fsync:
                fsync_dir(self._directory)
            return removed

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


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0

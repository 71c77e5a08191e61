"""Run files: the collection's durable record of every upsert and delete it has applied.

A run is three files sharing a number, all append-only:
- `run-NNNNNN.log`: records `[u32 length][u32 crc32 of (length bytes + payload)][payload]`,
  little-endian, the WAL's framing. Payload = header `<BBHIQQI` (op, flags, id length, row,
  WAL offset, vno, crc32 of the row's float32 bytes) + id (UTF-8) + meta (canonical JSON, only
  when flags & HAS_META).
- `run-NNNNNN.f32`: one float32 row per upsert record (the stored form: as sent for cosine, unit
  for dot), read through a memory map. Preallocated in chunks, so the file may be longer than
  its rows; the manifest says how many rows are valid.
- `run-NNNNNN.q8`: the int8 Q8 code of each row's unit vector (IVF_FLAT_Q8 collections only).

The manifest records, at each checkpoint, every run's valid `bytes` and `rows`. Bytes past that
were never checkpointed (the WAL still holds them and boot replays them), so opening the active
run cuts its log back to `bytes` and writes rows again from `rows`. A record inside the
checkpointed range that fails its checksum is corruption: `Corruption(path, offset)`, never a
silent skip. Files are never truncated while mapped: only the .log (not mapped) is cut, at open.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from kissvdb.errors import Corruption

OP_UPSERT = 1
OP_DELETE = 2
HAS_META = 1

_FRAME = struct.Struct("<II")
_HEAD = struct.Struct("<BBHIQQI")
NO_ROW = 0xFFFFFFFF
RECORD_MAX = 64 << 20
F32_CHUNK_MIN = 1 << 20


def run_name(run_id: int, ext: str) -> str:
    return f"run-{run_id:06d}.{ext}"


@dataclass(slots=True)
class Record:
    op: int
    offset: int
    vno: int
    id: str
    row: int  # local row in the run's .f32 (upserts), NO_ROW for deletes
    vec_crc: int
    meta: bytes | None


def encode_record(rec: Record) -> bytes:
    idb = rec.id.encode("utf-8")
    flags = HAS_META if rec.meta is not None else 0
    payload = _HEAD.pack(rec.op, flags, len(idb), rec.row, rec.offset, rec.vno, rec.vec_crc) + idb
    if rec.meta is not None:
        payload += rec.meta
    head = struct.pack("<I", len(payload))
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def decode_payload(payload: bytes) -> Record:
    op, flags, idlen, row, offset, vno, vcrc = _HEAD.unpack_from(payload, 0)
    p = _HEAD.size
    rid = payload[p:p + idlen].decode("utf-8")
    meta = bytes(payload[p + idlen:]) if flags & HAS_META else None
    return Record(op, offset, vno, rid, row, vcrc, meta)


def scan_log(path: str, valid_bytes: int) -> list[Record]:
    """Every record in the first `valid_bytes` of a run log; Corruption on any damage there."""
    with open(path, "rb") as f:
        data = f.read(valid_bytes)
    if len(data) < valid_bytes:
        raise Corruption(path, len(data), f"run log shorter than its checkpointed {valid_bytes} bytes")
    out = []
    pos = 0
    while pos < valid_bytes:
        if pos + 8 > valid_bytes:
            raise Corruption(path, pos, "truncated record header")
        length, crc = _FRAME.unpack_from(data, pos)
        if length == 0 or length > RECORD_MAX or pos + 8 + length > valid_bytes:
            raise Corruption(path, pos, f"bad record length {length}")
        payload = data[pos + 8:pos + 8 + length]
        if zlib.crc32(payload, zlib.crc32(data[pos:pos + 4])) != crc:
            raise Corruption(path, pos, "checksum mismatch")
        out.append(decode_payload(payload))
        pos += 8 + length
    return out


class RowFile:
    """An append-only file of fixed-size rows, written and read through a shared memory map.

    Grows by extending the file and mapping it again; an older mapping stays valid (the file is
    never truncated while mapped), so a reader holding `array` keeps a consistent view.
    """

    def __init__(self, path: str, dtype, dim: int, rows: int, *, writable: bool):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.dim = dim
        self.row_bytes = self.dtype.itemsize * dim
        self.rows = rows
        self.writable = writable
        mode = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        self.fd = os.open(path, mode | os.O_CLOEXEC, 0o644)
        size = os.fstat(self.fd).st_size
        need = rows * self.row_bytes
        if size < need:
            os.close(self.fd)
            raise Corruption(path, size, f"row file shorter than its {rows} checkpointed rows")
        self.capacity = size // self.row_bytes if self.row_bytes else 0
        self.array = self._map(self.capacity)

    def _map(self, capacity: int) -> np.ndarray:
        if capacity == 0 or self.row_bytes == 0:
            return np.zeros((0, self.dim), dtype=self.dtype)
        access = mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ
        mm = mmap.mmap(self.fd, capacity * self.row_bytes, access=access)
        return np.frombuffer(mm, dtype=self.dtype).reshape(capacity, self.dim)

    def reserve(self, rows: int) -> None:
        if rows <= self.capacity:
            return
        grow = max(rows, self.capacity * 2, F32_CHUNK_MIN // max(1, self.row_bytes))
        os.ftruncate(self.fd, grow * self.row_bytes)
        self.capacity = grow
        self.array = self._map(grow)

    def append(self, data: np.ndarray) -> int:
        """Write rows at the end; return the first row's index."""
        first = self.rows
        self.reserve(first + len(data))
        self.array[first:first + len(data)] = data
        self.rows = first + len(data)
        return first

    def view(self) -> np.ndarray:
        return self.array[: self.rows]

    def sync(self) -> None:
        arr = self.array
        if self.writable and arr.size:
            arr.base.flush() if hasattr(arr.base, "flush") else None
            os.fsync(self.fd)

    def close(self) -> None:
        # Mappings are released when the last array view is dropped; the fd can go now.
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class RunLog:
    """The append side of a run's .log file."""

    def __init__(self, path: str, valid_bytes: int, *, writable: bool):
        self.path = path
        self.bytes = valid_bytes
        self.writable = writable
        if writable:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            size = os.fstat(self.fd).st_size
            if size < valid_bytes:
                os.close(self.fd)
                raise Corruption(path, size, f"run log shorter than its checkpointed {valid_bytes} bytes")
            if size > valid_bytes:
                os.ftruncate(self.fd, valid_bytes)  # never checkpointed: the WAL replays it
        else:
            self.fd = -1
        self._buf: list[bytes] = []

    def append(self, records: list[bytes]) -> None:
        self._buf.extend(records)
        self.bytes += sum(map(len, records))

    def flush(self) -> None:
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            end = self.bytes
            os.pwrite(self.fd, data, end - len(data))

    def sync(self) -> None:
        self.flush()
        if self.fd >= 0:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            self.flush()
            os.close(self.fd)
            self.fd = -1


class Run:
    """One run in memory: its three files, its counts, and its first row in the collection's table."""

    __slots__ = ("id", "log", "f32", "q8", "records", "tombstones", "start")

    def __init__(self, run_id, log_, f32, q8, records, tombstones, start):
        self.id = run_id
        self.log = log_
        self.f32 = f32
        self.q8 = q8
        self.records = records
        self.tombstones = tombstones
        self.start = start

    @property
    def rows(self) -> int:
        return self.f32.rows

    @property
    def bytes(self) -> int:
        return self.log.bytes + self.f32.rows * self.f32.row_bytes

    def entry(self) -> dict:
        return {"file": run_name(self.id, "log"), "id": self.id, "bytes": self.log.bytes,
                "rows": self.f32.rows, "records": self.records, "tombstones": self.tombstones}

"""The `/v1/sql/query` response body, built on the SQL thread while SQLite steps the rows.

Owns the JSON form of user SQL values and the result's byte budget.

Guarantees:
- The body is exactly `orjson.dumps({"rows": rows})` of the contract's row objects: keyed by
  column name (a repeated name keeps its first position and its last value, as a dict does),
  BLOBs as base64 (standard alphabet, no padding), NaN/infinite REALs as null.
- It comes as `JsonChunks`: pieces of at most a few hundred kilobytes, in order, meant to be
  sent one after another and never joined. Joining 16 MB into one object is one C call that
  holds the GIL for tens of milliseconds on a small box (and doubles the memory).
- Memory: the encoded bytes held never pass the budget by more than one batch
  (`BATCH_BYTES_MIN`, a lower bound on what the batch encodes to). Before a row is encoded, a
  lower bound of its encoded size is added to what is held (a string of n characters is at least
  n + 2 bytes, a blob of n bytes exactly 4n/3 + 2), so a value too large for the budget is
  refused before any of it is encoded.
- Time: `check` (the statement's deadline and cancel flag) runs every `CHECK_EVERY_ROWS` rows,
  before each batch is encoded and between the chunks of a large value, so encoding counts
  toward the time limit as SQLite's steps do.
- The GIL: no single C call here works on more than a few hundred kilobytes (`CHUNK_CHARS`,
  `CHUNK_BLOB_BYTES`, one batch): a few milliseconds at worst (a string of control characters
  escapes at ~40 ns a character), so the event loop's thread never waits long for the GIL.
Never does: talk to SQLite (it is handed Python values), or build the row objects as a list.
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import orjson

from kissvdb.errors import InvalidArgument

ROWS_OPEN = b'{"rows":['
ROWS_CLOSE = b"]}"
BATCH_BYTES_MIN = 256 << 10  # encode the pending rows once their lower bound reaches this
BATCH_ROWS_MAX = 4096  # ... or once this many are pending
CHECK_EVERY_ROWS = 64  # rows between deadline checks (and before every batch and chunk encoded)
CHUNK_CHARS = 64 << 10  # characters of one large string per orjson call (at most 384 KiB of JSON)
CHUNK_BLOB_BYTES = 3 << 16  # bytes of one large blob per base64 call: a multiple of 3, so no '=' inside


@dataclass(slots=True)
class JsonChunks:
    """A JSON body in pieces (`bytes`), in order, `length` bytes in all: send them one after
    another. `join()` is for tests and callers that need it whole."""

    chunks: list[bytes]
    length: int

    def join(self) -> bytes:
        return b"".join(self.chunks)


_dumps = orjson.dumps
_b64 = binascii.b2a_base64
_isfinite = math.isfinite


def _column_plan(names: Sequence[str]) -> list[tuple[str, int]]:
    """(name, index of its last occurrence), in order of first occurrence: a dict's semantics."""
    last = {name: i for i, name in enumerate(names)}
    plan, seen = [], set()
    for name in names:
        if name not in seen:
            seen.add(name)
            plan.append((name, last[name]))
    return plan


def _blob_text(value: bytes) -> str:
    return _b64(value, newline=False).rstrip(b"=").decode("ascii")


class ResultBody:
    """Rows in, the response's bytes out: `add` or `extend` the rows, then `finish`. Raises as it
    goes: InvalidArgument (field `sql`) past `rows_max` rows or `bytes_max` bytes, or whatever
    `check` raises (the time limit)."""

    def __init__(self, names: Sequence[str], *, bytes_max: int, rows_max: int, check: Callable[[], None]):
        self.bytes_max = bytes_max
        self.rows_max = rows_max
        self.check = check
        self._plan = _column_plan(names)
        # A row's braces, quoted keys, colons and commas, plus at least one byte per value.
        self._row_base = 1 + sum(len(name) + 4 for name, _ in self._plan)
        self._chunks: list[bytes] = [ROWS_OPEN]
        self._held = len(ROWS_OPEN) + len(ROWS_CLOSE)  # bytes in _chunks, plus the closing bracket
        self._rows = 0
        self._encoded_rows = 0
        self._batch: list[dict] = []
        self._batch_bound = 0

    def add(self, row: Sequence) -> None:
        self.extend((row,))

    def extend(self, rows: Iterable[Sequence]) -> None:
        """Add every row of `rows` (an apsw cursor, say): the hot loop, with its state in locals."""
        plan, row_base, check = self._plan, self._row_base, self.check
        rows_max, bytes_max = self.rows_max, self.bytes_max
        batch = self._batch
        for row in rows:
            count = self._rows
            if count >= rows_max:
                raise InvalidArgument(
                    f"query returned more than {rows_max} rows (SQL_MAX_ROWS); add a LIMIT", field="sql")
            if not count % CHECK_EVERY_ROWS:
                check()
            out = {}
            bound = row_base + (1 if count else 0)  # the comma before every row but the first
            large = False
            for name, i in plan:
                value = row[i]
                kind = type(value)
                if kind is str:
                    bound += len(value) + 1
                    if len(value) > CHUNK_CHARS:
                        large = True  # encoded in chunks by _add_large
                elif kind is bytes:
                    bound += (len(value) * 4 + 2) // 3 + 1
                    if len(value) > CHUNK_BLOB_BYTES:
                        large = True
                    else:
                        value = _blob_text(value)
                elif kind is float and not _isfinite(value):
                    value = None
                out[name] = value
            self._rows = count + 1
            batch_bound = self._batch_bound + bound
            if self._held + batch_bound > bytes_max:
                self._reserve(batch_bound)  # raises
            if large:
                self._flush()
                self._add_large(out)
                continue
            batch.append(out)
            self._batch_bound = batch_bound
            if batch_bound >= BATCH_BYTES_MIN or len(batch) >= BATCH_ROWS_MAX:
                self._flush()

    def finish(self) -> JsonChunks:
        self._flush()
        self._chunks.append(ROWS_CLOSE)
        return JsonChunks(self._chunks, self._held)

    def _reserve(self, more: int) -> None:
        """Refuse if `more` bytes (a lower bound) on top of what is held would pass the budget."""
        if self._held + more > self.bytes_max:
            self._chunks = []  # give the memory back before the error travels up
            self._batch.clear()
            raise InvalidArgument(
                f"query result larger than {self.bytes_max} bytes (SQL_RESULT_BYTES_MAX); "
                "select fewer rows or columns", field="sql")

    def _append(self, data: bytes) -> None:
        self._reserve(len(data))
        self._chunks.append(data)
        self._held += len(data)

    def _separate(self) -> None:
        if self._encoded_rows:
            self._append(b",")

    def _flush(self) -> None:
        if not self._batch:
            return
        self.check()
        data = _dumps(self._batch)
        self._separate()
        self._encoded_rows += len(self._batch)
        self._batch.clear()
        self._batch_bound = 0
        self._append(data[1:-1])  # the rows without the list's brackets

    def _add_large(self, out: dict) -> None:
        """One row holding a value over a chunk: written piece by piece, checking the deadline."""
        self._separate()
        self._encoded_rows += 1
        opener = b"{"
        for name, value in out.items():
            self._append(opener + _dumps(name) + b":")
            opener = b","
            if type(value) is str and len(value) > CHUNK_CHARS:
                self._append(b'"')
                for start in range(0, len(value), CHUNK_CHARS):
                    self.check()
                    self._append(_dumps(value[start:start + CHUNK_CHARS])[1:-1])
                self._append(b'"')
            elif type(value) is bytes:
                self._append(b'"')
                view = memoryview(value)
                for start in range(0, len(view), CHUNK_BLOB_BYTES):
                    self.check()
                    self._append(_b64(view[start:start + CHUNK_BLOB_BYTES], newline=False).rstrip(b"="))
                self._append(b'"')
            else:
                self._append(_dumps(value))
        self._append(b"}")

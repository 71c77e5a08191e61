"""The `/v1/sql/query` response body, built on the SQL thread while SQLite steps the rows.

Owns the JSON form of user SQL values and the result's byte budget.

Guarantees:
- The body is exactly `orjson.dumps({"rows": rows})` of the contract's row objects: keyed by
  column name (a repeated name keeps its first position and its last value, as a dict does),
  BLOBs as base64 (standard alphabet, no padding), NaN/infinite REALs as null.
- Memory: the encoded bytes held never pass the budget by more than one batch
  (`BATCH_BYTES_MIN`, a lower bound on what the batch encodes to). Before a row is encoded, a
  lower bound of its encoded size is added to what is held (a string of n characters is at least
  n + 2 bytes, a blob of n bytes exactly 4n/3 + 2), so a value too large for the budget is
  refused before any of it is encoded.
- Time: `check` (the statement's deadline and cancel flag) runs before every row and between the
  chunks of a large value, so encoding counts toward the time limit as SQLite's steps do.
- The GIL: no single C call here encodes more than about a megabyte (`CHUNK_CHARS`,
  `CHUNK_BLOB_BYTES`, one batch), so another thread (the event loop) never waits long for it.
Never does: talk to SQLite (it is handed Python values), or build the row objects as a list.
"""

from __future__ import annotations

import binascii
import math
from typing import Callable, Sequence

import orjson

from kissvdb.errors import InvalidArgument

ROWS_OPEN = b'{"rows":['
ROWS_CLOSE = b"]}"
BATCH_BYTES_MIN = 1 << 20  # encode the pending rows once their lower bound reaches this
BATCH_ROWS_MAX = 4096  # ... or once this many are pending
CHUNK_CHARS = 1 << 20  # characters of one large string per orjson call
CHUNK_BLOB_BYTES = 3 << 18  # bytes of one large blob per base64 call: a multiple of 3, so no '=' inside

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
    """Rows in, the response's bytes out. `add` each row, then `finish`. Raises as it goes:
    InvalidArgument (field `sql`) past `rows_max` rows or `bytes_max` bytes, or whatever
    `check` raises (the time limit)."""

    def __init__(self, names: Sequence[str], *, bytes_max: int, rows_max: int, check: Callable[[], None]):
        self.bytes_max = bytes_max
        self.rows_max = rows_max
        self.check = check
        self._plan = _column_plan(names)
        # A row's braces, quoted keys, colons and commas, plus at least one byte per value.
        self._row_base = 1 + sum(len(name) + 4 for name, _ in self._plan)
        self._pieces: list[bytes | memoryview] = []
        self._held = len(ROWS_OPEN) + len(ROWS_CLOSE)  # bytes in _pieces, plus the framing
        self._rows = 0
        self._encoded_rows = 0
        self._batch: list[dict] = []
        self._batch_bound = 0

    def add(self, row: Sequence) -> None:
        if self._rows >= self.rows_max:
            raise InvalidArgument(
                f"query returned more than {self.rows_max} rows (SQL_MAX_ROWS); add a LIMIT", field="sql")
        self.check()
        out = {}
        bound = self._row_base + (1 if self._rows else 0)  # the comma before every row but the first
        large = False
        for name, i in self._plan:
            value = row[i]
            kind = type(value)
            if kind is str:
                bound += len(value) + 1
                large = large or len(value) > CHUNK_CHARS
            elif kind is bytes:
                bound += (len(value) * 4 + 2) // 3 + 1
                if len(value) > CHUNK_BLOB_BYTES:
                    large = True  # encoded in chunks by _add_large
                else:
                    value = _blob_text(value)
            elif kind is float and not _isfinite(value):
                value = None
            out[name] = value
        self._rows += 1
        self._reserve(self._batch_bound + bound)
        if large:
            self._flush()
            self._add_large(out)
        else:
            self._batch.append(out)
            self._batch_bound += bound
            if self._batch_bound >= BATCH_BYTES_MIN or len(self._batch) >= BATCH_ROWS_MAX:
                self._flush()

    def finish(self) -> bytes:
        self._flush()
        return b"".join([ROWS_OPEN, *self._pieces, ROWS_CLOSE])

    def _reserve(self, more: int) -> None:
        """Refuse if `more` bytes (a lower bound) on top of what is held would pass the budget."""
        if self._held + more > self.bytes_max:
            self._pieces.clear()  # give the memory back before the error travels up
            self._batch.clear()
            raise InvalidArgument(
                f"query result larger than {self.bytes_max} bytes (SQL_RESULT_BYTES_MAX); "
                "select fewer rows or columns", field="sql")

    def _append(self, data: bytes | memoryview) -> None:
        self._reserve(len(data))
        self._pieces.append(data)
        self._held += len(data)

    def _separate(self) -> None:
        if self._encoded_rows:
            self._append(b",")

    def _flush(self) -> None:
        if not self._batch:
            return
        data = _dumps(self._batch)
        self._separate()
        self._encoded_rows += len(self._batch)
        self._batch.clear()
        self._batch_bound = 0
        self._append(memoryview(data)[1:-1])  # the rows without the list's brackets

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
                    self._append(memoryview(_dumps(value[start:start + CHUNK_CHARS]))[1:-1])
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

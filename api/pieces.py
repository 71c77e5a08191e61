"""Large answers built in pieces on the event loop: lists of stored values (KV items, vector hits
with their metas, API keys), encoded a batch at a time, with a yield after each batch and every
byte counted against the answer's cap.

Why on the loop, in pieces, and not in one call or in a worker thread: orjson and cbor2 hold the
interpreter lock for a whole call. One call over 64 MB holds the event loop for 50 ms and more
(and a CBOR answer that re-encodes metas for seconds); the same call in a worker thread holds
the lock just as long, so the loop waits all the same. What bounds the hold is the size of each
call: here one call encodes about PIECE_BYTES of stored data, and the task yields to the
scheduler after it, so `/v1/health` and every other request get their turn between batches.

Guarantees:
- Every byte added is counted. Past `bytes_max` the writer drops what it holds and raises the
  caller's error: an answer over its cap costs at most one batch beyond the cap. `reserve`
  refuses up front from a lower bound, before anything is encoded.
- The result is a `JsonChunks` (kissvdb/sql/result.py): pieces sent in order under one
  Content-Length and never joined (api.codec.json_chunks_response).
Never does: decide what goes into an answer, or what its cap is.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import cbor2
import orjson
import trio

from kissvdb.errors import KissError
from kissvdb.sql.result import JsonChunks

PIECE_BYTES = 256 << 10  # stored bytes encoded per call, between two yields to the loop
# ... when each stored value is parsed and encoded again (a JSON meta into CBOR): about ten
# times the work per byte of copying it into JSON (64 KB of small numbers: 1 ms to parse, 2 ms
# to write as CBOR), so a quarter of the bytes per call.
CBOR_PIECE_BYTES = PIECE_BYTES // 4
BATCH_ITEMS_MAX = 4096  # ... or this many items, however small
T = TypeVar("T")


class PieceWriter:
    """Bytes in order, counted; `finish()` gives them as a JsonChunks.

    `too_large(bytes_max)` builds the error raised when the answer would pass `bytes_max`
    (None: no cap)."""

    def __init__(self, bytes_max: int | None = None,
                 too_large: Callable[[int], KissError] | None = None) -> None:
        if bytes_max is not None and too_large is None:
            raise ValueError("a capped writer needs the error it raises")
        self.bytes_max = bytes_max
        self._too_large = too_large
        self._chunks: list[bytes] = []
        self.length = 0

    def reserve(self, more: int) -> None:
        """Refuse now if `more` bytes (a lower bound of what is still to come) cannot fit."""
        if self.bytes_max is not None and self.length + more > self.bytes_max:
            self._chunks = []  # give the memory back before the error travels up
            raise self._too_large(self.bytes_max)

    def add(self, data: bytes) -> None:
        self.reserve(len(data))
        self._chunks.append(data)
        self.length += len(data)

    def finish(self) -> JsonChunks:
        chunks, self._chunks = self._chunks, []
        return JsonChunks(chunks, self.length)


def batches(items: Iterable[T], weight: Callable[[T], int], batch_bytes: int = PIECE_BYTES) -> Iterator[list[T]]:
    """`items` in order, in lists whose weights (about the bytes each encodes to) reach
    `batch_bytes`, or of BATCH_ITEMS_MAX items."""
    batch: list[T] = []
    held = 0
    for item in items:
        batch.append(item)
        held += weight(item)
        if held >= batch_bytes or len(batch) >= BATCH_ITEMS_MAX:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


async def add_json_items(out: PieceWriter, items: Sequence[T], to_json: Callable[[T], object],
                         weight: Callable[[T], int], *, option: int | None = None, default=None) -> None:
    """The JSON of `items`, comma-separated without brackets (the caller writes those): one
    orjson call per batch, a yield to the loop after each."""
    first = True
    for batch in batches(items, weight):
        data = orjson.dumps([to_json(item) for item in batch], option=option, default=default)
        if not first:
            out.add(b",")
        first = False
        out.add(data[1:-1])
        await trio.lowlevel.checkpoint()


async def json_array_body(items: Sequence[T], to_json: Callable[[T], object],
                          weight: Callable[[T], int]) -> bytes | list[bytes]:
    """A Response body holding the JSON array of `items`: one orjson call when their weight is
    at most PIECE_BYTES (the common case, no yield), else pieces (see `add_json_items`)."""
    if sum(map(weight, items)) <= PIECE_BYTES:
        return orjson.dumps([to_json(item) for item in items])
    out = PieceWriter()
    out.add(b"[")
    await add_json_items(out, items, to_json, weight)
    out.add(b"]")
    return out.finish().chunks


async def add_cbor_items(out: PieceWriter, items: Sequence[T], to_cbor: Callable[[T], object],
                         weight: Callable[[T], int]) -> None:
    """The CBOR of `items`, one after another (after a `cbor_array_head` the caller wrote): the
    same bytes as cbor2 writes for the whole array, a yield to the loop after each batch."""
    for batch in batches(items, weight, CBOR_PIECE_BYTES):
        out.add(b"".join([cbor2.dumps(to_cbor(item)) for item in batch]))
        await trio.lowlevel.checkpoint()


def cbor_head(major: int, n: int) -> bytes:
    """The head of a CBOR item of major type `major` (4: array, 5: map) holding `n` entries, in
    the shortest form (RFC 8949 §3), as cbor2 writes it."""
    if n < 24:
        return bytes((major << 5 | n,))
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes((major << 5 | extra,)) + n.to_bytes(size, "big")
    raise ValueError(f"{n} entries do not fit a CBOR head")


def cbor_array_head(n: int) -> bytes:
    return cbor_head(4, n)


def cbor_map_head(n: int) -> bytes:
    return cbor_head(5, n)

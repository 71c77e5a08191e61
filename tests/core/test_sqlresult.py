"""kissvdb/sql/result.py: the query body is byte for byte what encoding the contract's row
objects in one go gives, whatever mix of values, sizes (batches, chunked large values) and
repeated column names; and the row, byte and deadline budgets stop it as they are reached.
"""

from __future__ import annotations

import base64
import math
import random

import orjson
import pytest

from kissvdb.errors import InvalidArgument, SqliteError
from kissvdb.sql.result import BATCH_ROWS_MAX, CHUNK_BLOB_BYTES, CHUNK_CHARS, ResultBody


def reference(names, rows) -> bytes:
    """The contract's rows built the obvious way: a dict per row, then one orjson call."""
    out = []
    for row in rows:
        obj = {}
        for name, value in zip(names, row):
            if isinstance(value, bytes):
                value = base64.b64encode(value).rstrip(b"=").decode("ascii")
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            obj[name] = value
        out.append(obj)
    return orjson.dumps({"rows": out})


def encode(names, rows, *, bytes_max=1 << 30, rows_max=1 << 30, check=lambda: None) -> bytes:
    body = ResultBody(names, bytes_max=bytes_max, rows_max=rows_max, check=check)
    for row in rows:
        body.add(row)
    chunks = body.finish()
    whole = chunks.join()
    assert chunks.length == len(whole)
    return whole


def random_value(rng: random.Random):
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.randrange(-(1 << 63), 1 << 63)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 1e300, -2.5e-300, math.nan, math.inf, -math.inf, rng.random()])
    if kind == 3:
        return "".join(rng.choice('ab"\\/\n\t\x00\x01\x1fé€😀') for _ in range(rng.randrange(40)))
    if kind == 4:
        return rng.randbytes(rng.randrange(40))
    if kind == 5:
        return ""
    if kind == 6:
        return b""
    if kind == 7:  # a string over one chunk, with characters JSON escapes, split anywhere
        return ("x\x01\"é😀" * (CHUNK_CHARS // 5 + rng.randrange(1, 5000)))[: CHUNK_CHARS + rng.randrange(1, 9000)]
    return rng.randbytes(CHUNK_BLOB_BYTES + rng.randrange(1, 10))  # a blob over one chunk


@pytest.mark.parametrize("seed", range(12))
def test_body_matches_the_one_shot_encoding(seed):
    rng = random.Random(seed)
    names = [rng.choice(["a", "b", "é", 'q"uote', "a"]) for _ in range(rng.randrange(1, 6))]
    rows = []
    for _ in range(rng.randrange(0, 30)):
        rows.append(tuple(random_value(rng) if rng.random() < 0.6 else rng.randrange(100) for _ in names))
    assert encode(names, rows) == reference(names, rows), f"seed {seed}"


def test_many_small_rows_cross_batches():
    names = ["i", "s", "i"]
    rows = [(n, f"row {n}", -n) for n in range(BATCH_ROWS_MAX * 2 + 7)]
    assert encode(names, rows) == reference(names, rows)


def test_no_rows():
    assert encode(["x"], []) == b'{"rows":[]}'


def test_row_limit():
    with pytest.raises(InvalidArgument, match="more than 3 rows") as refused:
        encode(["x"], [(1,), (2,), (3,), (4,)], rows_max=3)
    assert refused.value.field == "sql"
    assert encode(["x"], [(1,), (2,), (3,)], rows_max=3) == b'{"rows":[{"x":1},{"x":2},{"x":3}]}'


@pytest.mark.parametrize("rows", [
    [("a" * 40,), ("b" * 40,)],
    [(b"\xff" * 30,), (b"\x00" * 30,)],
    [("\x01" * 10,)],  # escapes to six bytes a character: the exact count catches it
])
def test_byte_budget_is_exact(rows):
    size = len(reference(["v"], rows))
    assert encode(["v"], rows, bytes_max=size) == reference(["v"], rows)
    with pytest.raises(InvalidArgument, match=f"larger than {size - 1} bytes") as refused:
        encode(["v"], rows, bytes_max=size - 1)
    assert refused.value.field == "sql"


def test_a_value_past_the_budget_is_refused_before_it_is_encoded():
    checks = []
    big = b"\x00" * (CHUNK_BLOB_BYTES * 8)
    with pytest.raises(InvalidArgument):
        encode(["b"], [(big,)], bytes_max=len(big), check=lambda: checks.append(1))
    assert checks == [1]  # the row's check ran; no chunk of it was encoded


def test_the_check_runs_between_rows_and_chunks_and_stops_the_encoding():
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 3:
            raise SqliteError("interrupted: statement exceeded the time limit of 1 ms", field="sql")

    with pytest.raises(SqliteError, match="interrupted"):
        encode(["s"], [("z" * (CHUNK_CHARS * 10),)], check=check)
    assert len(calls) == 4


def test_the_body_comes_in_pieces_no_larger_than_a_couple_of_megabytes():
    # Escapes (six bytes a character) in small rows, long strings and long blobs: every piece is
    # small enough to encode and send without holding the GIL for long, however large the body.
    rows = [("\x01" * 50_000, b"\xff" * 100_000)] * 40 + [("\x01" * (CHUNK_CHARS * 5), b"\x00" * (CHUNK_BLOB_BYTES * 5))]
    body = ResultBody(["t", "b"], bytes_max=1 << 30, rows_max=1 << 30, check=lambda: None)
    body.extend(rows)
    chunks = body.finish()
    assert chunks.join() == reference(["t", "b"], rows)
    assert chunks.length > 16 << 20
    assert max(len(chunk) for chunk in chunks.chunks) <= 2 << 20

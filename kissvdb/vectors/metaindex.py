"""Per-field columns over a collection's metas, so a filter costs a few numpy operations instead
of one Python call per row (100,000 rows: ~60-100 ms per filtered search before, see
docs/BENCHMARKS.md).

Rows are immutable (an upsert or update appends a row), so the columns over rows [0, n) only
ever grow; a compaction renumbers rows and starts a new generation. A field's columns are built
on the first filter that names it and extended by the rows appended since, under one lock
(searches run in many threads).

Per field:
- `code`: int32 per row, the number of the row's scalar value (JSON equality: 1 == 1.0,
  true != 1, "1" != 1), MISSING when the field is absent or the meta is not an object, OTHER
  for an object or array value;
- `num`: float64 per row, the value when it is a number (not a bool), NaN otherwise: ranges.
Clauses these cannot answer exactly (an object or array to compare with, a range on strings,
an integer beyond 2^53) are left to the filter's own test, run only on the rows the other
clauses kept.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from kissvdb.vectors.filters import RANGE_OPS

log = logging.getLogger("kissvdb.vectors")
LOG_ROWS = 200_000  # building a field's columns over more rows than this is logged

MISSING = -1
OTHER = -2
EXACT_INT = 2 ** 53  # float64 holds every integer up to here


def scalar_key(value):
    """A dict key under JSON equality, or None for objects and arrays."""
    t = type(value)
    if t is bool:
        return (1, value)
    if t is int or t is float:
        return (2, value)  # 1 and 1.0 hash and compare equal; 2**60 + 1 and 2.0**60 do not
    if t is str:
        return (3, value)
    if value is None:
        return (4, None)
    return None


class _Column:
    """A growable numpy column: rows [0, n) are valid."""

    __slots__ = ("a", "n", "fill")

    def __init__(self, dtype, fill):
        self.fill = fill
        self.a = np.full(1024, fill, dtype=dtype)
        self.n = 0

    def extend(self, values: list) -> None:
        need = self.n + len(values)
        if need > len(self.a):
            grown = np.full(max(need, 2 * len(self.a)), self.fill, dtype=self.a.dtype)
            grown[: self.n] = self.a[: self.n]
            self.a = grown
        self.a[self.n:need] = values
        self.n = need


class FieldColumns:
    __slots__ = ("code", "num", "keys", "inexact")

    def __init__(self):
        self.code = _Column(np.int32, MISSING)
        self.num = _Column(np.float64, np.nan)
        self.keys: dict = {}
        self.inexact = False  # an integer beyond 2^53 was seen: ranges go to the test

    def extend(self, field: str, metas: list) -> None:
        codes = []
        nums = []
        keys = self.keys
        for m in metas:
            if type(m) is not dict or field not in m:
                codes.append(MISSING)
                nums.append(np.nan)
                continue
            v = m[field]
            k = scalar_key(v)
            if k is None:
                codes.append(OTHER)
                nums.append(np.nan)
                continue
            c = keys.get(k)
            if c is None:
                c = keys[k] = len(keys)
            codes.append(c)
            if k[0] == 2:
                if type(v) is int and abs(v) > EXACT_INT:
                    self.inexact = True
                nums.append(float(v))
            else:
                nums.append(np.nan)
        self.code.extend(codes)
        self.num.extend(nums)


class MetaIndex:
    """The field columns of one generation of a collection's rows."""

    def __init__(self, gen: int):
        self.gen = gen
        self.lock = threading.Lock()
        self.n = 0
        self.is_object = _Column(np.bool_, False)
        self.fields: dict[str, FieldColumns] = {}

    def evaluate(self, clauses: list, n: int, meta_of) -> tuple[np.ndarray, list]:
        """(mask of rows [0, n) that are object metas passing every clause the columns can
        answer, the clauses they cannot). `meta_of(row)` is a row's parsed meta."""
        with self.lock:
            self._cover({c[0] for c in clauses}, n, meta_of)
            mask = self.is_object.a[:n].copy()
            rest = []
            for clause in clauses:
                m = self.clause_mask(clause[0], clause[1], clause[2], n)
                if m is None:
                    rest.append(clause)
                else:
                    mask &= m
            return mask, rest

    def _cover(self, fields, n: int, meta_of) -> None:
        if n > self.n:
            metas = [meta_of(r) for r in range(self.n, n)]
            self.is_object.extend([type(m) is dict for m in metas])
            for name, cols in self.fields.items():
                cols.extend(name, metas)
            self.n = n
        for name in fields:
            if name not in self.fields:
                t = time.monotonic()
                cols = FieldColumns()
                cols.extend(name, [meta_of(r) for r in range(self.n)])
                self.fields[name] = cols
                if self.n > LOG_ROWS:
                    log.info("metadata columns for field %r built over %d rows in %.1f s (first filter on it)",
                             name, self.n, time.monotonic() - t)

    def clause_mask(self, field: str, op: str, arg, n: int) -> np.ndarray | None:
        """Rows [0, n) where the clause holds (asked of object metas only), or None when the
        columns cannot answer it exactly. Called under the lock."""
        cols = self.fields[field]
        code = cols.code.a[:n]
        if op in ("$eq", "$ne"):
            k = scalar_key(arg)
            if k is None:
                return None
            c = cols.keys.get(k)
            hit = np.zeros(n, bool) if c is None else code == c
            return hit if op == "$eq" else ~hit
        if op in ("$in", "$nin"):
            ks = [scalar_key(x) for x in arg]
            if any(k is None for k in ks):
                return None
            cs = [cols.keys[k] for k in ks if k in cols.keys]
            hit = np.isin(code, cs) if cs else np.zeros(n, bool)
            return hit if op == "$in" else ~hit
        if op in RANGE_OPS:
            if type(arg) is str or cols.inexact or (type(arg) is int and abs(arg) > EXACT_INT):
                return None
            with np.errstate(invalid="ignore"):  # NaN (not a number) compares false: no match
                return RANGE_OPS[op](cols.num.a[:n], arg)
        if op == "$exists":
            return (code != MISSING) if arg else (code == MISSING)
        return None

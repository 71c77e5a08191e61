"""Search filters on a vector's `meta`: the original's exact-match form plus operators.

A filter is a JSON object; every key must hold (AND). `{"field": value}` is the original's
exact match (JSON equality, so 1 == 1.0 but "1" != 1 and True != 1). `{"field": {"$op": arg, ...}}`
applies operators: `$eq $ne $in $nin $gt $gte $lt $lte $exists`. An object value whose keys are
not all operators is an exact match against that object.

Rules kept from the original: a meta that is not an object never matches (so `{}` excludes
null meta); a filter that is not an object matches nothing. Ranges compare numbers with numbers
and strings with strings; other pairs do not match. `$ne`/`$nin` match a missing field, as in
MongoDB; `$exists: false` matches only a missing field.

Never raises on a meta value: user data cannot make a search fail. A malformed filter (unknown
operator, `$in` not a list) raises InvalidArgument naming `filters.<field>`.
Limits, as for documents (kissvdb/documents/query.py; 400 naming the field): FILTER_TERMS_MAX
conditions, IN_VALUES_MAX values per `$in`/`$nin`. A row's test may compare each value with
the row's (objects and arrays cannot be looked up), so these bound a search's work per row.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

from kissvdb.documents.query import FILTER_TERMS_MAX, IN_VALUES_MAX
from kissvdb.errors import InvalidArgument

OPS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
_MISSING = object()


def _same_kind(a, b) -> bool:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, num) and isinstance(b, num):
        return True
    return isinstance(a, str) and isinstance(b, str)


def json_equal(a, b) -> bool:
    """JSON equality: numbers by value, bool is not a number, containers recursively."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# The range operators, on Python values here and on numpy columns in metaindex.py.
RANGE_OPS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _cmp(op: str, arg) -> Callable[[Any], bool]:
    compare = RANGE_OPS[op]

    def test(v) -> bool:
        if v is _MISSING or not _same_kind(v, arg):
            return False
        return compare(v, arg)

    return test


def _op_test(field: str, op: str, arg) -> Callable[[Any], bool]:
    """The test of one operator on a field's value (`_MISSING` when the field is absent)."""
    where = f"filters.{field}.{op}"
    if op == "$eq":
        return lambda v: v is not _MISSING and json_equal(v, arg)
    if op == "$ne":
        return lambda v: v is _MISSING or not json_equal(v, arg)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise InvalidArgument(f"{op} needs a list", field=where)
        if len(arg) > IN_VALUES_MAX:
            raise InvalidArgument(f"{op} takes at most {IN_VALUES_MAX} values", field=where)
        if op == "$in":
            return lambda v: v is not _MISSING and any(json_equal(v, x) for x in arg)
        return lambda v: v is _MISSING or not any(json_equal(v, x) for x in arg)
    if op in RANGE_OPS:
        if isinstance(arg, bool) or not isinstance(arg, (int, float, str)):
            raise InvalidArgument(f"{op} needs a number or a string", field=where)
        return _cmp(op, arg)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise InvalidArgument("$exists needs true or false", field=where)
        return lambda v: (v is not _MISSING) == arg
    raise InvalidArgument(f"unknown filter operator {op}", field=where)


def _is_operator_object(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and k.startswith("$") for k in value)


class Filter:
    """A compiled filter: a predicate over a row's parsed meta, and its clauses
    `(field, op, arg, test)` (all must hold; an exact match is `$eq`) for the metadata index.
    `clauses` None: the filter matches nothing (it was not an object)."""

    __slots__ = ("clauses",)

    def __init__(self, clauses: list | None):
        self.clauses = clauses

    def __call__(self, meta) -> bool:
        if self.clauses is None or not isinstance(meta, dict):
            return False
        for field, _op, _arg, test in self.clauses:
            if not test(meta.get(field, _MISSING)):
                return False
        return True


def compile_filter(filters) -> Filter | None:
    """The compiled filter, or None for "no filter" (filters null/absent)."""
    if filters is None:
        return None
    if not isinstance(filters, dict):
        return Filter(None)
    clauses = []
    for field, value in filters.items():
        if _is_operator_object(value):
            for op, arg in value.items():
                clauses.append((field, op, arg, _op_test(field, op, arg)))
        else:
            clauses.append((field, "$eq", value, _op_test(field, "$eq", value)))
        if len(clauses) > FILTER_TERMS_MAX:
            raise InvalidArgument(f"a filter takes at most {FILTER_TERMS_MAX} conditions", field="filters")
    return Filter(clauses)

"""`find` for the document store: a filter, a sort and a cursor compiled into one SQLite query.

Pure: JSON in, SQL text + arguments out. kissvdb/documents/table.py runs the query on state.sqlite
with SQLite's JSON1 functions, so a find never loads a collection into Python.

Filter semantics (a superset of the original's, contract §5.3):
- `null`/absent: every live document of the collection. A non-object filter matches nothing.
  `{}` matches every document that is a JSON object.
- Each key is a path: a dot separates object keys (`"a.b"` reads `doc["a"]["b"]`; a documented
  departure, since the original only looked at top-level keys). All keys must match (AND).
- A plain value means JSON equality, which compares the JSON type too: `1`, `1.0` and `true` are
  three different values, as in the original. Arrays and objects compare as canonical JSON.
- An object whose keys all start with `$` is a set of operators, all of which must hold:
  `$eq $ne $in $nin $gt $gte $lt $lte $exists`. `$ne`/`$nin` also match a missing field (as
  MongoDB). Ranges compare numbers with numbers and strings with strings (by code point); a
  value of another type never matches a range. `$exists: true` matches any present value,
  `null` included.
Sort: a path or a list of paths, each optionally prefixed with `-` for descending. Values sort by
type first (missing/null < numbers < strings < booleans < arrays < objects), then by value;
ties break on the document id (ascending). Without a sort, documents come in id order.
Paging: `cursor` is the opaque `next_cursor` of the previous page (keyset paging: it holds the
last document's sort key, so pages do not shift when earlier documents change). A cursor is
checked field by field before use; any other string is 400 `cursor`.
Limits (400 naming the field): FILTER_TERMS_MAX conditions per filter, IN_VALUES_MAX values per
`$in`/`$nin`, SORT_FIELDS_MAX sort fields. The compiled SQL has a bounded expression depth and
number of parameters, whatever the input.

The collection name and field paths are written into the SQL text as quoted literals (names are
validated to `[A-Za-z0-9_.-]`; paths are escaped), which is what lets SQLite match the partial
expression indexes `POST /v1/doc/{collection}/_index` creates.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from kissvdb.errors import InvalidArgument

OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
SORT_FIELDS_MAX = 4
IN_VALUES_MAX = 1000  # values in one `$in` / `$nin`
# Conditions in one filter (a plain value or one operator counts one). The WHERE clause is a
# chain of ANDs, which SQLite nests one level per term and refuses past depth 1000; this also
# keeps the bound parameters far below SQLite's limit whatever MAX_JSON_BYTES is.
FILTER_TERMS_MAX = 256
FILTER_DEPTH_MAX = 1  # operator objects are not nested further
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

_RANK_SQL = (
    "CASE json_type(doc, {p}) WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 "
    "WHEN 'false' THEN 3 WHEN 'true' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 ELSE 0 END"
)


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def json_path(field: str, *, what: str = "filter") -> str:
    """SQLite JSON path for a dotted field: `a.b` -> `$."a"."b"` (each segment quoted)."""
    if not field:
        raise InvalidArgument("field path must not be empty", field=what)
    if "\x00" in field:
        # The path becomes an SQL literal, and SQLite stops reading the statement at a NUL.
        raise InvalidArgument("field path must not contain NUL characters", field=what)
    parts = field.split(".")
    if any(not p for p in parts):
        raise InvalidArgument(f"empty segment in field path {field!r}", field=what)
    return "$" + "".join('."' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


def path_sql(field: str, *, what: str = "filter") -> str:
    """The path as an SQL literal, as it appears in queries and index expressions."""
    return sql_literal(json_path(field, what=what))


def extract_sql(field: str) -> str:
    """The expression an index on `field` is built on (and that equality filters use)."""
    return f"json_extract(doc, {path_sql(field, what='field')})"


def _bind_number(v):
    if type(v) is int and not (INT64_MIN <= v <= INT64_MAX):
        return float(v)
    return v


def _canonical(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _eq(p: str, value, args: list) -> str:
    jt = f"json_type(doc, {p})"
    if value is None:
        return f"{jt} = 'null'"
    if value is True:
        return f"{jt} = 'true'"
    if value is False:
        return f"{jt} = 'false'"
    jx = f"json_extract(doc, {p})"
    t = type(value)
    if t is int:
        args.append(_bind_number(value))
        return f"({jx} = ? AND {jt} = 'integer')"
    if t is float:
        args.append(value)
        return f"({jx} = ? AND {jt} = 'real')"
    if t is str:
        args.append(value)
        return f"({jx} = ? AND {jt} = 'text')"
    if t is list:
        args.append(_canonical(value))
        return f"({jx} = ? AND {jt} = 'array')"
    if t is dict:
        args.append(_canonical(value))
        return f"({jx} = ? AND {jt} = 'object')"
    raise InvalidArgument(f"unsupported filter value {value!r}", field="filter")


def _any_of(p: str, values: list, args: list, *, prefilter: bool) -> str:
    """True when the value at `p` JSON-equals one of `values`, else false (never NULL, so it
    may be negated for `$nin`; with `prefilter`, for `$in` only, a miss may also be NULL).

    One membership test against a JSON array bound once, not one term per value: a chain of
    1,000 ORs is an expression tree SQLite refuses (depth 1000), and it evaluated the path
    twice per value per document. `json_each` yields each value's JSON type and SQL value as
    `json_type`/`json_extract` give them for the document, and both sides are parsed by the
    same SQLite from canonical JSON (keys sorted), so `(type, value)` pairs compare exactly as
    `_eq` does. JSON null has no SQL value to compare, so it is tested on its own. With
    `prefilter`, a plain `json_extract IN (...)` (a superset: it ignores the type) comes first
    so that an index on the field can drive the search.
    """
    jt = f"json_type(doc, {p})"
    jx = f"json_extract(doc, {p})"
    parts = []
    if any(v is None for v in values):
        parts.append(f"{jt} IS 'null'")
    rest = [v for v in values if v is not None]
    if rest:
        array = _canonical(rest)
        pairs = f"coalesce(({jt}, {jx}) IN (SELECT type, value FROM json_each(?)), 0)"
        if prefilter and len(rest) == len(values):
            args.append(array)
            args.append(array)
            return f"({jx} IN (SELECT value FROM json_each(?)) AND {pairs})"
        args.append(array)
        parts.append(pairs)
    if not parts:
        return "0"
    return "(" + " OR ".join(parts) + ")"


def _range(p: str, op: str, value, args: list, where: str) -> str:
    sym = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
    jt = f"json_type(doc, {p})"
    jx = f"json_extract(doc, {p})"
    t = type(value)
    if t is int or t is float:
        args.append(_bind_number(value))
        return f"({jx} {sym} ? AND {jt} IN ('integer', 'real'))"
    if t is str:
        args.append(value)
        return f"({jx} {sym} ? AND {jt} = 'text')"
    raise InvalidArgument(f"{op} needs a number or a string", field=where)


def _is_operators(value) -> bool:
    return type(value) is dict and bool(value) and any(k.startswith("$") for k in value)


def _check_terms(flt: dict) -> None:
    terms = sum(len(v) if _is_operators(v) else 1 for v in flt.values())
    if terms > FILTER_TERMS_MAX:
        raise InvalidArgument(
            f"filter has {terms} conditions; at most {FILTER_TERMS_MAX} (a value or an operator counts one)",
            field="filter")


def _condition(key: str, value, args: list) -> str:
    where = f"filter.{key}"
    p = path_sql(key, what=where)
    if _is_operators(value):
        if not all(k.startswith("$") for k in value):
            raise InvalidArgument("an operator object cannot mix operators and fields", field=where)
        terms = []
        for op, operand in value.items():
            here = f"{where}.{op}"
            if op == "$eq":
                terms.append(_eq(p, operand, args))
            elif op == "$ne":
                terms.append(f"NOT coalesce({_eq(p, operand, args)}, 0)")
            elif op in ("$in", "$nin"):
                if type(operand) is not list:
                    raise InvalidArgument(f"{op} needs an array", field=here)
                if len(operand) > IN_VALUES_MAX:
                    raise InvalidArgument(f"{op} takes at most {IN_VALUES_MAX} values", field=here)
                any_of = _any_of(p, operand, args, prefilter=op == "$in")
                terms.append(any_of if op == "$in" else f"NOT {any_of}")
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                terms.append(_range(p, op, operand, args, here))
            elif op == "$exists":
                if type(operand) is not bool:
                    raise InvalidArgument("$exists needs true or false", field=here)
                terms.append(f"json_type(doc, {p}) IS {'NOT ' if operand else ''}NULL")
            else:
                raise InvalidArgument(
                    f"unknown operator {op} (expected one of {', '.join(OPERATORS)})", field=here)
        return " AND ".join(terms)
    return _eq(p, value, args)


def parse_sort(value) -> tuple[tuple[str, bool], ...]:
    """`"a"`, `"-a"` or a list of them -> ((path, descending), ...)."""
    if value is None:
        return ()
    items = [value] if type(value) is str else value
    if type(items) is not list or not all(type(s) is str for s in items):
        raise InvalidArgument("sort must be a field path or a list of them", field="sort")
    if len(items) > SORT_FIELDS_MAX:
        raise InvalidArgument(f"sort takes at most {SORT_FIELDS_MAX} fields", field="sort")
    out = []
    for s in items:
        desc = s.startswith("-")
        field = s[1:] if s[:1] in ("-", "+") else s
        json_path(field, what="sort")
        out.append((field, desc))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FindQuery:
    collection: str
    filter: object = None
    sort: tuple[tuple[str, bool], ...] = ()
    limit: int = 20
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class CompiledFind:
    sql: str
    args: tuple
    limit: int
    sort_terms: int  # how many sort values (rank, value per field) follow the doc columns


def _sort_signature(sort) -> list:
    return [[f, d] for f, d in sort]


def encode_cursor(sort, values: list, id_: str) -> str:
    raw = orjson.dumps({"s": _sort_signature(sort), "v": values, "id": id_})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# What `_RANK_SQL` gives for each JSON type, and the SQL value `json_extract` gives with it:
# the only (rank, value) pairs a cursor of ours can hold.
_RANK_VALUE_TYPES = {0: (type(None),), 1: (int, float), 2: (str,), 3: (int,), 4: (str,), 5: (str,)}


def _cursor_sort_values(values) -> bool:
    """True if `values` is a list of (rank, value) pairs as `compile_find` selects them."""
    if type(values) is not list or len(values) % 2:
        return False
    for rank, value in zip(values[::2], values[1::2]):
        if type(rank) is not int or rank not in _RANK_VALUE_TYPES:
            return False
        if type(value) not in _RANK_VALUE_TYPES[rank]:
            return False
        if type(value) is int and not (INT64_MIN <= value <= INT64_MAX):
            return False
    return True


def decode_cursor(cursor: str, sort) -> tuple[list, str]:
    """The sort values and id a cursor holds. Every part is checked before it is bound: a
    cursor is user input (it only looks opaque), and anything but what `encode_cursor` wrote
    is 400 `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        obj = orjson.loads(raw)
        values, id_, signature = obj["v"], obj["id"], obj["s"]
    except (ValueError, binascii.Error, KeyError, TypeError):
        raise InvalidArgument("invalid cursor", field="cursor") from None
    if not _cursor_sort_values(values) or type(id_) is not str:
        raise InvalidArgument("invalid cursor", field="cursor")
    if signature != _sort_signature(sort) or len(values) != 2 * len(sort):
        raise InvalidArgument("cursor does not belong to this sort", field="cursor")
    return values, id_


def compile_find(q: FindQuery, now_ms: int) -> CompiledFind:
    """SQL for one page: `SELECT id, doc, revision, expires_at_ms[, sort keys...]`."""
    args: list = []
    where = [f"collection = {sql_literal(q.collection)}"]
    flt = q.filter
    if flt is not None:
        if type(flt) is not dict:
            where.append("0")  # the original: a non-object filter matches nothing
        else:
            # Filter and document must both be objects (the original's rule); this also keeps
            # `$exists: false` / `$ne` from matching scalar documents.
            where.append("json_type(doc) = 'object'")
            _check_terms(flt)
            for key, value in flt.items():
                where.append(_condition(key, value, args))
    where.append("(expires_at_ms IS NULL OR expires_at_ms > ?)")
    args.append(now_ms)

    sort_exprs: list[tuple[str, bool]] = []
    for field, desc in q.sort:
        p = path_sql(field, what="sort")
        sort_exprs.append((_RANK_SQL.format(p=p), desc))
        sort_exprs.append((f"json_extract(doc, {p})", desc))
    terms = sort_exprs + [("id", False)]

    if q.cursor is not None:
        values, last_id = decode_cursor(q.cursor, q.sort)
        bound = values + [last_id]
        disjuncts = []
        for j, (expr, desc) in enumerate(terms):
            parts = []
            for i in range(j):
                parts.append(f"{terms[i][0]} IS ?")
                args.append(bound[i])
            parts.append(f"{expr} {'<' if desc else '>'} ?")
            args.append(bound[j])
            disjuncts.append("(" + " AND ".join(parts) + ")")
        where.append("(" + " OR ".join(disjuncts) + ")")

    select = ["id", "doc", "revision", "expires_at_ms"] + [e for e, _ in sort_exprs]
    order = ", ".join(f"{e} {'DESC' if d else 'ASC'}" for e, d in terms)
    sql = (f"SELECT {', '.join(select)} FROM docs WHERE {' AND '.join(where)} "
           f"ORDER BY {order} LIMIT {int(q.limit) + 1}")
    return CompiledFind(sql, tuple(args), q.limit, len(sort_exprs))

"""`find` for the document store: a filter, a sort and a cursor compiled into one SQLite query.

Pure: JSON in, SQL text + arguments out. kissvdb/docstore.py runs the query on state.sqlite
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
last document's sort key, so pages do not shift when earlier documents change).

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
IN_VALUES_MAX = 1000
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


def _condition(key: str, value, args: list) -> str:
    where = f"filter.{key}"
    p = path_sql(key, what=where)
    if type(value) is dict and value and any(k.startswith("$") for k in value):
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
                if operand:
                    any_of = "coalesce(" + " OR ".join(_eq(p, v, args) for v in operand) + ", 0)"
                else:
                    any_of = "0"
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


def decode_cursor(cursor: str, sort) -> tuple[list, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        obj = orjson.loads(raw)
        values, id_, signature = obj["v"], obj["id"], obj["s"]
    except (ValueError, binascii.Error, KeyError, TypeError):
        raise InvalidArgument("invalid cursor", field="cursor") from None
    if signature != _sort_signature(sort) or type(values) is not list or type(id_) is not str \
            or len(values) != 2 * len(sort):
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

"""`find` (kissvdb/documents/query.py run by kissvdb/documents/reader.py) against a Python reference.

Seeded random documents go into a real state.sqlite; random filters (operators, dotted paths,
every JSON type), sorts and page sizes are run both in SQLite and by `reference_find` below,
which restates the documented semantics in plain Python. Paging through every page with the
cursor must give exactly the reference order. The seed is printed on failure.
"""

from __future__ import annotations

import os
import random

import orjson
import pytest

from kissvdb.documents.query import FindQuery, compile_find, encode_cursor
from kissvdb.documents.reader import DocReader
from kissvdb.documents.table import DocStore
from kissvdb.documents.state import PUT
from kissvdb.errors import InvalidArgument

SEED = int(os.environ.get("FIND_SEED", "20261125"))
MISSING = object()


def canonical(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def get_path(doc, field: str):
    cur = doc
    for part in field.split("."):
        if type(cur) is not dict or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def json_type(v) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "bool"
    if type(v) is int:
        return "integer"
    if type(v) is float:
        return "real"
    if type(v) is str:
        return "text"
    return "array" if type(v) is list else "object"


def json_equal(a, b) -> bool:
    if a is MISSING:
        return False
    if json_type(a) != json_type(b):
        return False
    if type(a) in (list, dict):
        return canonical(a) == canonical(b)
    return a == b


def matches_condition(value, cond) -> bool:
    if type(cond) is dict and cond and all(k.startswith("$") for k in cond):
        for op, operand in cond.items():
            if op == "$eq" and not json_equal(value, operand):
                return False
            if op == "$ne" and json_equal(value, operand):
                return False
            if op == "$in" and not any(json_equal(value, o) for o in operand):
                return False
            if op == "$nin" and any(json_equal(value, o) for o in operand):
                return False
            if op == "$exists" and (value is not MISSING) != operand:
                return False
            if op in ("$gt", "$gte", "$lt", "$lte"):
                numeric = type(operand) in (int, float)
                ok_type = json_type(value) in ("integer", "real") if numeric else json_type(value) == "text" \
                    if value is not MISSING else False
                if value is MISSING or not ok_type:
                    return False
                if op == "$gt" and not value > operand:
                    return False
                if op == "$gte" and not value >= operand:
                    return False
                if op == "$lt" and not value < operand:
                    return False
                if op == "$lte" and not value <= operand:
                    return False
        return True
    return json_equal(value, cond)


def matches(doc, flt) -> bool:
    if flt is None:
        return True
    if type(flt) is not dict or type(doc) is not dict:
        return False
    return all(matches_condition(get_path(doc, k), v) for k, v in flt.items())


def sort_key(value):
    if value is MISSING or value is None:
        return (0, 0)
    t = json_type(value)
    if t in ("integer", "real"):
        return (1, value)
    if t == "text":
        return (2, value.encode("utf-8"))
    if t == "bool":
        return (3, int(value))
    return (4 if t == "array" else 5, canonical(value))


class Desc:
    """Inverts the order of a sort key component."""

    def __init__(self, key):
        self.key = key

    def __lt__(self, other):
        return other.key < self.key

    def __eq__(self, other):
        return self.key == other.key


def reference_find(docs: dict[str, object], flt, sort) -> list[str]:
    ids = [i for i, d in docs.items() if matches(d, flt)]

    def key(i):
        parts = []
        for field, desc in sort:
            k = sort_key(get_path(docs[i], field))
            parts.append(Desc(k) if desc else k)
        parts.append(i.encode("utf-8"))
        return parts

    return sorted(ids, key=key)


# ---- data and random queries ---------------------------------------------------------------

VALUES = [0, 1, 2, -3, 1.0, 2.5, -0.5, 10**12, 2**64 - 1, 1e100, "a", "b", "B", "é", "", True, False, None,
          [1], [1, 2], [1.5, "a", None], {"x": 1}, {"y": {"b": 0.25, "a": [True]}}]
FIELDS = ["n", "s", "v", "a.b", "a.c", "tag"]


def random_doc(rng: random.Random):
    if rng.random() < 0.05:
        return rng.choice([1, "scalar", [1, 2], None])  # non-object documents
    doc = {}
    if rng.random() < 0.9:
        doc["n"] = rng.choice([0, 1, 2, 3, 4, 5, 1.0, 2.5, -1])
    if rng.random() < 0.8:
        doc["s"] = rng.choice(["a", "b", "c", "B", "é", ""])
    if rng.random() < 0.7:
        doc["v"] = rng.choice(VALUES)
    if rng.random() < 0.6:
        inner = {}
        if rng.random() < 0.8:
            inner["b"] = rng.choice([0, 1, 2, "x", True, None])
        if rng.random() < 0.5:
            inner["c"] = rng.choice(VALUES)
        doc["a"] = inner if rng.random() < 0.9 else rng.choice([1, [1]])
    if rng.random() < 0.3:
        doc["tag"] = rng.choice(VALUES)
    return doc


def random_condition(rng: random.Random):
    r = rng.random()
    if r < 0.35:
        return rng.choice(VALUES)
    ops = {}
    for _ in range(rng.randint(1, 2)):
        op = rng.choice(["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"])
        if op in ("$in", "$nin"):
            ops[op] = rng.sample(VALUES, rng.randint(0, 4))
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ops[op] = rng.choice([0, 1, 2.5, -1, "a", "b", "c"])
        elif op == "$exists":
            ops[op] = rng.random() < 0.5
        else:
            ops[op] = rng.choice(VALUES)
    return ops


def random_filter(rng: random.Random):
    r = rng.random()
    if r < 0.1:
        return None
    if r < 0.15:
        return {}
    return {f: random_condition(rng) for f in rng.sample(FIELDS, rng.randint(1, 2))}


def random_sort(rng: random.Random):
    return tuple((f, rng.random() < 0.5) for f in rng.sample(FIELDS, rng.randint(0, 2)))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    rng = random.Random(SEED)
    store = DocStore(str(tmp_path_factory.mktemp("find") / "state.sqlite"), durable=False)
    docs = {f"d{i:04d}": random_doc(rng) for i in range(600)}
    other = [(PUT, "other", i, canonical({"n": 1, "s": "a"}), 1, None, 1) for i in docs]
    changes = [(PUT, "c", i, canonical(d), 1, None, 2) for i, d in docs.items()]
    store.apply_docs(changes + other, 2)
    reader = DocReader(store.path)
    yield Seeded(store, reader), docs
    reader.close()
    store.close()


class Seeded:
    """The writer (for indexes) and a reader (for finds) on one state.sqlite."""

    def __init__(self, store: DocStore, reader: DocReader):
        self.store = store
        self.reader = reader


def run_all_pages(db: Seeded, flt, sort, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(1000):
        q = compile_find(FindQuery("c", flt, sort, limit, cursor), now_ms=0)
        rows = db.reader.find(q)
        page = rows[:limit]
        ids.extend(r[0] for r in page)
        if len(rows) <= limit:
            return ids
        last = page[-1]
        cursor = encode_cursor(sort, list(last[4:]), last[0])
    raise AssertionError("paging did not end")


def test_find_matches_the_reference_with_sort_and_paging(seeded):
    db, docs = seeded
    rng = random.Random(SEED + 1)
    for n in range(250):
        flt = random_filter(rng)
        sort = random_sort(rng)
        limit = rng.choice([1, 3, 7, 50, 1000])
        expected = reference_find(docs, flt, sort)
        got = run_all_pages(db, flt, sort, limit)
        assert got == expected, f"seed={SEED} case={n} filter={flt} sort={sort} limit={limit}"


@pytest.mark.parametrize(
    "flt, expected",
    [
        ({"n": 1}, lambda d: type(d) is dict and json_equal(d.get("n", MISSING), 1)),
        ({"n": 1.0}, lambda d: type(d) is dict and json_equal(d.get("n", MISSING), 1.0)),
        ({"v": True}, lambda d: type(d) is dict and d.get("v", MISSING) is True),
        ({"v": {"$exists": False}}, lambda d: type(d) is dict and "v" not in d),
        ({"a.b": {"$exists": True}}, lambda d: type(d) is dict and type(d.get("a")) is dict and "b" in d["a"]),
        ({"v": [1, 2]}, lambda d: type(d) is dict and d.get("v") == [1, 2]),
        ({"v": {"x": 1}}, lambda d: type(d) is dict and d.get("v") == {"x": 1}),
    ],
)
def test_targeted_filters(seeded, flt, expected):
    db, docs = seeded
    got = run_all_pages(db, flt, (), 1000)
    want = sorted(i for i, d in docs.items() if expected(d))
    assert got == want
    assert want, "the seeded data should contain a match"


def test_expired_documents_are_not_found(tmp_path):
    store = DocStore(str(tmp_path / "state.sqlite"), durable=False)
    store.apply_docs([(PUT, "c", "live", b'{"a":1}', 1, None, 1), (PUT, "c", "old", b'{"a":1}', 1, 100, 2),
                      (PUT, "c", "later", b'{"a":1}', 1, 10_000, 3)], 3)
    reader = DocReader(store.path)
    q = compile_find(FindQuery("c", {"a": 1}, (), 10), now_ms=5_000)
    assert [r[0] for r in reader.find(q)] == ["later", "live"]
    reader.close()
    store.close()


def test_field_paths_are_escaped(tmp_path):
    store = DocStore(str(tmp_path / "state.sqlite"), durable=False)
    odd = {'we"ird': 1, "back\\slash": 2, "it's": 3}
    store.apply_docs([(PUT, "c", "d", canonical(odd), 1, None, 1)], 1)
    reader = DocReader(store.path)
    for key, value in odd.items():
        q = compile_find(FindQuery("c", {key: value}, (), 10), now_ms=0)
        assert [r[0] for r in reader.find(q)] == ["d"], key
    reader.close()
    store.close()


def test_index_does_not_change_results(seeded):
    db, docs = seeded
    rng = random.Random(SEED + 2)
    cases = [({"a.b": random_condition(rng)}, random_sort(rng)) for _ in range(40)]
    before = [run_all_pages(db, f, s, 7) for f, s in cases]
    name, created = db.store.create_index("c", "a.b", 0)
    assert created
    plan = db.reader.explain(compile_find(FindQuery("c", {"a.b": 1}, (), 10), 0))
    assert any(name in step for step in plan), plan
    after = [run_all_pages(db, f, s, 7) for f, s in cases]
    assert before == after


def test_bad_sorts_and_cursors():
    from kissvdb.documents.query import decode_cursor, parse_sort

    assert parse_sort(["a", "-b.c", "+d"]) == (("a", False), ("b.c", True), ("d", False))
    for bad in (5, ["a", 1], ["a"] * 5, "", "-", "a..b"):
        with pytest.raises(InvalidArgument):
            parse_sort(bad)
    good = encode_cursor((("a", False),), [1, 2], "x")
    assert decode_cursor(good, (("a", False),)) == ([1, 2], "x")
    for cursor in ("", "%%%", encode_cursor((), [], "x")):
        with pytest.raises(InvalidArgument):
            decode_cursor(cursor, (("a", False),))

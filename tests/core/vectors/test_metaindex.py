"""The metadata columns answer filters exactly as the filter's own row-by-row test does."""

import random

import numpy as np
import orjson
import pytest

from kissvdb.vectors.collection import Collection, Remove, Upsert
from kissvdb.vectors.filters import compile_filter
from kissvdb.vectors.search import Searcher

from .helpers import small_params

DIM = 8
# Values chosen to collide under JSON equality in every way the columns must get right.
VALUES = [0, 1, 1.0, 2, -3.5, 2 ** 60, 2 ** 60 + 1, float(2 ** 60), True, False, None, "1", "a", "b", "",
          [1], [1.0], {"k": 1}, {"k": 1.0}, []]


def random_meta(rng: random.Random):
    r = rng.random()
    if r < 0.05:
        return None  # no meta at all
    if r < 0.1:
        return orjson.dumps(rng.choice([[1, 2], "text", 3, True]))  # a meta that is not an object
    return orjson.dumps({f: rng.choice(VALUES) for f in ("f", "g", "h") if rng.random() < 0.8})


def random_filter(rng: random.Random):
    clauses = {}
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(["f", "g", "h", "zz"])
        op = rng.choice(["exact", "$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"])
        if op == "exact":
            clauses[field] = rng.choice(VALUES)
        elif op in ("$in", "$nin"):
            clauses[field] = {op: rng.sample(VALUES, rng.randint(0, 4))}
        elif op == "$exists":
            clauses[field] = {op: rng.random() < 0.5}
        elif op.startswith(("$gt", "$lt")):
            clauses[field] = {op: rng.choice([0, 1, 1.5, -4, 2 ** 60, "a", "1", ""])}
        else:
            clauses[field] = {op: rng.choice(VALUES)}
    return clauses


def brute(c, v, predicate):
    live = v.cols["live"][: v.n].astype(bool)
    out = np.zeros(v.n, bool)
    for r in np.flatnonzero(live).tolist():
        raw = v.table.metas[r]
        out[r] = raw is not None and predicate(orjson.loads(raw))
    return out


def assert_masks_agree(c, rng, filters=200):
    v = c.view
    s = Searcher(c)
    for n in range(filters):
        flt = random_filter(rng) if n else {}  # {}: every object meta
        pred = compile_filter(flt)
        mask, matches = s._mask(v, pred)
        want = brute(c, v, pred)
        assert np.array_equal(mask, want), flt
        assert matches == int(want.sum())


def test_columns_match_the_row_by_row_filter_as_rows_are_added_and_compacted(tmp_path):
    rng = random.Random(7)
    c = Collection.create(str(tmp_path / "c"), "c", DIM, "cosine", "FLAT", small_params())
    off = 1

    def write(n):
        nonlocal off
        ops = []
        for _ in range(n):
            vid = f"id{rng.randrange(300)}"
            if rng.random() < 0.2:
                ops.append(Remove(off, vid))
            else:
                ops.append(Upsert(off, vid, np.ones(DIM, np.float32), random_meta(rng)))
            off += 1
        c.apply(ops, off - 1)

    write(400)
    assert_masks_agree(c, rng)  # columns built on first use
    write(300)
    assert_masks_agree(c, rng)  # extended by the rows appended since
    gen = c.view.gen
    assert c.compact(force=True)  # rows renumbered: a new generation of columns
    assert c.view.gen > gen
    assert_masks_agree(c, rng)
    write(100)
    assert_masks_agree(c, rng)


def test_a_filter_that_is_not_an_object_matches_nothing(tmp_path):
    c = Collection.create(str(tmp_path / "c"), "c", DIM, "cosine", "FLAT", small_params())
    c.apply([Upsert(1, "a", np.ones(DIM, np.float32), b'{"f":1}')], 1)
    assert c.search(np.ones(DIM, np.float32), 5, predicate=compile_filter([1])) == []
    assert [h.id for h in c.search(np.ones(DIM, np.float32), 5, predicate=compile_filter({}))] == ["a"]


@pytest.mark.parametrize("kind", ["HNSW", "IVF_FLAT_Q8"])
def test_selective_filter_on_an_index_returns_the_exact_best(tmp_path, kind):
    rng = np.random.default_rng(3)
    c = Collection.create(str(tmp_path / kind), "c", DIM, "cosine", kind, small_params())
    vecs = rng.standard_normal((3000, DIM)).astype(np.float32)
    c.apply([Upsert(i + 1, str(i), vecs[i], orjson.dumps({"user": f"u{i % 40}"})) for i in range(3000)], 3000)
    if kind == "IVF_FLAT_Q8":
        assert c.train_now()
    q = rng.standard_normal(DIM).astype(np.float32)
    got = [h.id for h in c.search(q, 10, predicate=compile_filter({"user": "u7"}))]
    rows = np.arange(7, 3000, 40)
    scores = vecs[rows] @ q / np.linalg.norm(vecs[rows], axis=1)
    assert got == [str(r) for r in rows[np.argsort(-scores, kind="stable")][:10]]

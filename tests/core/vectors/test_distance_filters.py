import random

import numpy as np
import pytest

from kissvdb.errors import InvalidArgument
from kissvdb.vectors.distance import exact_scores, norms_of, q8_dots, q8_encode, q8_query, top_rows, unit
from kissvdb.vectors.ivf_q8 import ListIndex
from kissvdb.vectors.filters import compile_filter


def test_scores_are_cosine_and_zero_norm_scores_zero():
    rows = np.array([[3, 4], [0, 0], [-1, 0]], np.float32)
    q = unit(np.array([1, 0], np.float32))
    s = exact_scores(rows, norms_of(rows), q)
    assert s.tolist() == pytest.approx([0.6, 0.0, -1.0])
    assert unit(np.zeros(3, np.float32)).tolist() == [0, 0, 0]


def test_top_rows_breaks_ties_by_id_even_at_the_cut():
    scores = np.array([0.5, 0.9, 0.5, 0.5], np.float32)
    ids = ["d", "a", "c", "b"]
    out = top_rows(scores, np.arange(4), 3, lambda r: ids[r])
    assert [ids[r] for r, _ in out] == ["a", "b", "c"]


def test_q8_codes_round_trip_within_a_step():
    rng = np.random.default_rng(1)
    x = np.stack([unit(v) for v in rng.standard_normal((50, 16)).astype(np.float32)])
    codes, scales = q8_encode(x)
    assert codes.dtype == np.int8 and np.abs(codes).max() <= 127
    assert np.abs(codes * scales[:, None] - x).max() <= scales.max() / 2 + 1e-6
    zc, zs = q8_encode(np.zeros((1, 4), np.float32))
    assert zs[0] == 1 and not zc.any()


@pytest.mark.parametrize("dim", [1, 7, 384, 1536])
def test_q8_dots_are_the_exact_integer_products(dim):
    rng = np.random.default_rng(dim)
    codes = rng.integers(-127, 128, (300, dim), dtype=np.int8)
    codes[0] = 127  # the extremes: a sum of dim * 127^2 must not wrap
    codes[1] = -127
    q = rng.integers(-127, 128, dim, dtype=np.int8)
    q[:] = np.where(np.arange(dim) % 2 == 0, 127, q)
    want = codes.astype(np.int64) @ q.astype(np.int64)
    assert q8_dots(q, codes).tolist() == want.tolist()
    assert q8_dots(q, codes[:0]).tolist() == []


def test_q8_query_ranks_like_the_float_query():
    rng = np.random.default_rng(3)
    x = np.stack([unit(v) for v in rng.standard_normal((400, 64)).astype(np.float32)])
    codes, scales = q8_encode(x)
    q = unit(rng.standard_normal(64).astype(np.float32))
    approx = q8_dots(q8_query(q), codes) * scales
    exact = x @ q
    # The approximate best 20 hold the exact best 5 (Q8 on both sides only perturbs ranks).
    assert set(np.argsort(-exact)[:5]) <= set(np.argsort(-approx)[:20])
    assert not q8_query(np.zeros(8, np.float32)).any()


@pytest.mark.parametrize("chunk", [7, 65536])
def test_list_positions_and_scores_follow_the_lists(monkeypatch, chunk):
    import kissvdb.vectors.ivf_q8 as ivf_q8

    monkeypatch.setattr(ivf_q8, "SCAN_CHUNK", chunk)  # a wide probe is scanned in chunks
    rng = np.random.default_rng(4)
    assign = rng.integers(0, 9, 500)
    assign[assign == 5] = 6  # an empty list
    codes, scales = q8_encode(np.stack([unit(v) for v in rng.standard_normal((500, 16)).astype(np.float32)]))
    centroids = np.stack([unit(v) for v in rng.standard_normal((9, 16)).astype(np.float32)])
    li = ListIndex(assign, centroids, codes_of=lambda rows: codes[rows], scales=scales)
    for lists in ([0], [5], [8, 2, 5], list(range(9))):
        pos = li.positions(np.array(lists))
        assert sorted(li.order[pos].tolist()) == sorted(np.flatnonzero(np.isin(assign, lists)).tolist())
        q = q8_query(unit(rng.standard_normal(16).astype(np.float32)))
        got = li.q8_scores(q, pos)
        rows = li.order[pos]
        assert np.allclose(got, (codes[rows].astype(np.int64) @ q.astype(np.int64)) * scales[rows])
        # The coarse ranking of lists follows the float32 centroids.
        qf = unit(rng.standard_normal(16).astype(np.float32))
        near = li.nearest_lists(q8_query(qf))
        assert np.argmax(near) == np.argmax(centroids @ qf)


CASES = [
    ({"t": "a"}, lambda m: m.get("t") == "a"),
    ({"g": 2}, lambda m: m.get("g") == 2),
    ({"g": 2.0}, lambda m: m.get("g") == 2),
    ({"t": {"$ne": "a"}}, lambda m: m.get("t") != "a"),
    ({"g": {"$in": [1, 3]}}, lambda m: m.get("g") in (1, 3)),
    ({"g": {"$nin": [1, 3]}}, lambda m: m.get("g") not in (1, 3)),
    ({"x": {"$gt": 0.5}}, lambda m: isinstance(m.get("x"), float) and m["x"] > 0.5),
    ({"x": {"$gte": 0.2, "$lt": 0.7}}, lambda m: "x" in m and 0.2 <= m["x"] < 0.7),
    ({"x": {"$lte": 0.3}, "t": "b"}, lambda m: "x" in m and m["x"] <= 0.3 and m.get("t") == "b"),
    ({"opt": {"$exists": True}}, lambda m: "opt" in m),
    ({"opt": {"$exists": False}}, lambda m: "opt" not in m),
    ({"t": {"$gt": "a"}}, lambda m: isinstance(m.get("t"), str) and m["t"] > "a"),
    ({"t": {"$gt": 1}}, lambda m: False),
    ({"flag": True}, lambda m: m.get("flag") is True),
    ({"flag": 1}, lambda m: False),
    ({}, lambda m: True),
]


@pytest.mark.parametrize("flt,ref", CASES)
def test_filters_match_a_brute_force_reference(flt, ref):
    rng = random.Random(7)
    pred = compile_filter(flt)
    for _ in range(300):
        m = {"g": rng.randrange(5), "t": rng.choice("abc"), "x": rng.random()}
        if rng.random() < 0.3:
            m["opt"] = None
        if rng.random() < 0.2:
            m["flag"] = rng.random() < 0.5
        assert pred(m) == ref(m), (flt, m)


def test_non_object_meta_and_non_object_filters_never_match():
    assert compile_filter({})(None) is False
    assert compile_filter({})([1]) is False
    assert compile_filter([1])({"a": 1}) is False
    assert compile_filter(None) is None


@pytest.mark.parametrize("bad,field", [({"a": {"$in": 3}}, "filters.a.$in"), ({"a": {"$regex": "x"}}, "filters.a.$regex"),
                                       ({"a": {"$gt": [1]}}, "filters.a.$gt"), ({"a": {"$exists": 1}}, "filters.a.$exists")])
def test_malformed_filters_name_the_field(bad, field):
    with pytest.raises(InvalidArgument) as e:
        compile_filter(bad)
    assert e.value.field == field

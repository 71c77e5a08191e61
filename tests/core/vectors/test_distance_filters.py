import random

import numpy as np
import pytest

from kissvdb.errors import InvalidArgument
from kissvdb.vectors.distance import exact_scores, norms_of, q8_encode, top_rows, unit
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

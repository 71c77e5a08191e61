"""Collections against a brute-force model: semantics, filters, groups, persistence, compaction."""

import random

import numpy as np
import orjson
import pytest

from kissvdb.vectors.collection import Collection, Remove, Upsert
from kissvdb.vectors.filters import compile_filter
from kissvdb.vectors.search import group

from .helpers import apply_all, model_of, random_ops, small_params

KINDS = ["FLAT", "HNSW", "IVF_FLAT_Q8"]
DIM = 12


def make(tmp_path, kind, metric="cosine", **kw):
    return Collection.create(str(tmp_path / kind), "c", DIM, metric, kind, small_params(**kw))


def check_against_model(c, model, queries, k=10, predicate=None):
    for q in queries:
        got = [(h.id, h.score) for h in c.search(q, k, predicate=predicate)]
        want = model.search(q, k, predicate)
        assert len(got) == len(want)
        assert [g[0] for g in got] == [w[0] for w in want]
        assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_random_upserts_and_deletes_match_the_model_exactly_when_exact(tmp_path, kind):
    # exact_max_rows above the size: every plan ends in an exact scan, so results must be identical.
    seed = 11
    ops = random_ops(random.Random(seed), 600, DIM, 150)
    c = make(tmp_path, kind, exact_max_rows=10_000)
    apply_all(c, ops)
    model = model_of(ops)
    assert c.info()["live_count"] == len(model.items)
    for vid, (vec, meta) in model.items.items():
        got = c.get(vid)
        assert got is not None and np.array_equal(got[0], vec) and got[1] == meta
    rng = np.random.default_rng(seed)
    check_against_model(c, model, rng.standard_normal((5, DIM)).astype(np.float32))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flt", [{"t": "a"}, {"g": {"$in": [1, 2]}, "x": {"$lt": 0.5}}, {"g": 4, "t": "c"},
                                 {"x": {"$gte": 0.0}}, {"nope": {"$exists": True}}])
def test_filtered_search_returns_min_k_matches_and_the_right_ones(tmp_path, kind, flt):
    ops = random_ops(random.Random(3), 900, DIM, 700)
    c = make(tmp_path, kind)
    apply_all(c, ops)
    if kind == "IVF_FLAT_Q8":
        assert c.train_now()
    model = model_of(ops)
    pred = compile_filter(flt)
    rng = np.random.default_rng(5)
    for q in rng.standard_normal((4, DIM)).astype(np.float32):
        got = c.search(q, 10, predicate=pred)
        want = model.search(q, 10, pred)
        assert len(got) == len(want)  # never fewer than min(k, matches)
        for h in got:
            assert pred(orjson.loads(model.items[h.id][1]))
        # Approximate paths may differ in members, never in the count or the filter.
        if kind == "FLAT":
            assert [h.id for h in got] == [w[0] for w in want]


def test_group_semantics_follow_the_original():
    # A: .9 .7 .6, B: .8, C: .5 ; limit 2 -> groups by best: A(.9,.7), B(.8), C(.5)
    pairs = [(0, .9), (1, .8), (2, .7), (3, .6), (4, .5)]
    key = {0: "A", 1: "B", 2: "A", 3: "A", 4: "C"}.get
    assert group(pairs, 10, 2, key, True) == [(0, .9), (2, .7), (1, .8), (4, .5)]
    assert group(pairs, 2, 2, key, True) == [(0, .9), (2, .7)]
    assert group(pairs[:1], 2, 2, key, False) is None  # A could still gain a member


@pytest.mark.parametrize("kind", KINDS)
def test_group_by_matches_brute_force(tmp_path, kind):
    ops = random_ops(random.Random(9), 500, DIM, 400)
    c = make(tmp_path, kind, exact_max_rows=10_000)
    apply_all(c, ops)
    model = model_of(ops)
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    for limit, k in [(1, 5), (2, 7), (3, 20)]:
        ranked = model.search(q, 10_000)
        groups, order = {}, []
        for vid, s in ranked:
            meta = model.items[vid][1]
            m = orjson.loads(meta) if meta else None
            key = m["g"] if isinstance(m, dict) and "g" in m else ("own", vid)
            if key not in groups:
                groups[key] = []
                order.append(key)
            if len(groups[key]) < limit:
                groups[key].append(vid)
        want = [vid for key in order for vid in groups[key]][:k]
        got = [h.id for h in c.search(q, k, group_by="g", group_limit=limit)]
        assert got == want


def test_dot_metric_stores_unit_vectors_and_cosine_stores_as_sent(tmp_path):
    c = Collection.create(str(tmp_path / "d"), "d", 2, "dot", "FLAT", small_params())
    from kissvdb.vectors.distance import stored_form
    c.apply([Upsert(1, "a", stored_form(np.array([3, 4], np.float32), "dot"), None)], 1)
    assert np.allclose(c.get("a")[0], [0.6, 0.8])
    c2 = make(tmp_path, "FLAT")
    v = np.arange(DIM, dtype=np.float32)
    c2.apply([Upsert(1, "a", v, None)], 1)
    assert np.array_equal(c2.get("a")[0], v)


@pytest.mark.parametrize("kind", KINDS)
def test_restart_loads_the_index_and_replays_only_the_tail(tmp_path, kind):
    ops = random_ops(random.Random(21), 1500, DIM, 900)
    params = small_params()
    c = Collection.create(str(tmp_path / kind), "c", DIM, "cosine", kind, params)
    apply_all(c, ops[:1000])
    if kind == "IVF_FLAT_Q8":
        assert c.train_now(now_ms=123)
    c.checkpoint()
    apply_all(c, ops[1000:1200])  # applied, never checkpointed
    c.close()
    c = Collection.open(str(tmp_path / kind), params)
    assert c.applied_offset == ops[999].offset
    if kind == "IVF_FLAT_Q8":
        assert c.centroids is not None and c.trained_at_ms == 123  # not retrained
    if kind == "HNSW":
        assert c.hnsw.sealed or c.hnsw.mutable.count
    apply_all(c, ops[1000:])  # WAL replay of the tail, then new writes
    model = model_of(ops)
    assert c.info()["live_count"] == len(model.items)
    for vid, (vec, meta) in model.items.items():
        assert np.array_equal(c.get(vid)[0], vec) and c.get(vid)[1] == meta
    q = np.random.default_rng(2).standard_normal(DIM).astype(np.float32)
    assert len(c.search(q, 10)) == 10


@pytest.mark.parametrize("kind", KINDS)
def test_compaction_drops_dead_records_and_keeps_every_live_vector(tmp_path, kind):
    params = small_params(run_target_bytes=8 << 10, run_retention=2, compaction_max_bytes_per_pass=24 << 10)
    c = Collection.create(str(tmp_path / kind), "c", DIM, "cosine", kind, params)
    ops = random_ops(random.Random(5), 1200, DIM, 200)
    apply_all(c, ops)
    if kind == "IVF_FLAT_Q8":
        c.train_now()
    assert len(c.runs) > 3
    passes = 0
    while c.compaction_due() and passes < 50:
        assert c.compact()
        passes += 1
    assert passes > 1  # the byte budget forced several passes
    info = c.info()
    assert info["runs"] <= params.run_retention + 1
    model = model_of(ops)
    assert info["live_count"] == len(model.items)
    rng = np.random.default_rng(3)
    qs = rng.standard_normal((3, DIM)).astype(np.float32)
    c.checkpoint()
    c.close()
    c = Collection.open(str(tmp_path / kind), small_params(exact_max_rows=10_000, run_target_bytes=8 << 10))
    for vid, (vec, meta) in model.items.items():
        assert np.array_equal(c.get(vid)[0], vec)
    check_against_model(c, model, qs)
    files = sorted(p.name for p in (tmp_path / kind / "runs").iterdir())
    assert len(files) == len(c.runs) * (3 if kind == "IVF_FLAT_Q8" else 2)


def test_hnsw_segments_seal_merge_and_survive_restart(tmp_path):
    params = small_params()
    c = Collection.create(str(tmp_path / "h"), "h", DIM, "cosine", "HNSW", params)
    ops = [Upsert(i + 1, f"v{i}", v, None) for i, v in enumerate(
        np.random.default_rng(4).standard_normal((2000, DIM)).astype(np.float32))]
    apply_all(c, ops, batch=250)
    assert len(c.hnsw.sealed) == 4
    segs = c.merge_due()
    assert segs is not None and len(segs) == 4
    c.install_merge(segs, c.merge_segments(segs))
    assert len(c.hnsw.sealed) == 1 and c.hnsw.sealed[0].count == 1600
    c.apply([Remove(3000, "v7")], 3000)
    c.checkpoint()
    c.close()
    c = Collection.open(str(tmp_path / "h"), params)
    assert c.hnsw.sealed[0].count == 1600 and c.hnsw.mutable.count == 400
    assert "v7" not in [h.id for h in c.search(ops[7].vector, 5)]
    assert c.search(ops[8].vector, 1)[0].id == "v8"


def test_vacuum_leaves_one_run_without_dead_records(tmp_path):
    params = small_params(run_target_bytes=4 << 10, compaction_max_bytes_per_pass=8 << 10)
    c = Collection.create(str(tmp_path / "v"), "v", DIM, "cosine", "FLAT", params)
    ops = random_ops(random.Random(8), 800, DIM, 100)
    apply_all(c, ops)
    seen = []
    passes = c.vacuum(progress=lambda done, total: seen.append((done, total)))
    assert passes >= 1 and seen[-1][0] == seen[-1][1]
    info = c.info()
    assert info["deleted_count"] == 0 and len([r for r in c.runs if r.records]) == 1
    assert info["live_count"] == len(model_of(ops).items)


def test_hnsw_fast_path_never_returns_labels_of_compacted_rows(tmp_path):
    params = small_params(run_target_bytes=2 << 10, exact_max_rows=8)
    c = Collection.create(str(tmp_path / "h"), "h", DIM, "cosine", "HNSW", params)
    rng = np.random.default_rng(6)
    vecs = rng.standard_normal((300, DIM)).astype(np.float32)
    apply_all(c, [Upsert(i + 1, f"v{i}", vecs[i], None) for i in range(300)])
    apply_all(c, [Remove(400 + i, f"v{i}") for i in range(0, 300, 2)])
    while c.compact(force=True):
        pass
    assert c.info()["live_count"] == c.view.n == 150  # nothing dead left, graphs still hold old labels
    for i in range(1, 300, 28):  # odd ids: the live ones
        hits = c.search(vecs[i], 5)
        assert hits[0].id == f"v{i}" and all(int(h.id[1:]) % 2 == 1 for h in hits)

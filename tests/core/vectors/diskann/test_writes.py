"""Writes after a build: the mutable segment, the delete mask, stale share, writes during a
build, reconcile at boot, and remap for compaction's renumbering."""

import os

import numpy as np
import pytest

from .helpers import DIM, clustered, exact, open_index, unit

N = 1500


@pytest.fixture
def built(tmp_path):
    rows = clustered(N, seed=7)
    ids = np.arange(N, dtype=np.int64)
    idx = open_index(tmp_path / "d")
    idx.build(ids, rows)
    return idx, ids, rows


def test_new_rows_are_searchable_at_once_and_merged_with_graph_hits(built):
    idx, ids, rows = built
    new = clustered(40, seed=8)
    for i, v in enumerate(new):
        idx.upsert(50_000 + i, v)
    all_ids = np.concatenate([ids, 50_000 + np.arange(40)])
    all_rows = np.vstack([rows, new])
    for j in range(0, 40, 4):
        got = idx.search(new[j], 10)[0].tolist()
        assert got[0] == 50_000 + j
        assert len(set(got) & set(exact(all_ids, all_rows, new[j], 10))) >= 9
    assert idx.status()["unindexed_rows"] == 40


def test_deleted_and_replaced_rows_never_come_back(built):
    idx, ids, rows = built
    gone = set(range(0, N, 3))
    for i in gone:
        assert idx.delete(i)
    assert not idx.delete(0)  # already masked
    replaced = 1
    idx.upsert(replaced, -rows[replaced])  # the same id, an opposite vector
    for q in clustered(30, seed=9):
        got = idx.search(q, 25)[0].tolist()
        assert len(got) == 25 and not (set(got) & gone)
    assert replaced not in idx.search(rows[replaced], 10)[0].tolist()
    assert idx.search(-rows[replaced], 1)[0].tolist() == [replaced]
    assert idx.delete(replaced) and replaced not in idx.search(-rows[replaced], 5)[0].tolist()


def test_stale_share_counts_masked_and_unindexed_rows(built):
    idx, ids, rows = built
    assert idx.stale_share() == 0
    for i in range(100):
        idx.delete(i)
    for i in range(50):
        idx.upsert(90_000 + i, rows[i])
    assert idx.stale_share() == pytest.approx((100 + 50) / (N + 50))
    idx.delete(90_000)
    assert idx.stale_share() == pytest.approx((100 + 49) / (N + 49))


def test_segment_survives_many_deletes_and_packs(tmp_path):
    idx = open_index(tmp_path / "d")
    vecs = clustered(600, seed=10)
    for i, v in enumerate(vecs):
        idx.upsert(i, v)
    for i in range(0, 600, 2):
        assert idx.delete(i)
    assert idx.status()["unindexed_rows"] == 300
    ids = np.arange(1, 600, 2)
    for q in vecs[:20]:
        assert idx.search(q, 10)[0].tolist() == exact(ids, vecs[1::2], q, 10)


@pytest.mark.parametrize("share", [0.001, 0.02, 0.3])
def test_a_filter_keeps_min_k_matches(built, share):
    idx, ids, rows = built
    rng = np.random.default_rng(11)
    allowed = np.sort(rng.choice(ids, max(1, int(share * N)), replace=False))
    for i in allowed[::5]:
        idx.delete(int(i))  # masked rows must not count as matches
    live_allowed = np.setdiff1d(allowed, allowed[::5])
    for q in clustered(10, seed=12):
        for k in (1, 10, 50):
            want = min(k, len(live_allowed))
            got = idx.search(q, k, accept=lambda x: np.isin(x, live_allowed))[0]
            assert len(got) == want and set(got.tolist()) <= set(live_allowed.tolist())
            got = idx.search(q, k, allowed=allowed)[0]
            assert len(got) == want and set(got.tolist()) <= set(live_allowed.tolist())


def test_a_small_allowed_set_is_answered_exactly_across_graph_and_segment(built):
    idx, ids, rows = built
    idx.upsert(70_000, rows[3] * 2)
    allowed = np.array([3, 4, 5, 600, 900, 70_000, 123_456])  # one id that exists nowhere
    both_ids = np.array([3, 4, 5, 600, 900, 70_000])
    both_rows = np.vstack([rows[[3, 4, 5, 600, 900]], rows[3] * 2])
    for q in clustered(5, seed=13):
        assert idx.search(q, 4, allowed=allowed)[0].tolist() == exact(both_ids, both_rows, q, 4)
    assert len(idx.search(rows[0], 5, allowed=[])[0]) == 0
    assert len(idx.search(rows[0], 5, accept=lambda x: np.zeros(len(x), bool))[0]) == 0


def test_ties_are_broken_by_id(tmp_path):
    idx = open_index(tmp_path / "d")
    v = np.ones(DIM, np.float32)
    idx.build(np.array([9, 3, 7]), np.vstack([v, v, v]))
    idx.upsert(5, v)
    assert idx.search(v, 4)[0].tolist() == [3, 5, 7, 9]


def test_writes_during_a_build_reach_the_new_index(built):
    idx, ids, rows = built
    extra = clustered(30, seed=14)
    for i in range(10):
        idx.upsert(80_000 + i, extra[i])  # in the segment before the snapshot, so in the build
    snap_ids = np.concatenate([ids, 80_000 + np.arange(10)])
    snap_rows = np.vstack([rows, extra[:10]])
    job = idx.begin_build(snap_ids, snap_rows)
    idx.delete(5)  # in the snapshot: must stay hidden
    idx.upsert(6, -rows[6])  # rewritten after the snapshot: the graph's copy must stay hidden
    for i in range(10, 30):
        idx.upsert(80_000 + i, extra[i])  # new during the build: must stay in the segment
    idx.delete(80_003)
    status = job.run()
    assert status["rows"] == N + 10 and status["unindexed_rows"] == 21  # 20 new + the rewritten 6
    assert status["masked_rows"] == 3  # 5, 6 and 80_003
    assert 5 not in idx.search(rows[5], 10)[0].tolist()
    assert idx.search(-rows[6], 1)[0].tolist() == [6] and 6 not in idx.search(rows[6], 10)[0].tolist()
    assert idx.search(extra[25], 1)[0].tolist() == [80_025]
    assert 80_003 not in idx.search(extra[3], 10)[0].tolist()
    assert idx.search(extra[4], 1)[0].tolist() == [80_004]


def test_reconcile_after_reopen_rebuilds_the_mask_and_the_segment(built, tmp_path):
    idx, ids, rows = built
    extra = clustered(15, seed=15)
    reopened = open_index(tmp_path / "d")
    live = np.concatenate([ids[100:], 60_000 + np.arange(15)])
    counts = reopened.reconcile(live, lambda wanted: extra[np.asarray(wanted) - 60_000])
    assert counts == {"masked": 100, "unindexed": 15}
    assert reopened.stale_share() == pytest.approx(115 / (N + 15))
    for q in clustered(10, seed=16):
        got = reopened.search(q, 10)[0].tolist()
        assert all(g >= 100 for g in got)
    assert reopened.search(extra[7], 1)[0].tolist() == [60_007]


def test_remap_renames_rows_durably(built, tmp_path):
    idx, ids, rows = built
    idx.upsert(40_000, rows[9] * -1)
    idx.delete(2)
    old = np.concatenate([ids, [40_000]])
    new = old + 1_000_000
    idx.remap(old, new, epoch=7)
    assert idx.search(rows[10], 1)[0].tolist() == [1_000_010]
    assert idx.search(-rows[9], 1)[0].tolist() == [1_040_000]
    assert 1_000_002 not in idx.search(rows[2], 10)[0].tolist()
    assert idx.delete(1_000_011) and not idx.delete(11)
    build_dir = idx.graph.path
    assert sorted(f for f in os.listdir(build_dir) if f.startswith("ids")) == ["ids-7.i64"]
    again = open_index(tmp_path / "d")
    assert again.id_epoch == 7 and again.status()["rows"] == N
    assert again.search(rows[10], 1)[0].tolist() == [1_000_010]


def test_remap_during_a_build_reaches_the_installed_build(built):
    idx, ids, rows = built
    job = idx.begin_build(ids, rows)
    idx.delete(4)
    idx.remap(ids, ids * 2, epoch=3)
    status = job.run()
    assert idx.id_epoch == 3 and status["masked_rows"] == 1
    got = idx.search(rows[10], 3)[0].tolist()
    assert got[0] == 20 and all(g % 2 == 0 for g in got)
    assert 8 not in idx.search(rows[4], 10)[0].tolist()


def test_search_results_match_exact_when_breadth_covers_the_graph(tmp_path):
    rows = clustered(400, seed=17)
    idx = open_index(tmp_path / "d")
    idx.build(np.arange(400), rows, {"search_list_size": 1000})
    for q in clustered(10, seed=18):
        assert idx.search(q, 10)[0].tolist() == exact(np.arange(400), rows, q, 10)
    assert np.allclose(idx.search(rows[1], 1)[1], unit(rows[1]) @ unit(rows[1]), atol=1e-5)


def test_batched_writes_match_single_ones(built, tmp_path):
    idx, ids, rows = built
    new = clustered(20, seed=19)
    idx.upsert_many(np.arange(30_000, 30_020), new)
    assert idx.delete_many(np.array([1, 2, 30_001, 99_999])) == 3
    assert idx.search(new[5], 1)[0].tolist() == [30_005]
    assert 30_001 not in idx.search(new[1], 10)[0].tolist()
    assert idx.status()["unindexed_rows"] == 19 and idx.status()["masked_rows"] == 2
    with pytest.raises(ValueError):
        idx.upsert_many(np.arange(2), np.ones((2, DIM + 1)))

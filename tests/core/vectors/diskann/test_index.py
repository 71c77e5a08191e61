"""Build, open, search: recall against exact search, progress, status, reopen, the GIL."""

import os
import sys
import threading

import numpy as np
import pytest

from kissvdb.vectors.diskann import BuildRunning, BuildStopped, CorruptIndex, DiskAnnParams
from kissvdb.vectors.diskann import builder as builder_mod

from .helpers import DIM, clustered, entries, exact, open_index, unit

N = 3000


@pytest.fixture(scope="module")
def data():
    rows = clustered(N, seed=1)
    ids = np.arange(10_000, 10_000 + N, dtype=np.int64)
    queries = clustered(60, seed=2)
    return ids, rows, queries


def recall(idx, ids, rows, queries, k=10):
    hits = 0
    for q in queries:
        got = idx.search(q, k)[0].tolist()
        hits += len(set(got) & set(exact(ids, rows, q, k)))
    return hits / (k * len(queries))


def test_built_index_finds_the_exact_neighbours_and_serves_again_after_reopen(tmp_path, data):
    ids, rows, queries = data
    idx = open_index(tmp_path / "d")
    idx.build(ids, rows)
    assert recall(idx, ids, rows, queries) >= 0.95
    got, scores = idx.search(queries[0], 10)
    assert np.all(np.diff(scores) <= 0)
    assert np.allclose(scores, unit(rows[got - 10_000]) @ unit(queries[0]), atol=1e-5)
    again = open_index(tmp_path / "d")
    for q in queries[:10]:
        assert again.search(q, 10)[0].tolist() == idx.search(q, 10)[0].tolist()


def test_status_names_the_graph_files_that_exist(tmp_path, data):
    ids, rows, _ = data
    idx = open_index(tmp_path / "d")
    status = idx.build(ids[:500], rows[:500], now_ms=1234)
    assert status["available"] is True and status["building"] is False and status["progress"] is None
    assert status["last_built_ms"] == 1234 and status["rows"] == 500
    assert status["params"] == {"max_degree": 16, "build_threads": 1, "search_list_size": 128}
    assert len(status["graph_files"]) == 3
    for f in status["graph_files"]:
        assert f.startswith("diskann/") and os.path.getsize(tmp_path / "d" / f[len("diskann/"):]) > 0
    assert open_index(tmp_path / "d").status()["last_built_ms"] == 1234


def test_progress_reports_rows_done_up_to_the_total_and_status_shows_it(tmp_path, data):
    ids, rows, _ = data
    idx = open_index(tmp_path / "d")
    seen, statuses = [], []

    def progress(done, total):
        seen.append((done, total))
        statuses.append(idx.status())

    idx.build(ids, rows, progress=progress)
    assert len(seen) >= 2 and seen[-1] == (N, N)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and all(t == N for _, t in seen)
    assert all(s["building"] for s in statuses)
    assert statuses[0]["progress"] == {"rows_done": seen[0][0], "rows_total": N}
    assert idx.status()["building"] is False


def test_a_second_build_while_one_runs_is_refused(tmp_path, data):
    ids, rows, _ = data
    idx = open_index(tmp_path / "d")
    job = idx.begin_build(ids[:100], rows[:100])
    with pytest.raises(BuildRunning):
        idx.begin_build(ids[:100], rows[:100])
    job.run()
    idx.begin_build(ids[:100], rows[:100]).run()  # free again once installed


def test_stopped_build_leaves_the_previous_index_and_no_temp_dir(tmp_path, data):
    ids, rows, queries = data
    root = tmp_path / "d"
    idx = open_index(root)
    idx.build(ids[:300], rows[:300])
    before = entries(root)
    calls = []
    with pytest.raises(BuildStopped):
        idx.build(ids, rows, should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert entries(root) == before
    assert idx.status()["rows"] == 300 and idx.status()["building"] is False
    assert set(idx.search(queries[0], 5)[0].tolist()) <= set(ids[:300].tolist())


def test_build_reads_a_memmap_and_accepts_unsorted_ids(tmp_path, data):
    ids, rows, queries = data
    path = tmp_path / "rows.f32"
    rows.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=rows.shape)
    shuffled = np.random.default_rng(5).permutation(ids)
    idx = open_index(tmp_path / "d")
    idx.build(shuffled, mm)
    assert recall(idx, shuffled, rows, queries) >= 0.95
    assert idx.delete(int(shuffled[17]))
    assert int(shuffled[17]) not in idx.search(rows[17], 10)[0].tolist()


def test_zero_rows_and_zero_vectors(tmp_path):
    idx = open_index(tmp_path / "d")
    idx.build(np.zeros(0, np.int64), np.zeros((0, DIM), np.float32))
    assert idx.status()["available"] and len(idx.search(np.ones(DIM), 5)[0]) == 0
    rows = np.vstack([np.zeros((1, DIM), np.float32), clustered(20, seed=3)])
    idx.build(np.arange(21), rows)
    got, scores = idx.search(np.zeros(DIM), 21)
    assert len(got) == 21 and np.all(scores == 0)  # a zero query scores every row 0
    got, scores = idx.search(rows[5], 21)
    assert scores[got.tolist().index(0)] == 0  # a zero row scores 0


def test_dimension_and_metric_mismatch_refused(tmp_path, data):
    ids, rows, _ = data
    idx = open_index(tmp_path / "d")
    idx.build(ids[:50], rows[:50])
    with pytest.raises(ValueError):
        idx.search(np.ones(DIM + 1), 3)
    with pytest.raises(ValueError):
        idx.upsert(1, np.ones(DIM - 1))
    with pytest.raises(CorruptIndex):
        open_index(tmp_path / "d", dim=DIM * 2)


def test_a_damaged_build_is_refused_not_served(tmp_path, data):
    ids, rows, _ = data
    idx = open_index(tmp_path / "d")
    idx.build(ids[:200], rows[:200])
    with open(idx.graph.path + "/rows.f32", "r+b") as f:
        f.truncate(100)
    with pytest.raises(CorruptIndex):
        open_index(tmp_path / "d")


def test_build_releases_the_gil_inside_usearch(tmp_path):
    """While the build thread is inside usearch's `add`, the main thread keeps running Python.
    If `add` held the GIL, the main thread could not observe the build thread there at all."""
    rows = clustered(6000, seed=4, dim=64)
    idx = open_index(tmp_path / "d", DiskAnnParams(max_degree=32, build_threads=1, search_list_size=64), dim=64)
    add_line = next(i for i, line in enumerate(open(builder_mod.__file__), 1) if "index.add(" in line)
    t = threading.Thread(target=idx.build, args=(np.arange(6000), rows))
    t.start()
    inside = 0
    while t.is_alive() and inside < 10_000:
        frame = sys._current_frames().get(t.ident)
        while frame is not None and frame.f_code.co_filename != builder_mod.__file__:
            frame = frame.f_back
        if frame is not None and frame.f_lineno == add_line:
            inside += 1
    t.join()
    assert inside >= 1000
    assert idx.status()["rows"] == 6000

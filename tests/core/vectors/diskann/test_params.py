"""The contract's clamps (API-CONTRACT §3.8) and their mapping onto usearch."""

import numpy as np

from kissvdb.vectors.diskann import DiskAnnParams

from .helpers import open_index


def test_low_values_clamp_up():
    p = DiskAnnParams(max_degree=0, build_threads=0, search_list_size=1).clamped()
    assert (p.max_degree, p.build_threads, p.search_list_size) == (4, 1, 8)


def test_high_values_clamp_down_and_threads_stay():
    p = DiskAnnParams(max_degree=5000, build_threads=64, search_list_size=10**6).clamped()
    assert (p.max_degree, p.build_threads, p.search_list_size) == (1024, 64, 65535)


def test_merged_keeps_missing_and_null_values_and_ignores_unknown_keys():
    base = DiskAnnParams(max_degree=48, build_threads=2, search_list_size=64)
    p = base.merged({"max_degree": 2, "search_list_size": None, "bogus": 1})
    assert p.as_dict() == {"max_degree": 4, "build_threads": 2, "search_list_size": 64}


def test_usearch_mapping():
    p = DiskAnnParams(max_degree=48, build_threads=1, search_list_size=100)
    assert (p.connectivity, p.expansion_add, p.expansion_search) == (24, 128, 100)
    big = DiskAnnParams(max_degree=200).clamped()
    assert (big.connectivity, big.expansion_add) == (100, 400)
    assert DiskAnnParams(max_degree=4).clamped().connectivity == 2


def test_tune_stores_clamped_params_without_building(tmp_path):
    idx = open_index(tmp_path / "d")
    stored = idx.tune({"max_degree": 9999, "search_list_size": 3})
    assert stored.max_degree == 1024 and stored.search_list_size == 8
    status = open_index(tmp_path / "d").status()
    assert status["params"]["max_degree"] == 1024 and status["params"]["search_list_size"] == 8
    assert status["available"] is False and status["graph_files"] == [] and status["last_built_ms"] == 0


def test_tune_reaches_a_serving_graph_and_build_stores_its_params(tmp_path):
    idx = open_index(tmp_path / "d")
    idx.build(np.arange(50), np.random.default_rng(0).standard_normal((50, 32)), {"search_list_size": 9})
    assert idx.graph.index.expansion_search == 9
    assert idx.status()["params"]["search_list_size"] == 9
    idx.tune({"search_list_size": 40})
    assert idx.graph.index.expansion_search == 40
    assert open_index(tmp_path / "d").graph.index.expansion_search == 40


def test_tune_during_a_build_reaches_the_installed_graph(tmp_path):
    idx = open_index(tmp_path / "d")
    job = idx.begin_build(np.arange(50), np.random.default_rng(0).standard_normal((50, 32)), {"search_list_size": 20})
    idx.tune({"search_list_size": 77})
    job.run()
    assert idx.graph.index.expansion_search == 77 and idx.status()["params"]["search_list_size"] == 77

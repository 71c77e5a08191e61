"""Recall of each approximate index against exact numpy search on seeded clustered data."""

import numpy as np
import pytest

from kissvdb.vectors.collection import Collection, Upsert
from kissvdb.vectors.distance import unit_rows

from .helpers import apply_all, clustered, small_params

N, DIM, K = 4000, 32, 10


def exact_ids(base, queries, k):
    b = unit_rows(base)
    s = unit_rows(queries) @ b.T
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in s]


@pytest.mark.parametrize("kind,floor", [("HNSW", 0.95), ("IVF_FLAT_Q8", 0.9)])
def test_recall_at_10_against_exact_search(tmp_path, kind, floor):
    base = clustered(N, DIM, seed=1)
    queries = clustered(50, DIM, seed=2)
    params = small_params(ivf_clusters=4096, ivf_nprobe=16, q8_refine_topk=100, ivf_min_train_vectors=1000,
                          exact_max_rows=16)
    c = Collection.create(str(tmp_path / kind), "r", DIM, "cosine", kind, params)
    apply_all(c, [Upsert(i + 1, str(i), v, None) for i, v in enumerate(base)], batch=500)
    if kind == "IVF_FLAT_Q8":
        assert c.train_now()
        assert len(c.centroids) == round(4 * np.sqrt(N))  # ~4·sqrt(live) lists, under the cap
    truth = exact_ids(base, queries, K)
    got = [{int(h.id) for h in c.search(q, K)} for q in queries]
    recall = np.mean([len(g & t) / K for g, t in zip(got, truth)])
    assert recall >= floor, recall

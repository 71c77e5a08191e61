"""IVF training of an IVF_FLAT_Q8 collection: when it is due, and its three phases.

Separate from collection.py because it is one long-running job with its own life cycle:
`prepare_training` snapshots the rows under the collection's write lock, `train` (k-means,
assigning every row) runs without any lock on immutable rows, and `install_training` swaps the
centroids and lists in under the lock, unless a compaction renumbered rows meanwhile. Each
function takes the collection; `Collection` keeps thin methods of the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kissvdb.vectors.distance import unit_rows
from kissvdb.vectors.ivf_q8 import assign, kmeans, lists_for

if TYPE_CHECKING:
    from kissvdb.vectors.collection import Collection


def training_due(col: Collection) -> bool:
    if col.kind != "IVF_FLAT_Q8":
        return False
    if col.centroids is None:
        return col.live_count >= max(2, col.p.ivf_min_train_vectors)
    return col.upsert_count - col.trained_upserts >= col.p.ivf_retrain_min_deltas


def prepare_training(col: Collection, seed: int = 0):
    with col._write_lock:
        v = col.view
        live_rows = np.flatnonzero(v.cols["live"][: v.n])
        rng = np.random.default_rng(seed)
        sample = live_rows
        if len(sample) > col.p.ivf_training_sample:
            sample = np.sort(rng.choice(live_rows, size=col.p.ivf_training_sample, replace=False))
        nlist = lists_for(len(live_rows), col.p.ivf_clusters)
        return {"view": v, "sample": sample, "nlist": nlist, "seed": seed, "upserts": col.upsert_count}


def train(col: Collection, prep) -> dict:
    """The heavy part (k-means, assigning every row); reads only immutable rows."""
    v = prep["view"]
    x = unit_rows(col._rows_f32(v, prep["sample"]), v.cols["norm"][prep["sample"]])
    centroids = kmeans(x, prep["nlist"], iters=col.p.ivf_kmeans_iters, seed=prep["seed"])
    lst = np.empty(v.n, np.int32)
    chunk = 65536
    for s in range(0, v.n, chunk):
        rows = np.arange(s, min(v.n, s + chunk))
        lst[s:s + len(rows)] = assign(unit_rows(col._rows_f32(v, rows), v.cols["norm"][rows]), centroids)
    return {"centroids": centroids, "lst": lst, "n": v.n, "gen": v.gen, "upserts": prep["upserts"]}


def install_training(col: Collection, result, now_ms: int = 0) -> bool:
    with col._write_lock:
        if result["gen"] != col.gen:
            return False  # a compaction renumbered rows meanwhile: train again later
        c = result["centroids"]
        n0 = result["n"]
        lst = col.table.col("lst")
        lst[:n0] = result["lst"]
        n = col.table.n
        if n > n0:
            rows = np.arange(n0, n)
            lst[n0:n] = assign(unit_rows(col._rows_f32(col.view, rows), col.table.col("norm")[rows]), c)
        col.centroids = c
        col.centroids_file = None
        col.trained_at_ms = now_ms
        col.trained_upserts = result["upserts"]
        col._publish()
        col.lists = col._list_index(lst[:n], c)
        col.dirty = col.data_dirty = True
        col._publish()
        return True


def train_now(col: Collection, now_ms: int = 0, seed: int = 0) -> bool:
    return install_training(col, train(col, prepare_training(col, seed)), now_ms)

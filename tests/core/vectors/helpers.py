"""Seeded data and a brute-force reference model for vector tests."""

from __future__ import annotations

import random

import numpy as np
import orjson

from kissvdb.vectors.collection import Collection, HnswParams, Remove, Upsert, VectorParams


def clustered(n: int, dim: int, seed: int, clusters: int = 20) -> np.ndarray:
    """Gaussian blobs around random unit centres (recall on pure noise means little)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def small_params(**kw) -> VectorParams:
    hn = kw.pop("hnsw", HnswParams(m=16, ef_construction=100, ef_search=64, mutable_cap=400, threads=2))
    base = dict(ivf_min_train_vectors=200, ivf_clusters=64, ivf_nprobe=8, q8_refine_topk=64,
                exact_max_rows=64, hnsw=hn, fsync=False)
    base.update(kw)
    return VectorParams(**base)


class Model:
    """The reference: a dict of id -> (stored vector, meta), exact cosine with id tiebreak."""

    def __init__(self, metric: str = "cosine"):
        self.metric = metric
        self.items: dict[str, tuple[np.ndarray, bytes | None]] = {}

    def upsert(self, vid, vec, meta):
        v = np.asarray(vec, np.float32)
        if self.metric == "dot":
            n = np.linalg.norm(v)
            v = v / n if n else v
        self.items[vid] = (v.astype(np.float32), meta)

    def delete(self, vid):
        self.items.pop(vid, None)

    def search(self, q, k, predicate=None):
        q = np.asarray(q, np.float32)
        qn = np.linalg.norm(q)
        out = []
        for vid, (v, meta) in self.items.items():
            if predicate is not None:
                m = orjson.loads(meta) if meta is not None else None
                if meta is None or not predicate(m):
                    continue
            n = np.linalg.norm(v)
            s = float(np.dot(v, q) / (n * qn)) if n and qn else 0.0
            out.append((-s, vid))
        out.sort()
        return [(vid, -s) for s, vid in out[:k]]


def random_ops(rng: random.Random, n_ops: int, dim: int, ids: int, start_offset: int = 1):
    """Seeded upserts/deletes (deletes only of ids that exist), as (ops, model)."""
    ops = []
    present = set()
    off = start_offset
    for _ in range(n_ops):
        vid = f"id{rng.randrange(ids)}"
        if vid in present and rng.random() < 0.25:
            ops.append(Remove(off, vid))
            present.discard(vid)
        else:
            vec = np.array([rng.gauss(0, 1) for _ in range(dim)], np.float32)
            meta = orjson.dumps({"g": rng.randrange(5), "t": rng.choice(["a", "b", "c"]), "x": rng.random()},
                                option=orjson.OPT_SORT_KEYS) if rng.random() < 0.9 else None
            ops.append(Upsert(off, vid, vec, meta))
            present.add(vid)
        off += 1
    return ops


def model_of(ops, metric="cosine") -> Model:
    m = Model(metric)
    for op in ops:
        if isinstance(op, Upsert):
            m.upsert(op.id, op.vector, op.meta)
        else:
            m.delete(op.id)
    return m


def apply_all(c: Collection, ops, batch: int = 37) -> None:
    for i in range(0, len(ops), batch):
        part = ops[i:i + batch]
        c.apply(part, part[-1].offset)

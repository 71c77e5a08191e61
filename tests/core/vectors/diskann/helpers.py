"""Seeded data, an exact reference and a small-params index for the DiskANN tests."""

from __future__ import annotations

import os

import numpy as np

from kissvdb.vectors.diskann import DiskAnnIndex, DiskAnnParams

DIM = 32
# One build thread: usearch builds the same graph every run, so exact-answer tests cannot flake.
SMALL = DiskAnnParams(max_degree=16, build_threads=1, search_list_size=128)


def clustered(n: int, seed: int, dim: int = DIM, clusters: int = 25) -> np.ndarray:
    """Gaussian blobs around random centres (recall on pure noise means little)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def exact(ids: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    """Ids of the exact top k by cosine, ties by id."""
    s = unit(rows) @ unit(q)
    order = np.lexsort((ids, -s))[:k]
    return ids[order].tolist()


def open_index(root, params: DiskAnnParams = SMALL, dim: int = DIM) -> DiskAnnIndex:
    return DiskAnnIndex.open(os.fspath(root), dim, "cosine", params)


def entries(root) -> set[str]:
    return set(os.listdir(root))

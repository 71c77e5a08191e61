"""IVF_FLAT_Q8 in numpy: k-means lists over unit vectors, int8 codes, float32 re-scoring.

- Training: spherical k-means (dot-product assignment, normalised means) on a sample of at most
  IVF_TRAINING_SAMPLE live vectors, k-means++ seeding (D² sampling in rounds, so seeding
  thousands of lists costs a few matrix products), fixed seed, `iters` Lloyd steps. List count
  `lists_for(live)` = about 4·√live, capped by IVF_CLUSTERS (at least 2).
- Codes: per-vector Q8 of the unit vector (distance.q8_encode); they do not depend on the
  centroids, so a retrain only reassigns lists. A search Q8-encodes the query the same way and
  ranks the probed rows by the exact int8 dot (distance.q8_dots) times the row's scale; the
  best Q8_REFINE_TOPK are re-scored in float32, so the query's own rounding never reaches a
  returned score.
- Lists: CSR (rows sorted by list + bounds) over rows [0, csr_rows); rows appended after the
  last rebuild are found by checking their list number, and the CSR is rebuilt once that tail
  grows past a fraction of the collection.
Pure functions and a plain data holder: the collection decides when to train and owns locking.
"""

from __future__ import annotations

import math

import numpy as np

from kissvdb.vectors.distance import q8_dots, q8_encode

F32 = np.float32
ASSIGN_CHUNK = 8192
SCAN_CHUNK = 65536  # codes gathered per int8 scan call


def lists_for(live: int, cap: int) -> int:
    return int(max(2, min(cap, round(4 * math.sqrt(max(1, live))))))


def assign(units: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest centroid (max dot) of each unit row, int32; chunked to bound memory."""
    n = len(units)
    out = np.empty(n, dtype=np.int32)
    ct = np.ascontiguousarray(centroids.T)
    for s in range(0, n, ASSIGN_CHUNK):
        out[s:s + ASSIGN_CHUNK] = np.argmax(np.asarray(units[s:s + ASSIGN_CHUNK], F32) @ ct, axis=1)
    return out


def _normalise(c: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(c, axis=1, keepdims=True)
    n[n == 0] = 1
    return (c / n).astype(F32)


def kmeans(x: np.ndarray, nlist: int, *, iters: int = 15, seed: int = 0) -> np.ndarray:
    """Spherical k-means with k-means++ seeding; returns unit centroids (nlist x dim)."""
    x = np.asarray(x, dtype=F32)
    n = len(x)
    nlist = max(1, min(nlist, n))
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    best = x @ x[chosen[0]]
    rounds = max(1, nlist // 32)
    while len(chosen) < nlist:
        b = min(rounds, nlist - len(chosen))
        d2 = np.maximum(2.0 - 2.0 * best, 0.0).astype(np.float64)
        total = d2.sum()
        if total <= 0:
            picks = rng.choice(n, size=b, replace=False)
        else:
            nz = int(np.count_nonzero(d2))
            picks = rng.choice(n, size=min(b, nz), replace=False, p=d2 / total)
        chosen.extend(int(i) for i in picks)
        best = np.maximum(best, (x @ x[picks].T).max(axis=1))
    c = x[np.array(chosen[:nlist])].copy()
    for _ in range(iters):
        a = assign(x, c)
        counts = np.bincount(a, minlength=nlist)
        order = np.argsort(a, kind="stable")
        sums = np.zeros_like(c)
        nonempty = np.flatnonzero(counts)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[nonempty]
        sums[nonempty] = np.add.reduceat(x[order], starts, axis=0)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            # Re-seed empty lists with the points worst served by their centroid.
            sims = np.einsum("ij,ij->i", x, c[a])
            worst = np.argsort(sims)[: len(empty)]
            sums[empty[: len(worst)]] = x[worst]
        c = _normalise(sums)
    return c


class ListIndex:
    """CSR of rows by list over rows [0, csr_rows), with the rows' int8 codes and Q8 scales
    copied into list order: the codes of a list are one contiguous slice in memory (this copy is
    what an IVF_FLAT_Q8 collection keeps resident; float32 rows stay in memory-mapped files)."""

    __slots__ = ("order", "bounds", "csr_rows", "codes", "scales", "centroid_codes", "centroid_scales")

    def __init__(self, assignments: np.ndarray, centroids: np.ndarray, codes_of=None,
                 scales: np.ndarray | None = None):
        a = np.asarray(assignments)
        nlist = len(centroids)
        self.order = np.argsort(a, kind="stable").astype(np.int64)
        counts = np.bincount(a, minlength=nlist) if len(a) else np.zeros(nlist, np.int64)
        self.bounds = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self.csr_rows = len(a)
        self.codes = codes_of(self.order) if codes_of is not None else None
        self.scales = scales[self.order] if scales is not None else None
        # The coarse step ranks lists by Q8 too: a quarter of the bytes of float32 centroids
        # to read per query, and the lists it picks agree with float32's (>99% on real data).
        self.centroid_codes, self.centroid_scales = q8_encode(centroids)

    def nearest_lists(self, query_codes: np.ndarray) -> np.ndarray:
        """Approximate score of every list's centroid for a Q8 query (higher is nearer)."""
        return q8_dots(query_codes, self.centroid_codes) * self.centroid_scales

    def positions(self, lists: np.ndarray) -> np.ndarray:
        """Positions (in list order) of the CSR part of `lists`: each list is one contiguous run,
        so the positions are `arange` shifted per run, built without a Python loop."""
        lists = np.asarray(lists, dtype=np.int64)
        b0 = self.bounds[lists]
        lens = self.bounds[lists + 1] - b0
        total = int(lens.sum())
        if total == 0:
            return np.zeros(0, np.int64)
        return np.arange(total, dtype=np.int64) + np.repeat(b0 - (np.cumsum(lens) - lens), lens)

    def q8_scores(self, query_codes: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Approximate scores (int8 dot times the row's scale; the query's scale is common to
        all and left out) at list positions `pos`, scanned in bounded chunks so a wide probe
        never copies the whole code matrix at once."""
        if len(pos) <= SCAN_CHUNK:
            return q8_dots(query_codes, self.codes.take(pos, axis=0)) * self.scales.take(pos)
        out = np.empty(len(pos))
        for s in range(0, len(pos), SCAN_CHUNK):
            p = pos[s:s + SCAN_CHUNK]
            out[s:s + SCAN_CHUNK] = q8_dots(query_codes, self.codes.take(p, axis=0))
        return out * self.scales.take(pos)

    def tail_rows(self, lists: np.ndarray, assignments: np.ndarray, n: int) -> np.ndarray:
        """Rows appended since the CSR was built (< n) that belong to `lists`."""
        if n <= self.csr_rows:
            return np.zeros(0, np.int64)
        tail = assignments[self.csr_rows:n]
        return np.flatnonzero(np.isin(tail, lists)) + self.csr_rows

    def rows_in(self, lists: np.ndarray, assignments: np.ndarray, n: int) -> np.ndarray:
        """Rows (< n) assigned to any of `lists`."""
        b = self.bounds
        parts = [self.order[b[l]:b[l + 1]] for l in lists]
        parts.append(self.tail_rows(lists, assignments, n))
        rows = np.concatenate(parts)
        return rows[rows < n] if self.csr_rows > n else rows

"""Exact cosine ranking over an in-memory float32 matrix: the `/search` store's vector side for
the bench and the tests, and the reference any approximate ranker is checked against.

Scores are the original's: cosine similarity `dot / (|a| |b|)` in float32, 0 when a norm is 0;
ties by id ascending. A query whose length differs from the matrix's ranks nothing (the
original skips every stored vector of another length).
Never does: I/O, or keep more than the one unit-normalised copy of the rows.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


class ExactRanker:
    """Rows of one dimension, each with a u32 id; ranks by exact cosine."""

    def __init__(self, ids: Iterable[int], rows: np.ndarray):
        self.ids = np.asarray(list(ids), dtype=np.int64)
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim != 2 or len(rows) != len(self.ids):
            raise ValueError("rows must be a 2-d array with one row per id")
        norms = np.linalg.norm(rows, axis=1)
        self.rows = rows / np.where(norms == 0, 1, norms)[:, None].astype(np.float32)
        self.dim = rows.shape[1]

    def rank(self, query: np.ndarray, limit: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """The best `limit` (id, cosine) among `allowed` ids (None: all), best first."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if limit <= 0 or len(query) != self.dim or not len(self.ids):
            return []
        norm = float(np.linalg.norm(query))
        scores = self.rows @ (query / norm) if norm else np.zeros(len(self.ids), dtype=np.float32)
        ids = self.ids
        if allowed is not None:
            mask = np.isin(ids, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            ids, scores = ids[mask], scores[mask]
        order = np.lexsort((ids, -scores))[:limit]
        return [(int(i), float(s)) for i, s in zip(ids[order], scores[order].astype(np.float32))]

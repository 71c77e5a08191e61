"""Searching one opened build under a delete mask and a filter, keeping min(k, matches).

The graph gives RERANK x k candidates, re-ranked exactly from the float32 rows. Masked positions
(rows deleted or replaced since the build) and rows the filter refuses are dropped; when too few
remain the request widens (4x the candidates each round, up to a quarter of the graph), and when
even that leaves fewer than k, an exact scan over every position settles it: a filter or a mask
can make a search slower, never shorter than min(k, matches). An allowed-id set small enough is
scored exactly from the start, which beats widening a graph search towards it.
"""

from __future__ import annotations

import numpy as np

from kissvdb.vectors.diskann.graph import Graph
from kissvdb.vectors.diskann.params import RERANK

F32 = np.float32
WIDEN = 4
WIDEN_SHARE = 4  # widen up to 1/WIDEN_SHARE of the graph, then scan exactly
SCAN_CHUNK = 65536
EXACT_ALLOWED_MAX = 4096  # an allowed set up to this size is scored exactly
EXACT_ALLOWED_SHARE = 64  # ... or up to 1/64 of the graph


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best k by score descending, ties by id ascending."""
    if len(ids) > k:
        cut = np.partition(-scores, k - 1)[k - 1]
        sel = np.flatnonzero(-scores <= cut)  # every row tied at the cut, so ids settle ties
        ids, scores = ids[sel], scores[sel]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def search_graph(graph: Graph, masked: np.ndarray, q: np.ndarray, k: int, accept=None,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, scores) of up to k best unmasked, accepted rows of `graph`."""
    n = graph.rows_n
    if n == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, F32)
    if allowed is not None and len(allowed) <= max(EXACT_ALLOWED_MAX, n // EXACT_ALLOWED_SHARE):
        pos = graph.positions_of(allowed)
        pos = pos[pos >= 0]
        pos = pos[~masked[pos]]
        if accept is not None and len(pos):
            pos = pos[accept(np.asarray(graph.ids[pos]))]
        return top_k(np.asarray(graph.ids[pos]), graph.scores(pos, q), k)
    if allowed is not None:
        accept = _within(allowed, accept)
    want = RERANK * k
    count = min(want, n)
    limit = max(want, n // WIDEN_SHARE)
    while True:
        pos = graph.candidates(q, count)
        got = pos[~masked[pos]]
        if accept is not None and len(got):
            got = got[accept(np.asarray(graph.ids[got]))]
        if len(got) >= want or count >= n or count >= limit:
            break
        count = min(n, count * WIDEN)
    if len(got) < k and len(pos) < n:
        return scan_graph(graph, masked, q, k, accept)
    return top_k(np.asarray(graph.ids[got]), graph.scores(got, q), k)


def _within(allowed: np.ndarray, accept):
    """A predicate: the id is in `allowed` (sorted) and `accept` (if any) takes it."""
    def check(ids: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(allowed, ids), len(allowed) - 1)
        ok = allowed[at] == ids
        return ok & accept(ids) if accept is not None else ok
    return check


def scan_graph(graph: Graph, masked: np.ndarray, q: np.ndarray, k: int, accept=None):
    """Exact top k over every unmasked, accepted position, a chunk of the rows file at a time."""
    best_ids, best_scores = np.zeros(0, np.int64), np.zeros(0, F32)
    for lo in range(0, graph.rows_n, SCAN_CHUNK):
        hi = min(graph.rows_n, lo + SCAN_CHUNK)
        live = ~masked[lo:hi]
        if accept is not None:
            live &= accept(np.asarray(graph.ids[lo:hi]))
        pos = lo + np.flatnonzero(live)
        if len(pos) == 0:
            continue
        ids = np.concatenate([best_ids, np.asarray(graph.ids[pos])])
        scores = np.concatenate([best_scores, np.clip(np.asarray(graph.rows[pos]) @ q, -1, 1)])
        best_ids, best_scores = top_k(ids, scores.astype(F32, copy=False), k)
    return best_ids, best_scores


def search_segment(view, q: np.ndarray, k: int, accept=None, allowed: np.ndarray | None = None):
    """Exact top k over the mutable segment's live rows (`MutableSegment.view()`)."""
    ids, rows, live = view
    if accept is not None and len(ids):
        live = live & accept(ids)
    if allowed is not None and len(ids):
        live = live & np.isin(ids, allowed)
    sel = np.flatnonzero(live)
    if len(sel) == 0:
        return np.zeros(0, np.int64), np.zeros(0, F32)
    scores = np.clip(rows[sel] @ q, -1, 1).astype(F32, copy=False)
    return top_k(ids[sel].copy(), scores, k)

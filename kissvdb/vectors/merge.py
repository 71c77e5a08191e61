"""HNSW segment merging: which sealed segments to merge, the merge itself, and installing it.

Separate from collection.py because it is its own background job: `merge_due` picks a full
size tier (HNSW_MERGE_FANIN segments of one size) or every segment, `merge_segments` builds one
sealed segment from their live rows without any lock, and `install_merge` swaps it in under
the collection's write lock and checkpoints. Each function takes the collection; `Collection`
keeps thin methods of the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kissvdb.vectors.distance import unit_rows
from kissvdb.vectors.hnsw import Segment, build_segment, new_index

if TYPE_CHECKING:
    from kissvdb.vectors.collection import Collection, View

HNSW_MERGE_FANIN = 4  # sealed segments of one size tier merged together


def merge_due(col: Collection, *, all_segments: bool = False) -> tuple | None:
    """Sealed segments to merge: a full size tier (HNSW_MERGE_FANIN of them), or all."""
    if col.hnsw is None:
        return None
    sealed = col.hnsw.sealed
    if len(sealed) < 2:
        return None
    if all_segments:
        return sealed
    cap = col.p.hnsw.mutable_cap
    tiers: dict[int, list] = {}
    for s in sealed:
        t = int(np.log(max(1, s.count) / cap) / np.log(HNSW_MERGE_FANIN) + 1e-9) if s.count >= cap else 0
        tiers.setdefault(t, []).append(s)
    for t in sorted(tiers):
        if len(tiers[t]) >= HNSW_MERGE_FANIN:
            return tuple(tiers[t])
    return None


def merge_segments(col: Collection, segments: tuple) -> Segment:
    """Build one sealed segment from the live vectors of `segments` (no lock; heavy)."""
    v = col.view
    labels = np.concatenate([np.asarray(s.index.get_ids_list(), dtype=np.int64) for s in segments])
    rows, ok = _rows_of_labels(v, labels)
    rows = rows[ok]
    rows = rows[v.cols["live"][rows] == 1]
    rows.sort()
    units = unit_rows(col._rows_f32(v, rows), v.cols["norm"][rows])
    seg = build_segment(col.dim, v.cols["vno"][rows].copy(), units, col.p.hnsw)
    return seg


def install_merge(col: Collection, old: tuple, merged: Segment) -> None:
    with col._write_lock:
        col._save_sealed(merged)
        col.hnsw.replace(old, merged)
        col.dirty = col.data_dirty = True
        col._publish()
    col.checkpoint(force=True)


def optimize(col: Collection) -> None:
    """Merge every sealed HNSW segment into one (the mutable one is sealed first)."""
    if col.hnsw is None:
        return
    seal_mutable(col)
    segs = merge_due(col, all_segments=True)
    if segs:
        install_merge(col, segs, merge_segments(col, segs))


def seal_mutable(col: Collection) -> None:
    """Seal the mutable HNSW segment now (saved once), so a merge can take it."""
    with col._write_lock:
        mut = col.hnsw.mutable
        if mut.count:
            sealed = Segment(mut.index, None, sealed=True)
            col.hnsw.sealed = col.hnsw.sealed + (sealed,)
            col.hnsw.mutable = Segment(new_index(col.dim, col.p.hnsw.mutable_cap, col.p.hnsw), None,
                                        sealed=False)
            col.hnsw.mutable_dirty = True
            col._save_sealed(sealed)
            col._publish()


def _rows_of_labels(v: View, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vno = v.cols["vno"][: v.n]
    rows = np.searchsorted(vno, labels)
    inb = rows < v.n
    rows_c = np.where(inb, rows, 0)
    ok = inb & (vno[rows_c] == labels) if v.n else np.zeros(len(labels), bool)
    return rows_c, ok

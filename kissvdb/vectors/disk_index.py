"""A DISKANN collection's side of its DiskAnnIndex (kissvdb/vectors/diskann/): open and reconcile
it at boot, feed it each applied batch, snapshot its builds, search it under the collection's
filters.

Why a module of its own: collection.py is about run files, the row table and HNSW/IVF; this is
the glue between a collection's rows and the disk index. The index's row ids are the rows' vnos:
a new one for every upsert, never reused, and kept by compaction (which renumbers table rows, not
vnos), so compaction needs no `remap` and a graph's ids stay right across it.

Boot: `open` maps the serving build but does not feed it the WAL tail the collection replays;
once the replay is done the owner calls `reconcile` (the actor does, in a worker thread, before its
first maintenance), which masks graph rows no longer live and puts live rows the graph lacks into
the index's mutable segment, from the final live set. Reconciling before the replay would mask
every graph row written after the last checkpoint and serve them all from the segment. Until it
is reconciled the index serves nothing (searches scan exactly).

The index is fed writes only while it serves a graph or a build is running: before the first
build a DISKANN collection is served by the exact scan (search.py) and keeps no second copy of
its rows. Files live in `<collection dir>/diskann/` (the index's own layout, files.py there);
a collection drop removes the directory with them, a checkpoint has nothing to do with them.

Never imports trio: the actor (actors/vectors.py) runs builds in a worker thread.
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np

from kissvdb.vectors.diskann import BuildRunning, CorruptIndex, DiskAnnIndex, DiskAnnParams
from kissvdb.vectors.distance import top_rows

log = logging.getLogger("kissvdb.vectors.diskann")
DIR = "diskann"


class RowSource:
    """The float32 rows of a build's snapshot: `rows` (table rows) of one published View. A
    View's row files are never rewritten while mapped, so the snapshot holds even if a
    compaction swaps the collection's runs during the build."""

    def __init__(self, coll, view, rows: np.ndarray):
        self.c, self.v, self.rows = coll, view, rows

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), self.c.dim)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return self.c._rows_f32(self.v, self.rows[sl])


class DiskIndex:
    """One DISKANN collection's index, as the collection and its actor use it."""

    def __init__(self, coll, index: DiskAnnIndex, rebuild_share: float):
        self.c = coll
        self.index = index
        self.rebuild_share = rebuild_share
        self.rebuild_wanted = False  # a damaged build was dropped at open: build again
        self.pending = index.graph is not None  # a mapped build not reconciled yet: not serving

    @classmethod
    def open(cls, coll, defaults: DiskAnnParams, rebuild_share: float) -> "DiskIndex":
        """Open `<dir>/diskann` once the collection's table is loaded; `reconcile` after the WAL
        tail is replayed. A damaged build is logged and dropped: the collection is served exactly
        and a rebuild is due."""
        root = os.path.join(coll.dir, DIR)
        corrupt = False
        try:
            index = DiskAnnIndex.open(root, coll.dim, coll.metric, defaults)
        except CorruptIndex as exc:
            log.warning("%s: DiskANN index unusable (%s): dropped, served exactly until rebuilt", coll.name, exc)
            shutil.rmtree(root, ignore_errors=True)
            index = DiskAnnIndex.open(root, coll.dim, coll.metric, defaults)
            corrupt = True
        d = cls(coll, index, rebuild_share)
        d.rebuild_wanted = corrupt
        return d

    def reconcile(self) -> None:
        """Serve the mapped build: mask its rows that are no longer live, index the live rows it
        lacks (under the write lock, so no apply slips between). A no-op once done."""
        if not self.pending:
            return
        coll, index = self.c, self.index
        with coll._write_lock:
            v = coll.view
            live_rows = np.flatnonzero(v.cols["live"][: v.n]).astype(np.int64)
            vno = v.cols["vno"][: v.n]
            got = index.reconcile(vno[live_rows], lambda ids: coll._rows_f32(v, np.searchsorted(vno, ids)))
            self.pending = False
        log.info("%s: DiskANN build of %d rows serving (%d masked, %d unindexed)", coll.name,
                 index.graph.rows_n, got["masked"], got["unindexed"])

    def close(self) -> None:
        self.index.close()

    # ---- writes (under the collection's write lock) ----------------------------------------

    def applied(self, vnos: np.ndarray | None, units: np.ndarray | None, dead_vnos: np.ndarray) -> None:
        """One applied batch: new rows (vnos, unit vectors), then rows it replaced or deleted."""
        idx = self.index
        if self.pending or (idx.graph is None and not idx.building):
            return
        if vnos is not None and len(vnos):
            idx.upsert_many(vnos, units)
        if len(dead_vnos):
            idx.delete_many(dead_vnos)

    def begin_build(self, given: dict | None):
        """The build's snapshot: the live rows of the published view, taken under the collection's
        write lock so that every later write reaches the index's journal. Raises BuildRunning."""
        self.reconcile()
        with self.c._write_lock:
            v = self.c.view
            rows = np.flatnonzero(v.cols["live"][: v.n].copy()).astype(np.int64)
            vnos = np.asarray(v.cols["vno"][: v.n])[rows]
            job = self.index.begin_build(vnos, RowSource(self.c, v, rows), given)
            self.rebuild_wanted = False
            return job

    def rebuild_due(self) -> bool:
        """A rebuild should start by itself: the serving graph is stale past the share, or a
        damaged one was dropped at open."""
        idx = self.index
        if idx.building or self.pending:
            return False
        if self.rebuild_wanted:
            return True
        return idx.graph is not None and idx.stale_share() > self.rebuild_share

    # ---- reads -----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.index.graph is not None and not self.pending

    def status(self) -> dict:
        """The index's status; `available` only once the mapped build serves (reconciled)."""
        st = self.index.status()
        if self.pending:
            st["available"] = False
        return st

    def ranked(self, v, q: np.ndarray, k: int, mask: np.ndarray, id_of) -> list | None:
        """[(row, score)] of the best k rows of `v` passing `mask`, from the graph and the mutable
        segment; None when no graph serves (the caller scans exactly)."""
        if self.index.graph is None or self.pending:
            return None
        vno = v.cols["vno"][: v.n]
        n = v.n

        def accept(ids: np.ndarray) -> np.ndarray:
            rows = np.searchsorted(vno, ids)
            ok = rows < n
            rows_c = np.where(ok, rows, 0)
            ok &= vno[rows_c] == ids
            ok &= mask[rows_c]
            return ok

        ids, scores = self.index.search(q, k, accept=accept)
        if len(ids) == 0:
            return []
        rows = np.searchsorted(vno, ids)
        return top_rows(np.minimum(scores, np.float32(1)), rows, k, id_of)


def idle_status(params: DiskAnnParams) -> dict:
    """The status of a collection with no disk index (another index kind): nothing built."""
    return {"available": False, "building": False, "progress": None, "last_built_ms": 0, "graph_files": [],
            "params": params.clamped().as_dict(), "rows": 0, "masked_rows": 0, "unindexed_rows": 0,
            "stale_share": 0.0}


__all__ = ["BuildRunning", "DiskIndex", "RowSource", "idle_status"]

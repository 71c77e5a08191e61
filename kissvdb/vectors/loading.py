"""Opening a collection from its directory: the manifest's runs, table, centroids and segments.

Separate from collection.py because it runs once per open and reads the directory as the last
checkpoint or compaction left it: first the orphans of an interrupted one are removed, then the
run files the manifest names are mapped (only the last one writable), the table loaded and the
live ids rebuilt, and the IVF centroids and HNSW segments loaded. Each function takes the
collection; `Collection.open` calls `load`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from kissvdb.fsutil import unlink_quiet
from kissvdb.vectors import manifest as manifest_mod
from kissvdb.vectors import runs as runs_mod
from kissvdb.vectors.distance import F32
from kissvdb.vectors.hnsw import HnswIndex, Segment, load_index
from kissvdb.vectors.runs import Run
from kissvdb.vectors.table import UNPARSED, Table

if TYPE_CHECKING:
    from kissvdb.vectors.collection import Collection


def load(col: Collection, m: dict) -> None:
    """Fill a freshly constructed collection from manifest `m` and publish its first view."""
    col.applied_offset = col.checkpointed_offset = m["applied_offset"]
    col.next_vno = m["next_vno"]
    col.next_run_id = m["next_run_id"]
    col.seq = m["seq"]
    col.upsert_count = m.get("upsert_count", 0)
    remove_orphans(col, m)
    start = load_runs(col, m["runs"])
    col.table_file = m["table"]
    col.table = Table.load(os.path.join(col.dir, col.table_file), start)
    live = col.table.col("live")[: col.table.n]
    ids = col.table.ids
    col.slot = {ids[r]: r for r in np.flatnonzero(live).tolist()}
    col.live_count = len(col.slot)
    col.parsed = [UNPARSED] * col.table.n
    ivf = m.get("ivf") or {}
    if ivf.get("centroids"):
        col.centroids_file = ivf["centroids"]
        col.centroids = np.load(os.path.join(col.dir, col.centroids_file), allow_pickle=False).astype(F32)
        col.trained_at_ms = ivf.get("trained_at_ms", 0)
        col.trained_upserts = ivf.get("trained_upserts", 0)
        col._publish()
        col.lists = col._list_index(col.table.col("lst")[: col.table.n])
    if col.kind == "HNSW":
        load_hnsw(col, m.get("hnsw") or {})
    col._publish()
    col._open_disk()


def load_runs(col: Collection, entries: list) -> int:
    """Map the manifest's run files (only the last one writable); return the total row count."""
    rundir = os.path.join(col.dir, "runs")
    start = 0
    for i, e in enumerate(entries):
        active = i == len(entries) - 1
        rid = e["id"]
        log_ = runs_mod.RunLog(os.path.join(rundir, runs_mod.run_name(rid, "log")), e["bytes"], writable=active)
        f32 = runs_mod.RowFile(os.path.join(rundir, runs_mod.run_name(rid, "f32")), F32, col.dim, e["rows"],
                               writable=active)
        q8 = None
        if col.kind == "IVF_FLAT_Q8":
            q8 = runs_mod.RowFile(os.path.join(rundir, runs_mod.run_name(rid, "q8")), np.int8, col.dim,
                                  e["rows"], writable=active)
        col.runs.append(Run(rid, log_, f32, q8, e["records"], e["tombstones"], start))
        start += e["rows"]
    return start


def load_hnsw(col: Collection, h: dict) -> None:
    """The sealed segments and the mutable one the manifest's `hnsw` entry names."""
    hp = col.p.hnsw
    sealed = [Segment(load_index(os.path.join(col.dir, f), col.dim, hp), f, sealed=True)
              for f in h.get("sealed", [])]
    mutable = None
    if h.get("mutable"):
        idx = load_index(os.path.join(col.dir, h["mutable"]), col.dim, hp, capacity=hp.mutable_cap)
        mutable = Segment(idx, h["mutable"], sealed=False)
    col.hnsw = HnswIndex(col.dim, hp, sealed, mutable)
    col.hnsw.mutable_dirty = False


def remove_orphans(col: Collection, m: dict) -> None:
    """Delete files no manifest names: leftovers of an interrupted checkpoint or compaction."""
    keep = {manifest_mod.MANIFEST, m["table"], "runs", "diskann"}
    keep.update((m.get("hnsw") or {}).get("sealed", []))
    if (m.get("hnsw") or {}).get("mutable"):
        keep.add(m["hnsw"]["mutable"])
    if (m.get("ivf") or {}).get("centroids"):
        keep.add(m["ivf"]["centroids"])
    for f in os.listdir(col.dir):
        if f not in keep:
            unlink_quiet(os.path.join(col.dir, f))
    run_ids = {e["id"] for e in m["runs"]}
    rundir = os.path.join(col.dir, "runs")
    for f in os.listdir(rundir):
        parts = f.split(".")
        if not (f.startswith("run-") and len(parts) == 2 and parts[0][4:].isdigit()
                and int(parts[0][4:]) in run_ids):
            unlink_quiet(os.path.join(rundir, f))

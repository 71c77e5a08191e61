"""Checkpointing a collection: run files synced, table and index files written, manifest moved.

Separate from collection.py because it is the one place that decides what a crash leaves
behind: files are written under new names and fsynced, then manifest.json (the commit point)
names them, then the files it no longer names are unlinked. `manifest_doc` is the manifest's
whole content and `referenced_files` what it names besides the runs. Each function takes the
collection; `Collection` keeps thin methods (`checkpoint`, `_save_sealed`).
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import numpy as np

from kissvdb.fsutil import atomic_write, fsync_dir, unlink_quiet
from kissvdb.vectors import manifest as manifest_mod
from kissvdb.vectors.hnsw import Segment, save_segment

if TYPE_CHECKING:
    from kissvdb.vectors.collection import Collection


def checkpoint(col: Collection, *, force: bool = False) -> int:
    """Make everything applied durable and move manifest.json to it; return the offset.

    Order: run files fsynced, then the table, index files and centroids written (new names)
    and fsynced, then the manifest (the commit point), then superseded files unlinked.
    """
    with col._write_lock:
        if not col.dirty and not force:
            return col.checkpointed_offset
        if not col.data_dirty and col.table_file is not None and not force:
            # Only the offset moved (an idle collection follows the WAL): manifest only.
            manifest_mod.save(col.dir, manifest_doc(col), fsync=col.p.fsync)
            col.checkpointed_offset = col.applied_offset
            col.dirty = False
            return col.checkpointed_offset
        col._sync_run(col.runs[-1])
        col.seq += 1
        old = referenced_files(col)
        col.table_file = f"table-{col.seq:06d}.npz"
        col.table.save(os.path.join(col.dir, col.table_file), fsync=col.p.fsync)
        if col.hnsw is not None:
            save_hnsw(col)
        if col.centroids is not None and col.centroids_file is None:
            col.centroids_file = f"ivf-{col.seq:06d}.npy"
            save_npy(os.path.join(col.dir, col.centroids_file), col.centroids, fsync=col.p.fsync)
        if col.p.fsync:
            fsync_dir(col.dir)
            fsync_dir(os.path.join(col.dir, "runs"))
        manifest_mod.save(col.dir, manifest_doc(col), fsync=col.p.fsync)
        col.checkpointed_offset = col.applied_offset
        col.dirty = col.data_dirty = False
        for f in old - referenced_files(col):
            unlink_quiet(os.path.join(col.dir, f))
        return col.checkpointed_offset


def save_hnsw(col: Collection) -> None:
    """Save the sealed segments not yet on disk and the mutable one if it changed."""
    for seg in col.hnsw.sealed:
        if seg.file is None:
            save_sealed(col, seg)
    mut = col.hnsw.mutable
    if col.hnsw.mutable_dirty or (mut.file is None and mut.count):
        mut.lock.acquire_read()
        try:
            save_segment(mut, col.dir, f"hnsw-mutable-{col.seq:06d}.bin", fsync=col.p.fsync)
        finally:
            mut.lock.release_read()
        col.hnsw.mutable_dirty = False


def save_sealed(col: Collection, seg: Segment) -> None:
    col.seq += 1
    save_segment(seg, col.dir, f"hnsw-sealed-{col.seq:06d}.bin", fsync=col.p.fsync)


def referenced_files(col: Collection) -> set[str]:
    out = set()
    if col.table_file:
        out.add(col.table_file)
    if col.hnsw is not None:
        out.update(s.file for s in col.hnsw.sealed if s.file)
        if col.hnsw.mutable.file:
            out.add(col.hnsw.mutable.file)
    if col.centroids_file:
        out.add(col.centroids_file)
    return out


def manifest_doc(col: Collection) -> dict:
    p = col.p
    doc = {
        "collection": col.name, "dim": col.dim, "metric": col.metric, "index": col.kind,
        "created_at_ms": col.created["created_at_ms"], "created_offset": col.created["created_offset"],
        "applied_offset": col.applied_offset, "next_vno": col.next_vno, "next_run_id": col.next_run_id,
        "seq": col.seq, "table": col.table_file, "upsert_count": col.upsert_count,
        "runs": [r.entry() for r in col.runs],
        "total_records": sum(r.records for r in col.runs), "live_count": col.live_count,
        "file_len": sum(r.bytes for r in col.runs),
        "run_target_bytes": p.run_target_bytes, "run_retention": p.run_retention,
        "compaction_trigger_tombstone_ratio": p.compaction_trigger_tombstone_ratio,
        "compaction_max_bytes_per_pass": p.compaction_max_bytes_per_pass,
        "ivf_clusters": p.ivf_clusters, "ivf_nprobe": p.ivf_nprobe, "q8_refine_topk": p.q8_refine_topk,
        "ivf_min_train_vectors": p.ivf_min_train_vectors, "ivf_retrain_min_deltas": p.ivf_retrain_min_deltas,
        "ivf": {"centroids": col.centroids_file, "centroid_count": 0 if col.centroids is None else len(col.centroids),
                "trained_at_ms": col.trained_at_ms, "trained_upserts": col.trained_upserts},
        "disk_index": {"kind": None, "version": 0, "last_built_ms": 0, "graph_files": [], "build_params": None},
    }
    if col.hnsw is not None:
        hp = col.p.hnsw
        doc["hnsw"] = {"sealed": [s.file for s in col.hnsw.sealed], "mutable": col.hnsw.mutable.file,
                       "m": hp.m, "ef_construction": hp.ef_construction, "ef_search": hp.ef_search,
                       "mutable_cap": hp.mutable_cap}
    return doc


def save_npy(path: str, arr: np.ndarray, *, fsync: bool) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write(path, buf.getvalue(), fsync=fsync)

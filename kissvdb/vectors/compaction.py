"""Compaction of a collection's run files: choose runs, rewrite their live rows, swap them in.

Separate from collection.py because it is its own background job with three phases:
`prepare_compaction` chooses the oldest runs within a byte budget under the collection's write
lock (sealing the active run if it is among them), `run_compaction` writes their live rows into
one new run without any lock (rows below the view never change but for their live flag), and
`install_compaction` swaps the new run in, renumbers rows, checkpoints and unlinks the old files.
`vacuum` (offline `kissvdb vacuum`) and `compact` drive the three in a loop or once. Each
function takes the collection; `Collection` keeps thin methods of the same names.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from kissvdb.fsutil import fsync_dir, unlink_quiet
from kissvdb.vectors import runs as runs_mod
from kissvdb.vectors.distance import F32
from kissvdb.vectors.runs import Run
from kissvdb.vectors.table import Table

if TYPE_CHECKING:
    from kissvdb.vectors.collection import Collection


def compaction_due(col: Collection) -> bool:
    total = sum(r.records for r in col.runs)
    if total == 0:
        return False
    if len(col.runs) > col.p.run_retention:
        return True
    dead = total - col.live_count
    return dead > 0 and dead / total >= col.p.compaction_trigger_tombstone_ratio


def prepare_compaction(col: Collection, *, force: bool = False, budget: int | None = None):
    """Choose the oldest runs within the byte budget; seal the active run if it is among them."""
    with col._write_lock:
        if not force and not compaction_due(col):
            return None
        if len(col.runs) == 1 and col.runs[0].records == 0:
            return None
        budget = col.p.compaction_max_bytes_per_pass if budget is None else budget
        live = col.table.col("live")

        def dead_in(r) -> int:
            return r.records - int(live[r.start:r.start + r.rows].sum())

        # Leading runs with nothing dead are skipped: every record in them is live, so no
        # later tombstone refers to them and the window's tombstones can be dropped.
        first = 0
        if any(dead_in(r) for r in col.runs):
            while first < len(col.runs) - 1 and dead_in(col.runs[first]) == 0:
                first += 1
        chosen = []
        used = 0
        for r in col.runs[first:]:
            if r is col.runs[-1] and r.records == 0:
                break  # the empty active run: nothing to rewrite
            if chosen and used + r.bytes > budget:
                break
            chosen.append(r)
            used += r.bytes
        if not chosen:
            return None
        dead = sum(dead_in(r) for r in chosen)
        if dead == 0 and len(chosen) == 1 and chosen[0].records and len(col.runs) <= col.p.run_retention:
            return None  # one run with nothing dead: rewriting it would gain nothing
        if chosen[-1] is col.runs[-1]:
            col._rotate()
            col._publish()
        col.data_dirty = True
        begin = chosen[0].start
        end = chosen[-1].start + chosen[-1].rows
        rid = col.next_run_id
        col.next_run_id += 1
        col.dirty = True
        return {"view": col.view, "runs": tuple(chosen), "first": first, "begin": begin, "end": end,
                "run_id": rid, "gen": col.gen}


def run_compaction(col: Collection, prep) -> dict:
    """Write the live rows of the chosen runs into a new run (no lock; reads immutable rows)."""
    v = prep["view"]
    begin, end = prep["begin"], prep["end"]
    # A copy first: the applier clears live flags meanwhile (never sets one in this window),
    # and numpy refuses to count nonzeros of an array that changes under it.
    rows = (np.flatnonzero(v.cols["live"][begin:end].copy()) + begin).astype(np.int64)
    rundir = os.path.join(col.dir, "runs")
    rid = prep["run_id"]
    paths = {ext: os.path.join(rundir, runs_mod.run_name(rid, ext)) for ext in ("log", "f32", "q8")}
    f32 = runs_mod.RowFile(paths["f32"], F32, col.dim, 0, writable=True)
    q8 = runs_mod.RowFile(paths["q8"], np.int8, col.dim, 0, writable=True) if col.kind == "IVF_FLAT_Q8" else None
    log_ = runs_mod.RunLog(paths["log"], 0, writable=True)
    chunk = 16384
    t = v.table
    for s in range(0, len(rows), chunk):
        part = rows[s:s + chunk]
        data = col._rows_f32(v, part)
        local0 = f32.append(data)
        if q8 is not None:
            q8.append(col._rows_q8(v, part))
        recs = []
        for j, r in enumerate(part.tolist()):
            recs.append(runs_mod.encode_record(runs_mod.Record(
                runs_mod.OP_UPSERT, int(v.cols["off"][r]), int(v.cols["vno"][r]), t.ids[r], local0 + j,
                runs_mod.zlib.crc32(data[j].tobytes()), t.metas[r])))
        log_.append(recs)
        log_.flush()
    if col.p.fsync:
        log_.sync()
        f32.sync()
        if q8 is not None:
            q8.sync()
    return {"rows": rows, "log": log_, "f32": f32, "q8": q8}


def install_compaction(col: Collection, prep, result) -> None:
    """Swap the new run in for the chosen ones, renumber rows, checkpoint, unlink old files."""
    with col._write_lock:
        if prep["gen"] != col.gen:
            raise RuntimeError("concurrent compactions")
        old_runs = prep["runs"]
        first = prep["first"]
        assert col.runs[first:first + len(old_runs)] == list(old_runs)
        begin, end = prep["begin"], prep["end"]
        rows = result["rows"]
        t = col.table
        n = t.n
        keep = np.concatenate([np.arange(0, begin, dtype=np.int64), rows, np.arange(end, n, dtype=np.int64)])
        cols = {name: t.cols[name][keep] for name in t.cols}
        ids = [t.ids[r] for r in keep.tolist()]
        metas = [t.metas[r] for r in keep.tolist()]
        parsed = [col.parsed[r] for r in keep.tolist()]
        new_table = Table.from_columns(cols, ids, metas)
        live = new_table.col("live")
        slot = {ids[r]: r for r in np.flatnonzero(live[: new_table.n]).tolist()}
        new_run = Run(prep["run_id"], result["log"], result["f32"], result["q8"], len(rows), 0, 0)
        new_run.log.close()
        new_run.log.writable = False
        col.runs = col.runs[:first] + [new_run] + col.runs[first + len(old_runs):]
        start = 0
        for r in col.runs:
            r.start = start
            start += r.rows
        col.table = new_table
        col.slot = slot
        col.parsed = parsed
        col.live_count = len(slot)
        col.gen += 1
        col._publish()
        if col.centroids is not None:
            col.lists = col._list_index(new_table.col("lst")[: new_table.n])
        col._publish()
        col.dirty = col.data_dirty = True
        col.checkpoint(force=True)
        rundir = os.path.join(col.dir, "runs")
        for r in old_runs:
            r.log.close()
            r.f32.close()
            if r.q8 is not None:
                r.q8.close()
            for ext in ("log", "f32", "q8"):
                unlink_quiet(os.path.join(rundir, runs_mod.run_name(r.id, ext)))
        if col.p.fsync:
            fsync_dir(rundir)


def vacuum(col: Collection, progress=None, max_passes: int = 10_000) -> int:
    """Rewrite every run until no dead record is left (offline `kissvdb vacuum`); return passes."""
    total = max(1, sum(r.bytes for r in col.runs))
    done = 0
    passes = 0
    while passes < max_passes:
        prep = prepare_compaction(col, force=True, budget=1 << 62)  # offline: no pass limit
        if prep is None:
            break
        done += sum(r.bytes for r in prep["runs"])
        install_compaction(col, prep, run_compaction(col, prep))
        passes += 1
        if progress is not None:
            progress(min(done, total), total)
        info = col.info()
        if info["deleted_count"] == 0 and len([r for r in col.runs if r.records]) <= 1:
            break
    col.checkpoint(force=True)
    if progress is not None:
        progress(total, total)
    return passes


def compact(col: Collection, *, force: bool = False) -> bool:
    """One compaction pass, synchronously (tests, vacuum). True if it rewrote anything."""
    prep = prepare_compaction(col, force=force)
    if prep is None:
        return False
    install_compaction(col, prep, run_compaction(col, prep))
    return True

"""One vector collection on disk and in memory: apply durable events, search, checkpoint.

The background jobs that rework a collection live in their own modules and take it as their
first argument (Collection keeps thin methods of the same names): IVF training (training.py),
HNSW segment merging (merge.py), compaction of the run files (compaction.py). So do opening a
collection from its manifest (loading.py), checkpointing it (checkpoint.py) and reading a
published view's rows and metas (rows.py).

Owns the collection directory (layout in runs.py / manifest.py):
```
manifest.json                 commit point of checkpoints and compactions
runs/run-NNNNNN.{log,f32,q8}  append-only records, float32 rows (mmapped), int8 codes (mmapped)
table-NNNNNN.npz              per-row table at the last checkpoint (table.py)
hnsw-*.bin                    hnswlib segments: sealed ones saved once, the mutable one per checkpoint
ivf-NNNNNN.npy                IVF centroids (unit rows)
diskann/                      DISKANN collections: the disk index (disk_index.py, diskann/files.py)
```

Threads: exactly one writer at a time (`apply`, `checkpoint`, the install half of training and
compaction all take `_write_lock`); searches and gets never take it. A reader reads `self.view`
once and works on that snapshot: rows below `view.n` are fully written and never change
except their `live` flag. Everything applied is durable (the actor applies only after the WAL
fsync), so whatever state a reader sees, it is never a dirty read.

Crash safety: the manifest names only complete, fsynced files; anything else in the directory
is an orphan of an interrupted checkpoint or compaction and is removed at open. The float32
and code files are never truncated or rewritten while mapped: compaction writes new runs and
swaps them in, and the old files are unlinked (their mappings stay valid until dropped).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kissvdb.config import Settings
from kissvdb.errors import Corruption
from kissvdb.vectors import manifest as manifest_mod
from kissvdb.vectors import checkpoint as checkpoint_mod
from kissvdb.vectors import compaction, loading, merge, training
from kissvdb.vectors import runs as runs_mod
from kissvdb.vectors.distance import F32, norms_of, q8_encode, top_rows, unit, unit_rows
from kissvdb.fsutil import fsync_dir
from kissvdb.vectors.hnsw import HnswIndex, HnswParams, Segment
from kissvdb.vectors.ivf_q8 import ListIndex, assign
from kissvdb.vectors.diskann.params import DiskAnnParams
from kissvdb.vectors.disk_index import DiskIndex
from kissvdb.vectors.metaindex import MetaIndex
from kissvdb.vectors.search import Searcher
from kissvdb.vectors import rows as rows_mod
from kissvdb.vectors.rows import GROUP_KEY_FIELDS_MAX, PARSED_META_KEEP_BYTES  # noqa: F401 (tests import them here)
from kissvdb.vectors.runs import Run
from kissvdb.vectors.table import UNPARSED as _UNPARSED
from kissvdb.vectors.table import Table

log = logging.getLogger("kissvdb.vectors")

INDEX_KINDS = ("HNSW", "IVF_FLAT_Q8", "FLAT", "DISKANN")


_DEFAULTS = Settings()


@dataclass(frozen=True, slots=True)
class VectorParams:
    """Settings a collection runs with (copied into manifest.json at each checkpoint)."""

    # The defaults are the settings' (kissvdb/config.py), not a second copy of them.
    run_target_bytes: int = _DEFAULTS.run_target_bytes
    run_retention: int = _DEFAULTS.run_retention
    compaction_trigger_tombstone_ratio: float = _DEFAULTS.compaction_trigger_tombstone_ratio
    compaction_max_bytes_per_pass: int = _DEFAULTS.compaction_max_bytes_per_pass
    ivf_clusters: int = _DEFAULTS.ivf_clusters
    ivf_nprobe: int = _DEFAULTS.ivf_nprobe
    ivf_training_sample: int = _DEFAULTS.ivf_training_sample
    ivf_min_train_vectors: int = _DEFAULTS.ivf_min_train_vectors
    ivf_retrain_min_deltas: int = _DEFAULTS.ivf_retrain_min_deltas
    q8_refine_topk: int = _DEFAULTS.q8_refine_topk
    ivf_kmeans_iters: int = 15
    exact_max_rows: int = 512  # at most this many candidates: exact scan
    hnsw: HnswParams = field(default_factory=HnswParams)
    fsync: bool = True
    diskann: DiskAnnParams = field(default_factory=DiskAnnParams)  # build/search defaults (DISKANN_*)
    diskann_rebuild_share: float = _DEFAULTS.diskann_rebuild_share

    @classmethod
    def from_settings(cls, s, **extra) -> "VectorParams":
        return cls(run_target_bytes=s.run_target_bytes, run_retention=s.run_retention,
                   compaction_trigger_tombstone_ratio=s.compaction_trigger_tombstone_ratio,
                   compaction_max_bytes_per_pass=s.compaction_max_bytes_per_pass,
                   ivf_clusters=s.ivf_clusters, ivf_nprobe=s.ivf_nprobe,
                   ivf_training_sample=s.ivf_training_sample, ivf_min_train_vectors=s.ivf_min_train_vectors,
                   ivf_retrain_min_deltas=s.ivf_retrain_min_deltas, q8_refine_topk=s.q8_refine_topk,
                   hnsw=HnswParams(m=s.hnsw_m, ef_construction=s.hnsw_ef_construction, ef_search=s.hnsw_ef_search,
                                   mutable_cap=s.hnsw_segment_vectors, merge_threads=s.hnsw_merge_threads),
                   fsync=not getattr(s, "memory", False),
                   diskann=DiskAnnParams(s.diskann_max_degree, s.diskann_build_threads, s.diskann_search_list_size),
                   diskann_rebuild_share=s.diskann_rebuild_share, **extra)


# ---- operations applied (durable events, decided elsewhere) -------------------------------


@dataclass(slots=True)
class Upsert:
    offset: int
    id: str
    vector: np.ndarray  # stored form (as sent for cosine, unit for dot), float32
    meta: bytes | None  # canonical JSON text, None for null


@dataclass(slots=True)
class Remove:
    offset: int
    id: str


@dataclass(frozen=True, slots=True)
class View:
    """What a reader works on: consistent for rows < n."""

    n: int
    gen: int
    starts: np.ndarray
    f32: tuple
    q8: tuple
    table: Table
    cols: dict
    slot: dict
    live_count: int
    centroids: np.ndarray | None
    lists: ListIndex | None
    hnsw_sealed: tuple
    parsed: list


class Hit(NamedTuple):
    id: str
    score: float
    meta: bytes | None


# The most a search may cost on the event loop's thread (cheap_search), in HNSW segments x
# breadth x dimension: 2 segments x 256 x 4096 took 17 ms on the 2-core box (8 ns a unit), so
# this is about 2 ms. A larger one (an `ef` of 10^6 walks whole graphs) runs in a worker thread.
CHEAP_SEARCH_UNITS_MAX = 1 << 18


class Collection:
    def __init__(self, directory: str, name: str, dim: int, metric: str, kind: str, params: VectorParams,
                 created: dict):
        self.dir = directory
        self.name = name
        self.dim = dim
        self.metric = metric
        self.kind = kind
        self.p = params
        self.created = created  # {created_at_ms, created_offset}
        self._write_lock = threading.RLock()
        self.gen = 0
        self.runs: list[Run] = []
        self.table = Table()
        self.slot: dict[str, int] = {}
        self.parsed: list = []
        self._meta_index: MetaIndex | None = None
        self._group_keys: dict[tuple[int, str], dict] = {}
        self._group_keys_lock = threading.Lock()
        self.applied_offset = 0
        self.checkpointed_offset = 0
        self.next_vno = 0
        self.next_run_id = 1
        self.seq = 0
        self.upsert_count = 0
        self.live_count = 0
        self.hnsw: HnswIndex | None = None
        self.centroids: np.ndarray | None = None
        self.centroids_file: str | None = None
        self.trained_at_ms = 0
        self.trained_upserts = 0
        self.lists: ListIndex | None = None
        self.table_file: str | None = None
        self.dirty = False  # the applied offset moved since the last checkpoint
        self.data_dirty = False  # rows, liveness or index changed since the last checkpoint
        self.view: View | None = None
        self.closed = False
        self.disk = None  # DISKANN collections: their disk index (disk_index.DiskIndex)

    # ---- creation and opening -----------------------------------------------------------

    @classmethod
    def create(cls, directory: str, name: str, dim: int, metric: str, kind: str, params: VectorParams, *,
               created_at_ms: int = 0, created_offset: int = 0) -> "Collection":
        """Make a new, empty collection directory (durably) and open it."""
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}")
        os.makedirs(os.path.join(directory, "runs"), exist_ok=True)
        c = cls(directory, name, dim, metric, kind, params,
                {"created_at_ms": created_at_ms, "created_offset": created_offset})
        c.applied_offset = c.checkpointed_offset = created_offset
        c._open_active_run(new=True)
        if kind == "HNSW":
            c.hnsw = HnswIndex(dim, params.hnsw)
        c._publish()
        c._open_disk()
        c.dirty = True
        c.checkpoint(force=True)
        if params.fsync:
            fsync_dir(os.path.dirname(os.path.abspath(directory)))
        return c

    @classmethod
    def open(cls, directory: str, params: VectorParams) -> "Collection":
        m = manifest_mod.load(directory)
        if m is None:
            raise Corruption(os.path.join(directory, manifest_mod.MANIFEST), 0, "missing manifest")
        c = cls(directory, m["collection"], m["dim"], m["metric"], m["index"], params,
                {"created_at_ms": m.get("created_at_ms", 0), "created_offset": m.get("created_offset", 0)})
        loading.load(c, m)
        return c

    def _open_disk(self) -> None:
        if self.kind == "DISKANN":
            self.disk = DiskIndex.open(self, self.p.diskann, self.p.diskann_rebuild_share)

    def close(self) -> None:
        with self._write_lock:
            if self.closed:
                return
            self.closed = True
            if self.disk is not None:
                self.disk.close()
            for r in self.runs:
                for f in (r.log, r.f32, r.q8):
                    if f is None:
                        continue
                    try:
                        f.close()
                    except OSError as exc:  # closing after a failure: the WAL still has everything
                        log.warning("%s: closing %s failed: %s", self.name, getattr(f, "path", f), exc)

    # ---- run files -------------------------------------------------------------------------

    def _open_active_run(self, *, new: bool) -> Run:
        rid = self.next_run_id
        self.next_run_id += 1
        rundir = os.path.join(self.dir, "runs")
        log_ = runs_mod.RunLog(os.path.join(rundir, runs_mod.run_name(rid, "log")), 0, writable=True)
        f32 = runs_mod.RowFile(os.path.join(rundir, runs_mod.run_name(rid, "f32")), F32, self.dim, 0, writable=True)
        q8 = None
        if self.kind == "IVF_FLAT_Q8":
            q8 = runs_mod.RowFile(os.path.join(rundir, runs_mod.run_name(rid, "q8")), np.int8, self.dim, 0,
                                  writable=True)
        start = self.table.n
        run = Run(rid, log_, f32, q8, 0, 0, start)
        self.runs.append(run)
        return run

    def _rotate(self) -> None:
        """Seal the active run (sync it) and start a new one."""
        old = self.runs[-1]
        self._sync_run(old)
        self._open_active_run(new=True)

    def _sync_run(self, run: Run) -> None:
        run.log.flush()
        if self.p.fsync:
            run.log.sync()
            run.f32.sync()
            if run.q8 is not None:
                run.q8.sync()

    # ---- publishing ----------------------------------------------------------------------

    def _publish(self) -> None:
        t = self.table
        self.view = View(
            n=t.n, gen=self.gen,
            starts=np.array([r.start for r in self.runs], dtype=np.int64),
            f32=tuple(r.f32.array for r in self.runs),
            q8=tuple(r.q8.array for r in self.runs) if self.kind == "IVF_FLAT_Q8" else (),
            table=t, cols=t.cols, slot=self.slot, live_count=self.live_count,
            centroids=self.centroids, lists=self.lists,
            hnsw_sealed=self.hnsw.sealed if self.hnsw is not None else (),
            parsed=self.parsed)

    # ---- applying durable events ---------------------------------------------------------

    def apply(self, ops: list, applied_offset: int) -> None:
        """Apply durable operations in order and move the applied offset to `applied_offset`.

        Operations at or below the applied offset are skipped (replay after a checkpoint).
        """
        with self._write_lock:
            ops = [op for op in ops if op.offset > self.applied_offset]
            if ops:
                self._apply(ops)
            if applied_offset > self.applied_offset:
                self.applied_offset = applied_offset
                self.dirty = True

    def _apply(self, ops: list) -> None:
        """Apply a batch in three steps: new rows and their vectors, the run's records, liveness."""
        run = self.runs[-1]
        if run.bytes >= self.p.run_target_bytes and run.records:
            self._rotate()
            run = self.runs[-1]
        first_row = self.table.n
        assert first_row == run.start + run.rows, (first_row, run.start, run.rows)
        ups = [op for op in ops if isinstance(op, Upsert)]
        vnos, units, local0, crcs = self._append_rows(run, ups)
        self._log_records(run, ops, vnos, local0, crcs)
        if self.hnsw is not None and ups:
            for seg in self.hnsw.add(vnos, units):
                self._save_sealed(seg)
        self._publish()  # new rows visible (not yet live)
        dead = self._mark_live(run, ops, first_row)
        if self.disk is not None:
            self.disk.applied(vnos, units, self.table.col("vno")[np.asarray(dead, dtype=np.int64)])
        if self.lists is not None and self.table.n - self.lists.csr_rows > max(4096, self.table.n // 8):
            self.lists = self._list_index(self.table.col("lst")[: self.table.n])
        self._publish()
        self.dirty = self.data_dirty = True

    def _append_rows(self, run: Run, ups: list) -> tuple:
        """Append the upserts' vectors (run files) and their table rows."""
        vnos = units = None
        local0 = 0
        crcs: list = []
        if ups:
            raw = np.ascontiguousarray(np.stack([np.asarray(op.vector, dtype=F32) for op in ups]))
            if raw.shape[1] != self.dim:
                raise ValueError(f"vector of dim {raw.shape[1]} applied to a dim {self.dim} collection")
            norms = norms_of(raw)
            units = unit_rows(raw, norms)
            k = len(ups)
            vnos = np.arange(self.next_vno, self.next_vno + k, dtype=np.int64)
            self.next_vno += k
            local0 = run.f32.append(raw)
            scales = np.ones(k, F32)
            if run.q8 is not None:
                codes, scales = q8_encode(units)
                run.q8.append(codes)
            lst = assign(units, self.centroids) if self.centroids is not None else np.full(k, -1, np.int32)
            self.table.append(vno=vnos, off=[op.offset for op in ups], norm=norms, scale=scales, lst=lst,
                              ids=[op.id for op in ups], metas=[op.meta for op in ups])
            self.parsed.extend([_UNPARSED] * k)
            crcs = [runs_mod.zlib.crc32(raw[i].tobytes()) for i in range(k)]
        return vnos, units, local0, crcs

    def _log_records(self, run: Run, ops: list, vnos, local0: int, crcs: list) -> None:
        """The run's records, in event order."""
        recs = []
        ui = 0
        for op in ops:
            if isinstance(op, Upsert):
                recs.append(runs_mod.encode_record(runs_mod.Record(
                    runs_mod.OP_UPSERT, op.offset, int(vnos[ui]), op.id, local0 + ui, crcs[ui], op.meta)))
                ui += 1
            else:
                recs.append(runs_mod.encode_record(runs_mod.Record(
                    runs_mod.OP_DELETE, op.offset, 0, op.id, runs_mod.NO_ROW, 0, None)))
        run.log.append(recs)
        run.records += len(ops)

    def _mark_live(self, run: Run, ops: list, first_row: int) -> list:
        """Liveness in event order: the newest record of an id is its only live row. Returns the dead rows."""
        live = self.table.col("live")
        slot = self.slot
        ui = 0
        dead = []
        for op in ops:
            old = slot.get(op.id)
            if old is not None:
                live[old] = 0
                dead.append(old)
            if isinstance(op, Upsert):
                row = first_row + ui
                ui += 1
                live[row] = 1
                slot[op.id] = row
                self.upsert_count += 1
            else:
                if old is not None:
                    del slot[op.id]
                run.tombstones += 1
        self.live_count = len(slot)
        return dead

    def _list_index(self, lst: np.ndarray, centroids: np.ndarray | None = None) -> ListIndex:
        """CSR of the current rows with their codes in list order (reads the published view)."""
        v = self.view
        c = self.centroids if centroids is None else centroids
        return ListIndex(lst, c, codes_of=lambda rows: self._rows_q8(v, rows),
                         scales=v.cols["scale"][: len(lst)])

    def _save_sealed(self, seg: Segment) -> None:
        checkpoint_mod.save_sealed(self, seg)

    # ---- reads -----------------------------------------------------------------------------

    def get(self, vid: str) -> tuple[np.ndarray, bytes | None] | None:
        """(stored vector copy, meta) of a live id, or None."""
        v = self.view
        row = v.slot.get(vid)
        if row is None or row >= v.n:
            return None
        return self._rows_f32(v, np.array([row]))[0].copy(), v.table.metas[row]

    def __contains__(self, vid: str) -> bool:
        return vid in self.view.slot

    def meta_of(self, vid: str):
        v = self.view
        row = v.slot.get(vid)
        return None if row is None else v.table.metas[row]

    def _rows_f32(self, v: View, rows: np.ndarray) -> np.ndarray:
        return rows_mod.rows_f32(self, v, rows)

    def _rows_q8(self, v: View, rows: np.ndarray) -> np.ndarray:
        return rows_mod.rows_q8(self, v, rows)

    def parsed_meta(self, v: View, row: int, *, keep: bool = True):
        return rows_mod.parsed_meta(v, row, keep=keep)

    def group_key(self, v: View, row: int, field: str, key_of):
        return rows_mod.group_key(self, v, row, field, key_of)

    def meta_index(self, v: View) -> MetaIndex | None:
        """The metadata columns of `v`'s rows; None for a view a compaction has since replaced
        (its rows were renumbered: the caller evaluates the filter row by row)."""
        mi = self._meta_index
        if mi is None or mi.gen != v.gen:
            if v.gen != self.gen:
                return None
            mi = self._meta_index = MetaIndex(v.gen)
        return mi

    def batchable(self, predicate, group_by) -> bool:
        """Whether a search can join a batch of graph walks (see search_many_live)."""
        v = self.view
        return (predicate is None and group_by is None and self.kind == "HNSW" and v.live_count == v.n
                and v.n > self.p.exact_max_rows)

    def search_many_live(self, queries: list, k: int, ef: int | None, threads: int) -> list | None:
        """Several unfiltered HNSW searches in one hnswlib call per segment (its own threads,
        GIL released): [[Hit...] per query], or None when the fast path does not apply (a
        vector died meanwhile, or a graph holds labels of compacted rows)."""
        v = self.view
        if self.kind != "HNSW" or v.live_count != v.n or v.n <= max(self.p.exact_max_rows, k):
            return None
        units = unit_rows(np.stack([np.asarray(q, dtype=F32).reshape(-1) for q in queries]))
        parts = self.hnsw.search_many(units, k, ef=ef, threads=threads)
        labels = np.concatenate([p[0] for p in parts], axis=1) if len(parts) > 1 else parts[0][0]
        scores = np.concatenate([p[1] for p in parts], axis=1) if len(parts) > 1 else parts[0][1]
        labels = labels.astype(np.int64)
        vno = v.cols["vno"][: v.n]
        rows = np.searchsorted(vno, labels)
        if rows.size and (int(rows.max()) >= v.n or not np.array_equal(vno[rows], labels)):
            return None
        scores = np.minimum(scores, np.float32(1))
        ids = v.table.ids
        id_of = ids.__getitem__
        # One segment returns its hits best first already; only ties need the id order.
        presorted = len(parts) == 1
        ties = ((np.diff(scores, axis=1) >= 0).any(axis=1).tolist() if presorted and scores.shape[1] > 1
                else [False] * len(queries))
        new = tuple.__new__
        out = []
        if presorted:
            rows_l = rows[:, :k].tolist()
            scores_l = scores[:, :k].tolist()
        for i in range(len(queries)):
            if presorted and not ties[i]:
                out.append([new(Hit, (ids[r], sc, None)) for r, sc in zip(rows_l[i], scores_l[i])])
                continue
            pairs = top_rows(scores[i], rows[i], k, id_of)
            out.append([new(Hit, (ids[r], sc, None)) for r, sc in pairs])
        return out

    def cheap_search(self, predicate, group_by, k: int = 10, ef: int | None = None) -> bool:
        """Whether a search is small enough for the caller's own thread (no scan of many rows).

        True for unfiltered, ungrouped searches answered by a small exact scan, or by HNSW
        graphs whose walk is small: segments x breadth (max(k, ef)) x dimension at most
        CHEAP_SEARCH_UNITS_MAX. Such a search may still raise hnsw.WouldBlock, then it belongs
        in a worker thread.
        """
        if predicate is not None or group_by is not None:
            return False
        v = self.view
        if v.n <= self.p.exact_max_rows:
            return True
        if self.kind != "HNSW":
            return False
        breadth = max(k, self.p.hnsw.ef_search if ef is None else ef)
        return self.segment_count() * breadth * self.dim <= CHEAP_SEARCH_UNITS_MAX

    def search(self, vector, k: int, *, predicate=None, group_by: str | None = None, group_limit: int = 1,
               include_meta: bool = False, nprobe: int | None = None, ef: int | None = None,
               blocking: bool = True, deadline: float | None = None, ids: set[str] | None = None) -> list[Hit]:
        """Best hits (score desc, id asc); see search.py for the plan and its guarantee.
        `deadline` (time.monotonic()): past it the search stops with RequestTimeout (Searcher).
        `ids`: only these ids may be hits (the /search filters, kissvdb/search/query.py)."""
        live_fast = ids is None
        if ids is None and predicate is None and group_by is None and self.kind == "HNSW" and k > 0:
            v = self.view
            if v.live_count == v.n and v.n > self.p.exact_max_rows and v.n > k:
                hits = self._search_live(v, vector, k, ef, blocking, include_meta)
                if hits is not None:
                    return hits
                live_fast = False  # the graph holds labels of compacted rows: the general path
        v, pairs = Searcher(self, blocking=blocking, deadline=deadline).search(
                                         vector, k, predicate=predicate, group_by=group_by,
                                         group_limit=group_limit, nprobe=nprobe, ef=ef,
                                         live_fast=live_fast, ids=ids)
        ids = v.table.ids
        if include_meta:
            metas = v.table.metas
            return [Hit(ids[r], s, metas[r]) for r, s in pairs]
        return [Hit(ids[r], s, None) for r, s in pairs]

    def _search_live(self, v: View, vector, k: int, ef, blocking: bool, include_meta: bool) -> list[Hit] | None:
        """The common search (nothing dead, no filter, no group, HNSW) with the least Python work
        per query: the same hits as Searcher's fast path, or None when a graph label is not a
        row of `v` (then the general path answers)."""
        n = v.n
        parts = self.hnsw.search_all_live(unit(np.asarray(vector, dtype=F32).reshape(-1)), k,
                                          blocking=blocking, ef=ef)
        one = len(parts) == 1
        if one:
            labels, scores = parts[0]
        else:
            labels = np.concatenate([p[0] for p in parts])
            scores = np.concatenate([p[1] for p in parts])
        lab = labels.tolist()
        if not lab:
            return None
        vno = v.cols["vno"]
        first = int(vno[0])
        if int(vno[n - 1]) - first == n - 1:
            # vnos ascend and are never reused: rows 0..n-1 hold vnos first..first+n-1.
            if min(lab) < first or max(lab) - first >= n:
                return None
            rows = [x - first for x in lab] if first else lab
        else:
            lab64 = labels.astype(np.int64)
            found = np.searchsorted(vno[:n], lab64)
            if int(found.max()) >= n or not np.array_equal(vno[found], lab64):
                return None
            rows = found.tolist()
        ids = v.table.ids
        sl = scores.tolist()
        if one and all(a > b for a, b in zip(sl, sl[1:])):
            # One segment answers best first; with no tie the id order changes nothing.
            pairs = zip(rows, sl)
        else:
            pairs = top_rows(np.minimum(scores, F32(1)), np.asarray(rows, dtype=np.int64), k, ids.__getitem__)
        new = tuple.__new__  # Hit(...) without NamedTuple's Python-level __new__
        if include_meta:
            metas = v.table.metas
            return [new(Hit, (ids[r], s if s < 1.0 else 1.0, metas[r])) for r, s in pairs]
        return [new(Hit, (ids[r], s if s < 1.0 else 1.0, None)) for r, s in pairs]

    def info(self) -> dict:
        v = self.view
        total = sum(r.records for r in self.runs)
        return {
            "live_count": v.live_count, "total_records": total, "upsert_count": self.upsert_count,
            "file_len": sum(r.bytes for r in self.runs), "applied_offset": self.applied_offset,
            "segments": self.segment_count(), "deleted_count": total - v.live_count,
            "index": self.kind, "runs": len(self.runs),
            "ivf_trained": self.centroids is not None,
            "ivf_lists": 0 if self.centroids is None else len(self.centroids),
            "diskann": self.disk.status() if self.disk is not None else None,
        }

    def segment_count(self) -> int:
        if self.hnsw is not None:
            return max(1, self.hnsw.segment_count)
        return len(self.runs)

    # ---- checkpoint ------------------------------------------------------------------------

    def checkpoint(self, *, force: bool = False) -> int:
        """Make everything applied durable and move manifest.json to it (checkpoint.py)."""
        return checkpoint_mod.checkpoint(self, force=force)

    # ---- IVF training, HNSW merges, compaction (training.py, merge.py, compaction.py) -----

    def training_due(self) -> bool:
        return training.training_due(self)

    def prepare_training(self, seed: int = 0):
        return training.prepare_training(self, seed)

    def train(self, prep) -> dict:
        return training.train(self, prep)

    def install_training(self, result, now_ms: int = 0) -> bool:
        return training.install_training(self, result, now_ms)

    def train_now(self, now_ms: int = 0, seed: int = 0) -> bool:
        return training.train_now(self, now_ms, seed)

    def merge_due(self, *, all_segments: bool = False) -> tuple | None:
        return merge.merge_due(self, all_segments=all_segments)

    def merge_segments(self, segments: tuple) -> Segment:
        return merge.merge_segments(self, segments)

    def install_merge(self, old: tuple, merged: Segment) -> None:
        merge.install_merge(self, old, merged)

    def optimize(self) -> None:
        merge.optimize(self)

    def seal_mutable(self) -> None:
        merge.seal_mutable(self)

    def compaction_due(self) -> bool:
        return compaction.compaction_due(self)

    def prepare_compaction(self, *, force: bool = False, budget: int | None = None):
        return compaction.prepare_compaction(self, force=force, budget=budget)

    def run_compaction(self, prep) -> dict:
        return compaction.run_compaction(self, prep)

    def install_compaction(self, prep, result) -> None:
        compaction.install_compaction(self, prep, result)

    def vacuum(self, progress=None, max_passes: int = 10_000) -> int:
        return compaction.vacuum(self, progress, max_passes)

    def compact(self, *, force: bool = False) -> bool:
        return compaction.compact(self, force=force)

"""DiskAnnIndex: one collection's disk-resident vector index, as its owner sees it.

What it holds: the serving build (a `Graph`: usearch int8 graph + float32 rows + id map, all
memory-mapped), a delete mask over the graph's positions, and a `MutableSegment` for rows written
since the build. A search merges the graph's re-ranked hits with the segment's exact ones.

Row ids are the caller's int64 row numbers. The index assumes a row id names one vector for
ever (kissvdb's vnos: a new one for every upsert, never reused): `reconcile` relies on it to
rebuild the mask and the segment from the live set at boot. `upsert` of an id the graph holds
still works (the graph copy is masked), so other callers stay correct.

Threads: a search may run on any thread beside one writer (upsert/delete/remap/tune) and one
build. Writers and the install of a build take `_lock` for short, in-memory work only; the build's
heavy part (usearch add, file writes, fsyncs) runs without it. A build snapshot (`begin_build`)
must be taken in the same critical section as the caller's own snapshot of its rows: writes after
it are journaled and replayed onto the new build when it is installed.

Never: imports trio; reads the environment; writes outside its directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from kissvdb.vectors import distance
import kissvdb.vectors.diskann.builder as builder
import kissvdb.vectors.diskann.files as files
from kissvdb.vectors.diskann.graph import Graph
from kissvdb.vectors.diskann.params import DiskAnnParams
from kissvdb.vectors.diskann.search import search_graph, search_segment, top_k
from kissvdb.vectors.diskann.segment import MutableSegment

log = logging.getLogger("kissvdb.vectors.diskann")
F32 = np.float32
METRICS = ("cosine", "dot")


class BuildRunning(Exception):
    """A build is already under way; `status()` shows its progress."""


@dataclass
class Journal:
    """Writes since a build's snapshot, replayed onto that build when it is installed."""
    upserted: set = field(default_factory=set)
    deleted: set = field(default_factory=set)
    remaps: list = field(default_factory=list)  # (old ids, new ids, epoch)


class DiskAnnIndex:
    def __init__(self, root: str, dim: int, metric: str, defaults: DiskAnnParams):
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r}: one of {METRICS}")
        self.root, self.dim, self.metric = root, dim, metric
        self.defaults = defaults.clamped()
        self.graph: Graph | None = None
        self.masked = np.zeros(0, bool)
        self.masked_count = 0
        self.segment = MutableSegment(dim)
        self.id_epoch = 0
        self._lock = threading.Lock()
        self._journal: Journal | None = None
        self._progress = (0, 0)

    # ---- open / close -------------------------------------------------------------------

    @classmethod
    def open(cls, root: str, dim: int, metric: str, defaults: DiskAnnParams | None = None) -> "DiskAnnIndex":
        """Open `root` (created if missing): delete orphans of crashed or replaced builds, map the
        build CURRENT names. Never rebuilds; a missing or damaged build file raises CorruptIndex."""
        os.makedirs(root, exist_ok=True)
        removed = files.clean(root)
        if removed:
            log.info("diskann %s: removed leftovers %s", root, removed)
        idx = cls(root, dim, metric, defaults or DiskAnnParams())
        name = files.read_current(root)
        if name is not None:
            path = os.path.join(root, name)
            manifest = files.read_manifest(path)
            if manifest["dim"] != dim or manifest["metric"] != metric:
                raise files.CorruptIndex(f"{path}: built for dim {manifest['dim']} {manifest['metric']}, "
                                         f"opened as dim {dim} {metric}")
            idx._serve(Graph(path, manifest, idx.params().expansion_search))
        return idx

    def _serve(self, graph: Graph) -> None:
        self.graph = graph
        self.masked = np.zeros(graph.rows_n, bool)
        self.masked_count = 0
        self.id_epoch = int(graph.manifest.get("id_epoch", 0))

    def close(self) -> None:
        with self._lock:
            if self.graph is not None:
                self.graph.close()
            self.graph = None

    # ---- params and status ---------------------------------------------------------------

    def params(self) -> DiskAnnParams:
        """Stored params (tune/build), else the defaults; always clamped."""
        return self.defaults.merged(files.read_params(self.root))

    def tune(self, given: dict | None) -> DiskAnnParams:
        """Store params (clamped) without building; a serving graph takes the new search list
        size at once. Returns what was stored."""
        p = self.params().merged(given)
        files.write_params(self.root, p.as_dict())
        with self._lock:
            if self.graph is not None:
                self.graph.index.expansion_search = p.expansion_search
        return p

    def status(self) -> dict:
        """The contract's DiskAnnStatus plus `building`, `progress` and the segment's counts."""
        g = self.graph
        done, total = self._progress
        return {"available": g is not None, "building": self._journal is not None,
                "progress": {"rows_done": done, "rows_total": total} if self._journal is not None else None,
                "last_built_ms": int(g.manifest["built_at_ms"]) if g else 0,
                "graph_files": [f"diskann/{f}" for f in g.files()] if g else [],
                "params": self.params().as_dict(), "rows": g.rows_n if g else 0,
                "masked_rows": self.masked_count, "unindexed_rows": len(self.segment),
                "stale_share": self.stale_share()}

    @property
    def building(self) -> bool:
        """A build is between its snapshot and its install (or abandon)."""
        return self._journal is not None

    def stale_share(self) -> float:
        """(masked + unindexed) / (graph rows + unindexed): past a threshold the owner rebuilds."""
        rows = self.graph.rows_n if self.graph is not None else 0
        total = rows + len(self.segment)
        return (self.masked_count + len(self.segment)) / total if total else 0.0

    # ---- writes ---------------------------------------------------------------------------

    def upsert(self, row_id: int, vector) -> None:
        """A row written after the build: searched exactly from the segment at once."""
        unit = distance.unit(np.asarray(vector, F32).reshape(-1))
        if len(unit) != self.dim:
            raise ValueError(f"vector of {len(unit)} dims, index has {self.dim}")
        with self._lock:
            self._mask(row_id)
            self.segment.upsert(int(row_id), unit)
            if self._journal is not None:
                self._journal.upserted.add(int(row_id))

    def upsert_many(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        """`upsert` for a batch (one lock hold): the collection's apply of one WAL batch."""
        units = distance.unit_rows(np.asarray(vectors, F32).reshape(len(row_ids), -1))
        if units.shape[1] != self.dim:
            raise ValueError(f"vectors of {units.shape[1]} dims, index has {self.dim}")
        with self._lock:
            for row_id, unit in zip(np.asarray(row_ids, np.int64).tolist(), units):
                self._mask(row_id)
                self.segment.upsert(row_id, unit)
                if self._journal is not None:
                    self._journal.upserted.add(row_id)

    def delete_many(self, row_ids: np.ndarray) -> int:
        """`delete` for a batch; returns how many rows the index held."""
        return sum(self.delete(r) for r in np.asarray(row_ids, np.int64).tolist())

    def delete(self, row_id: int) -> bool:
        """Hide a row; returns whether the index held it."""
        with self._lock:
            found = self._mask(row_id) | self.segment.delete(int(row_id))
            if self._journal is not None:
                self._journal.deleted.add(int(row_id))
            return found

    def _mask(self, row_id: int) -> bool:
        if self.graph is None:
            return False
        pos = int(self.graph.positions_of(np.array([row_id]))[0])
        if pos < 0 or self.masked[pos]:
            return False
        self.masked[pos] = True
        self.masked_count += 1
        return True

    def reconcile(self, live_ids: np.ndarray, vectors_of) -> dict:
        """Boot: mask graph rows not in `live_ids`, put live rows the graph lacks into the segment
        (`vectors_of(ids) -> rows`). Relies on row ids never being reused for another vector."""
        live = np.unique(np.asarray(live_ids, np.int64))
        with self._lock:
            g = self.graph
            if g is not None:
                ids = np.asarray(g.ids)
                gone = ~np.isin(ids, live, assume_unique=False)
                self.masked |= gone
                self.masked_count = int(self.masked.sum())
                missing = live[g.positions_of(live) < 0]
            else:
                missing = live
        for lo in range(0, len(missing), 4096):
            chunk = missing[lo:lo + 4096]
            for row_id, vec in zip(chunk.tolist(), np.asarray(vectors_of(chunk), F32)):
                self.upsert(row_id, vec)
        return {"masked": self.masked_count, "unindexed": len(self.segment)}

    def remap(self, old_ids: np.ndarray, new_ids: np.ndarray, epoch: int) -> None:
        """Compaction renumbered rows: `old_ids[i]` is now `new_ids[i]` (other ids unchanged).
        The graph gets a new id file (fsynced, then named by the manifest, atomically) tagged
        with `epoch`, so the owner can tell at boot whether its renumbering reached the index."""
        old = np.asarray(old_ids, np.int64)
        order = np.argsort(old, kind="stable")
        old, new = old[order], np.asarray(new_ids, np.int64)[order]
        with self._lock:
            if self.graph is not None:
                write_ids(self.graph, _renamed(np.asarray(self.graph.ids), old, new), epoch)
            self.segment.remap(lambda ids: _renamed(ids, old, new))
            if self._journal is not None:
                j = self._journal
                j.remaps.append((old, new, epoch))
                j.upserted = set(_renamed(np.array(sorted(j.upserted), np.int64), old, new).tolist())
                j.deleted = set(_renamed(np.array(sorted(j.deleted), np.int64), old, new).tolist())
            self.id_epoch = epoch

    # ---- search ---------------------------------------------------------------------------

    def search(self, query, k: int, *, accept=None, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """(row ids int64, scores float32) of the best min(k, matches) rows, score descending,
        ties by id. `accept(ids) -> bool mask` and `allowed` (row ids) both filter when given."""
        q = distance.unit(np.asarray(query, F32).reshape(-1))
        if len(q) != self.dim:
            raise ValueError(f"query of {len(q)} dims, index has {self.dim}")
        if allowed is not None:
            allowed = np.unique(np.asarray(allowed, np.int64))
            if len(allowed) == 0:
                return np.zeros(0, np.int64), np.zeros(0, F32)
        with self._lock:
            graph, masked, view = self.graph, self.masked, self.segment.view()
        seg_ids, seg_scores = search_segment(view, q, k, accept, allowed)
        if graph is None:
            return seg_ids, seg_scores
        g_ids, g_scores = search_graph(graph, masked, q, k, accept, allowed)
        if len(seg_ids) == 0:
            return g_ids, g_scores
        return top_k(np.concatenate([g_ids, seg_ids]), np.concatenate([g_scores, seg_scores]), k)

    # ---- build ----------------------------------------------------------------------------

    def begin_build(self, ids: np.ndarray, rows, given: dict | None = None) -> "BuildJob":
        """Snapshot point of a build over (`ids`, `rows`): call it where the caller's snapshot of
        its rows is taken. Stores the params (clamped) as `tune` does. Raises BuildRunning."""
        p = self.params().merged(given)
        with self._lock:
            if self._journal is not None:
                raise BuildRunning()
            self._journal = Journal()
            self._progress = (0, len(ids))
        try:
            files.write_params(self.root, p.as_dict())
        except BaseException:
            with self._lock:
                self._journal = None
            raise
        return BuildJob(self, np.asarray(ids, np.int64), rows, p)

    def build(self, ids, rows, given: dict | None = None, **kw) -> dict:
        """begin_build + run, for callers without concurrent writes (tests, the offline CLI)."""
        return self.begin_build(ids, rows, given).run(**kw)

    def _install(self, job: "BuildJob", tmp: str, manifest: dict) -> dict:
        """Publish the sealed temp build and serve it, replaying the journal (under the lock:
        small writes only)."""
        with self._lock:
            j = self._journal
            ids = job.ids
            for old, new, epoch in j.remaps:
                ids = _renamed(ids, old, new)
                manifest["id_epoch"] = epoch
            if j.remaps:
                os.unlink(os.path.join(tmp, manifest["files"]["ids"]))
                manifest["files"]["ids"] = files.ids_file(manifest["id_epoch"])
                write_ids_file(os.path.join(tmp, manifest["files"]["ids"]), ids)
                files.write_manifest(tmp, manifest)
            name = f"{files.BUILD_PREFIX}{manifest['built_at_ms']}-{os.getpid()}-{time.monotonic_ns()}"
            old_graph = self.graph
            graph = Graph(files.publish(self.root, tmp, name), manifest, self.params().expansion_search)
            self._replay(graph, j)
            self._journal = None
        if old_graph is not None:
            # A search may still hold the old graph: its maps stay valid (the files are unlinked,
            # not truncated) until the last reference goes.
            shutil.rmtree(old_graph.path, ignore_errors=True)
        return self.status()

    def _replay(self, graph: Graph, j: Journal) -> None:
        """Serve `graph`: rows upserted or deleted since the snapshot stay masked there, the
        segment keeps only rows the graph lacks or that were rewritten after the snapshot."""
        old_segment = self.segment
        self._serve(graph)
        self.segment = MutableSegment(self.dim)
        for row_id in j.deleted | j.upserted:
            self._mask(row_id)
        ids, rows = old_segment.items()
        in_graph = graph.positions_of(ids) >= 0
        for row_id, row, inside in zip(ids.tolist(), rows, in_graph.tolist()):
            if not inside or row_id in j.upserted:
                self.segment.upsert(row_id, row)

    def _abandon(self) -> None:
        with self._lock:
            self._journal = None


class BuildJob:
    """One build between its snapshot and its install; `run` does the work on any thread."""

    def __init__(self, index: DiskAnnIndex, ids: np.ndarray, rows, params: DiskAnnParams):
        self.index, self.ids, self.rows, self.params = index, ids, rows, params

    def run(self, progress=None, should_stop=None, now_ms: int | None = None) -> dict:
        """Write, seal, publish and serve the build; returns the new status. `progress(done,
        total)` is called per chunk; `should_stop()` true abandons the build (BuildStopped)."""
        idx = self.index

        def report(done: int, total: int) -> None:
            idx._progress = (done, total)
            if progress is not None:
                progress(done, total)

        try:
            tmp, manifest = builder.write_build(idx.root, self.ids, self.rows, idx.metric, self.params,
                                                progress=report, should_stop=should_stop, now_ms=now_ms)
            try:
                for name in os.listdir(tmp):  # the slow fsyncs, outside the lock
                    files.fsync_file(os.path.join(tmp, name))
                return idx._install(self, tmp, manifest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            idx._abandon()


def _renamed(ids: np.ndarray, old_sorted: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`ids` with each id found in `old_sorted` replaced by its `new` partner."""
    ids = np.asarray(ids, np.int64)
    if len(old_sorted) == 0 or len(ids) == 0:
        return ids.copy()
    at = np.minimum(np.searchsorted(old_sorted, ids), len(old_sorted) - 1)
    return np.where(old_sorted[at] == ids, new[at], ids)


def write_ids_file(path: str, ids: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(np.asarray(ids, "<i8").tobytes())
        f.flush()
        os.fsync(f.fileno())


def write_ids(graph: Graph, ids: np.ndarray, epoch: int) -> None:
    """Give a serving build a new id map: new file (fsynced), then the manifest names it
    (atomic), then the old file goes. A crash leaves the old or the new map, never a mix."""
    old_name = graph.manifest["files"]["ids"]
    name = files.ids_file(epoch)
    if name == old_name:
        name = files.ids_file(epoch) + f".{time.monotonic_ns()}"
    write_ids_file(os.path.join(graph.path, name), ids)
    manifest = {**graph.manifest, "files": {**graph.manifest["files"], "ids": name}, "id_epoch": epoch}
    files.write_manifest(graph.path, manifest)
    graph.manifest = manifest
    graph.set_ids(np.memmap(os.path.join(graph.path, name), dtype=np.int64, mode="r", shape=(graph.rows_n,))
                  if graph.rows_n else np.zeros(0, np.int64))
    try:
        os.unlink(os.path.join(graph.path, old_name))
    except FileNotFoundError:
        pass

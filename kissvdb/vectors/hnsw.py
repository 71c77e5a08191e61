"""HNSW through hnswlib: sealed segments plus one small mutable segment.

hnswlib's `add_items` must not run beside `knn_query` on the same index, and `save_index`
rewrites the whole file. So:
- sealed segments are built (or filled) once, saved once and then only searched, lock-free;
- the one mutable segment (capacity `mutable_cap`) takes new vectors under the exclusive side
  of a readers-writer lock, searches take the shared side; when full it is sealed (saved once)
  and a fresh one starts;
- the collection's maintenance (run by its actor) merges sealed segments (`build_segment` from live vectors, then `replace`).

Labels are the collection's vnos (vector numbers, never reused), so compaction of run files
never touches an index. Deleted and replaced vectors stay in the graphs and are filtered out by
the caller's `accept(labels) -> bool mask`; a search over-fetches and widens until it has `k`
accepted hits or has seen the whole segment. `M` and `ef_construction` are set explicitly.
A query's ef is its own: hnswlib searches with breadth max(index ef, k), so every index keeps
ef 1 and each query asks for max(k, ef) results (ef = HNSW_EF_SEARCH unless the request names
one, lower or higher). `set_ef` is never called on a shared index, where one query's ef would
leak into a concurrent one's.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import hnswlib
import numpy as np

from kissvdb.config import Settings

SPACE = "ip"  # indexes hold unit vectors: distance = 1 - cosine


_DEFAULTS = Settings()


@dataclass(frozen=True, slots=True)
class HnswParams:
    m: int = _DEFAULTS.hnsw_m  # the settings' defaults (kissvdb/config.py)
    ef_construction: int = _DEFAULTS.hnsw_ef_construction
    ef_search: int = _DEFAULTS.hnsw_ef_search
    mutable_cap: int = _DEFAULTS.hnsw_segment_vectors
    threads: int = max(1, os.cpu_count() or 1)  # adding a batch a write asked for
    # A merge is background work that can run for minutes: with every core it starved the
    # event loop (PUT@1 p99 10.7 ms, not 3.7, during a 240k-row merge on 2 CPUs; BENCHMARKS.md).
    merge_threads: int = _DEFAULTS.hnsw_merge_threads


class WouldBlock(Exception):
    """A non-blocking search met a writer on the mutable segment: retry in a worker thread."""


class RWLock:
    """Many readers or one writer; a waiting writer holds new readers back."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1

    def try_acquire_read(self) -> bool:
        """Take the shared side only if no writer holds or waits for it (never blocks)."""
        with self._cond:
            if self._writer or self._waiting_writers:
                return False
            self._readers += 1
            return True

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class Segment:
    __slots__ = ("index", "file", "sealed", "lock")

    def __init__(self, index: hnswlib.Index, file: str | None, sealed: bool):
        self.index = index
        self.file = file  # basename once saved
        self.sealed = sealed
        self.lock = None if sealed else RWLock()

    @property
    def count(self) -> int:
        return self.index.get_current_count()

    @property
    def capacity(self) -> int:
        return self.index.get_max_elements()


def new_index(dim: int, capacity: int, p: HnswParams) -> hnswlib.Index:
    idx = hnswlib.Index(space=SPACE, dim=dim)
    idx.init_index(max_elements=max(1, capacity), M=p.m, ef_construction=p.ef_construction, random_seed=100)
    idx.set_ef(1)  # the breadth comes with each query (module doc)
    idx.set_num_threads(1)
    return idx


def load_index(path: str, dim: int, p: HnswParams, capacity: int | None = None) -> hnswlib.Index:
    idx = hnswlib.Index(space=SPACE, dim=dim)
    idx.load_index(path)
    if capacity is not None and idx.get_max_elements() < capacity:
        idx.resize_index(capacity)  # not shared yet: safe to resize
    idx.set_ef(1)  # the breadth comes with each query (module doc)
    idx.set_num_threads(1)
    return idx


def build_segment(dim: int, labels: np.ndarray, units: np.ndarray, p: HnswParams) -> Segment:
    """A sealed segment over `units` (labels = vnos), built with `merge_threads` threads."""
    idx = new_index(dim, len(labels), p)
    if len(labels):
        idx.add_items(units, labels, num_threads=p.merge_threads)
    return Segment(idx, None, sealed=True)


def save_segment(seg: Segment, directory: str, name: str, *, fsync: bool = True) -> None:
    """Write the segment to `name` (temp + rename; the caller fsyncs the directory)."""
    tmp = os.path.join(directory, "." + name + ".tmp")
    seg.index.save_index(tmp)
    if fsync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, os.path.join(directory, name))
    seg.file = name


class HnswIndex:
    """The segments of one collection. One writer thread; any number of search threads."""

    def __init__(self, dim: int, params: HnswParams, sealed: list[Segment] | None = None,
                 mutable: Segment | None = None):
        self.dim = dim
        self.p = params
        self.sealed: tuple[Segment, ...] = tuple(sealed or ())
        self.mutable = mutable or Segment(new_index(dim, params.mutable_cap, params), None, sealed=False)
        self.mutable_dirty = mutable is None

    @property
    def segment_count(self) -> int:
        return len(self.sealed) + (1 if self.mutable.count else 0)

    def add(self, labels: np.ndarray, units: np.ndarray) -> list[Segment]:
        """Add vectors; return segments sealed by this call (the caller saves them once)."""
        sealed_now = []
        pos = 0
        while pos < len(labels):
            seg = self.mutable
            room = seg.capacity - seg.count
            if room == 0:
                seg_sealed = Segment(seg.index, None, sealed=True)
                sealed_now.append(seg_sealed)
                self.sealed = self.sealed + (seg_sealed,)
                self.mutable = Segment(new_index(self.dim, self.p.mutable_cap, self.p), None, sealed=False)
                continue
            take = min(room, len(labels) - pos)
            seg.lock.acquire_write()
            try:
                seg.index.add_items(units[pos:pos + take], labels[pos:pos + take],
                                    num_threads=self.p.threads if take >= 64 else 1)
            finally:
                seg.lock.release_write()
            self.mutable_dirty = True
            pos += take
        return sealed_now

    def replace(self, old: tuple[Segment, ...], merged: Segment) -> None:
        """Swap sealed segments `old` for `merged` (built from their live vectors)."""
        keep = tuple(s for s in self.sealed if all(s is not o for o in old))
        self.sealed = (merged,) + keep

    def search(self, q_unit: np.ndarray, k: int, accept, *, blocking: bool = True, ef: int | None = None,
               margin: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per segment: (labels, scores) of up to `k` accepted hits, best first.

        `blocking=False` (a search on the event loop thread) raises WouldBlock instead of waiting
        while the mutable segment is being written. `ef` (None = HNSW_EF_SEARCH) is the search
        breadth, at least `k`; `margin` extra candidates are fetched when the collection holds
        dead vectors.
        """
        q = q_unit.reshape(1, -1)
        mut = self.mutable
        if mut.count:
            if blocking:
                mut.lock.acquire_read()
            elif not mut.lock.try_acquire_read():
                raise WouldBlock()
            try:
                out = [self._search_segment(mut, q, k, accept, ef, margin)]
            finally:
                mut.lock.release_read()
        else:
            out = []
        for seg in self.sealed:
            out.append(self._search_segment(seg, q, k, accept, ef, margin))
        return out

    def search_all_live(self, q_unit: np.ndarray, k: int, *, blocking: bool = True, ef: int | None = None):
        """Fast path when every label in every segment is live and there is no filter:
        (labels, scores) of each segment's best k, no acceptance test."""
        q = q_unit.reshape(1, -1)
        out = []
        mut = self.mutable
        segs = self.sealed
        breadth = self.p.ef_search if ef is None else ef
        if mut.index.get_current_count():
            if blocking:
                mut.lock.acquire_read()
            elif not mut.lock.try_acquire_read():
                raise WouldBlock()
            try:
                out.append(self._knn(mut, q, k, breadth))
            finally:
                mut.lock.release_read()
        for seg in segs:
            out.append(self._knn(seg, q, k, breadth))
        return out

    def search_many(self, units: np.ndarray, k: int, *, ef: int | None = None, threads: int = 1):
        """Per segment: (labels m x k', scores m x k') for a batch of unit queries; blocking."""
        breadth = self.p.ef_search if ef is None else ef
        out = []
        mut = self.mutable
        if mut.count:
            mut.lock.acquire_read()
            try:
                out.append(self._knn_many(mut, units, k, breadth, threads))
            finally:
                mut.lock.release_read()
        for seg in self.sealed:
            out.append(self._knn_many(seg, units, k, breadth, threads))
        return out

    def _knn_many(self, seg: Segment, units: np.ndarray, k: int, breadth: int, threads: int):
        fetch = min(seg.count, max(k, breadth))
        try:
            labels, dists = seg.index.knn_query(units, k=fetch, num_threads=threads)
        except RuntimeError:
            got = [self._all(seg, u.reshape(1, -1)) for u in units]
            m = min(len(g[0][0]) for g in got)
            labels = np.stack([g[0][0][:m] for g in got])
            dists = np.stack([g[1][0][:m] for g in got])
        return labels[:, :k], 1.0 - dists[:, :k]

    def _knn(self, seg: Segment, q: np.ndarray, k: int, breadth: int):
        fetch = min(seg.index.get_current_count(), max(k, breadth))
        try:
            labels, dists = seg.index.knn_query(q, k=fetch, num_threads=1)
        except RuntimeError:
            labels, dists = self._all(seg, q)
        return labels[0][:k], 1.0 - dists[0][:k]

    def _search_segment(self, seg: Segment, q: np.ndarray, k: int, accept, ef: int | None, margin: int):
        count = seg.count
        if count == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        fetch = min(count, max(k + margin, self.p.ef_search if ef is None else ef))
        while True:
            try:
                labels, dists = seg.index.knn_query(q, k=fetch, num_threads=1)
            except RuntimeError:
                # hnswlib could not find `fetch` neighbours (tiny or sparse graph): take all.
                labels, dists = self._all(seg, q)
                fetch = count
            labels = labels[0].astype(np.int64)
            scores = (1.0 - dists[0]).astype(np.float32)
            ok = accept(labels)
            if ok.sum() >= k or fetch >= count:
                return labels[ok][:k], scores[ok][:k]
            fetch = min(count, fetch * 4)

    def _all(self, seg: Segment, q: np.ndarray):
        ids = np.asarray(seg.index.get_ids_list(), dtype=np.int64)
        vecs = np.asarray(seg.index.get_items(ids, return_type="numpy"), dtype=np.float32)
        sims = vecs @ q[0]
        order = np.argsort(-sims)
        return ids[order][None, :], (1.0 - sims[order])[None, :]

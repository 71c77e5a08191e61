"""One finished build, opened for search: the usearch graph through a memory-mapped view, the
unit float32 rows and the position -> row id map as memory-mapped files.

Owns: turning a query into re-ranked graph positions. Resident anonymous memory stays small:
the graph and the rows live in the page cache (RssFile), which the kernel may drop and re-read;
only the id order (when remap left the ids unsorted: 16 bytes a row) and the caller's delete mask
(a byte a row) are in RAM.

Graph keys are positions 0..rows-1; row i of rows.f32 is key i's unit vector, and the id map
gives the caller's row id. Never written after open except by `remap` (a new id file).
"""

from __future__ import annotations

import mmap
import os

import numpy as np
from usearch.index import Index

import kissvdb.vectors.diskann.files as files

F32 = np.float32


class Graph:
    def __init__(self, path: str, manifest: dict, expansion_search: int):
        self.path = path
        self.name = os.path.basename(path)
        self.manifest = manifest
        self.rows_n = int(manifest["rows"])
        self.dim = int(manifest["dim"])
        names = manifest["files"]
        graph_path = os.path.join(path, names["graph"])
        self.index = Index.restore(graph_path, view=True, enable_key_lookups=False)
        if self.index is None or self.index.size != self.rows_n or self.index.ndim != self.dim:
            raise files.CorruptIndex(f"{graph_path}: does not hold {self.rows_n} rows of dim {self.dim}")
        self.index.expansion_search = expansion_search
        self.rows = _memmap(os.path.join(path, names["rows"]), F32, (self.rows_n, self.dim))
        self.set_ids(_memmap(os.path.join(path, names["ids"]), np.int64, (self.rows_n,)))

    def set_ids(self, ids: np.ndarray) -> None:
        """Install a position -> id map; keeps an argsort only when the ids are not ascending."""
        self.ids = ids
        ascending = self.rows_n < 2 or bool(np.all(ids[1:] > ids[:-1]))
        self.order = None if ascending else np.argsort(ids, kind="stable")
        self.sorted_ids = ids if ascending else np.asarray(ids)[self.order]

    def positions_of(self, ids: np.ndarray) -> np.ndarray:
        """Graph position of each id, -1 where the graph does not hold it."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.rows_n == 0 or len(ids) == 0:
            return np.full(len(ids), -1, np.int64)
        at = np.minimum(np.searchsorted(self.sorted_ids, ids), self.rows_n - 1)
        pos = at if self.order is None else self.order[at]
        return np.where(np.asarray(self.ids[pos]) == ids, pos, -1).astype(np.int64)

    def candidates(self, q: np.ndarray, count: int) -> np.ndarray:
        """Up to `count` graph positions near the unit query `q`, approximate order."""
        return self.index.search(q, count, threads=1).keys.astype(np.int64)

    def scores(self, positions: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Exact score (dot of unit vectors, clipped to [-1, 1]) of each position; the gather
        runs in ascending position order, the order of the rows file."""
        if len(positions) == 0:
            return np.zeros(0, F32)
        order = np.argsort(positions, kind="stable")
        out = np.empty(len(positions), F32)
        out[order] = np.asarray(self.rows[positions[order]]) @ q
        return np.clip(out, -1, 1, out=out)

    def files(self) -> list[str]:
        return [f"{self.name}/{n}" for n in (self.manifest["files"]["graph"], self.manifest["files"]["rows"],
                                             self.manifest["files"]["ids"])]

    def close(self) -> None:
        self.index = None
        self.rows = None
        self.ids = None


def _memmap(path: str, dtype, shape: tuple) -> np.ndarray:
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if size != expected:
        raise files.CorruptIndex(f"{path}: {size} bytes, expected {expected}")
    if expected == 0:
        return np.zeros(shape, dtype)
    m = np.memmap(path, dtype=dtype, mode="r", shape=shape)
    # Reads are a few scattered rows per query: without this, each fault reads ahead 128 KiB
    # or more, and the page cache fills with rows nobody asked for (RssFile at 1M: 1.4 GiB).
    m._mmap.madvise(mmap.MADV_RANDOM)
    return m

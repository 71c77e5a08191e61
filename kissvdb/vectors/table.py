"""The per-row table of a collection and its checkpoint file (`table-NNNNNN.npz`).

One row per upsert record still held in run files, in run order (vnos ascending). Columns:
vno (vector number, the HNSW label), off (WAL offset of the record), norm (L2 norm of the stored
vector), scale (Q8 scale), lst (IVF list, -1 before training), live (0/1), plus ids and metas
(canonical JSON bytes or None). Arrays grow by doubling; readers only ever look at rows below
the count they were handed, so a writer appending beyond it never disturbs them.

The file is an uncompressed .npz read with allow_pickle=False: plain arrays, no pickle.
"""

from __future__ import annotations

import io

import numpy as np

from kissvdb.errors import Corruption
from kissvdb.fsutil import atomic_write

# The `parsed` list beside the table (one entry a row, see rows.parsed_meta) holds this for a
# row whose meta has not been parsed yet.
UNPARSED = object()

COLUMNS = {"vno": np.int64, "off": np.int64, "norm": np.float32, "scale": np.float32,
           "lst": np.int32, "live": np.uint8}


class Table:
    __slots__ = ("n", "cap", "cols", "ids", "metas")

    def __init__(self, cap: int = 1024):
        self.n = 0
        self.cap = max(16, cap)
        self.cols = {name: np.zeros(self.cap, dtype=dt) for name, dt in COLUMNS.items()}
        self.ids: list[str] = []
        self.metas: list[bytes | None] = []

    def col(self, name: str) -> np.ndarray:
        return self.cols[name]

    def reserve(self, rows: int) -> None:
        if rows <= self.cap:
            return
        cap = max(rows, self.cap * 2)
        new = {}
        for name, arr in self.cols.items():
            a = np.zeros(cap, dtype=arr.dtype)
            a[: self.n] = arr[: self.n]
            new[name] = a
        self.cols = new  # readers holding the old arrays keep a valid prefix
        self.cap = cap

    def append(self, *, vno, off, norm, scale, lst, ids, metas) -> int:
        k = len(ids)
        first = self.n
        self.reserve(first + k)
        c = self.cols
        c["vno"][first:first + k] = vno
        c["off"][first:first + k] = off
        c["norm"][first:first + k] = norm
        c["scale"][first:first + k] = scale
        c["lst"][first:first + k] = lst
        c["live"][first:first + k] = 0
        self.ids.extend(ids)
        self.metas.extend(metas)
        self.n = first + k
        return first

    @classmethod
    def from_columns(cls, cols: dict, ids: list, metas: list) -> "Table":
        n = len(ids)
        t = cls(n)
        for name, dt in COLUMNS.items():
            t.cols[name][:n] = np.asarray(cols[name], dtype=dt)[:n]
        t.ids = list(ids)
        t.metas = list(metas)
        t.n = n
        return t

    # -- file ------------------------------------------------------------------------------

    def save(self, path: str, *, fsync: bool = True) -> None:
        n = self.n
        idb = [s.encode("utf-8") for s in self.ids[:n]]
        id_off = np.zeros(n + 1, np.int64)
        np.cumsum([len(b) for b in idb], out=id_off[1:])
        metab = [m if m is not None else b"" for m in self.metas[:n]]
        meta_off = np.zeros(n + 1, np.int64)
        np.cumsum([len(b) for b in metab], out=meta_off[1:])
        has_meta = np.fromiter((m is not None for m in self.metas[:n]), dtype=np.uint8, count=n)
        buf = io.BytesIO()
        arrays = {name: self.cols[name][:n] for name in COLUMNS}
        np.savez(buf, ids=np.frombuffer(b"".join(idb), np.uint8), id_off=id_off,
                 meta=np.frombuffer(b"".join(metab), np.uint8), meta_off=meta_off, has_meta=has_meta,
                 **arrays)
        atomic_write(path, buf.getvalue(), fsync=fsync)

    @classmethod
    def load(cls, path: str, rows: int) -> "Table":
        try:
            z = np.load(path, allow_pickle=False)
            cols = {name: z[name] for name in COLUMNS}
            ids_blob = z["ids"].tobytes()
            id_off = z["id_off"]
            meta_blob = z["meta"].tobytes()
            meta_off = z["meta_off"]
            has_meta = z["has_meta"]
        except (OSError, ValueError, KeyError) as exc:
            raise Corruption(path, 0, f"unreadable table: {exc}") from None
        n = len(id_off) - 1
        if n != rows or any(len(c) != n for c in cols.values()):
            raise Corruption(path, 0, f"table holds {n} rows, manifest expects {rows}")
        io_ = id_off.tolist()
        mo = meta_off.tolist()
        hm = has_meta.tolist()
        ids = [ids_blob[io_[i]:io_[i + 1]].decode("utf-8") for i in range(n)]
        metas = [meta_blob[mo[i]:mo[i + 1]] if hm[i] else None for i in range(n)]
        return cls.from_columns(cols, ids, metas)

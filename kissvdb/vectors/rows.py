"""Reading a published view: vectors by global row number, parsed metas, group_by keys.

Separate from collection.py because every reader (search, training, merge, compaction, the
disk index) goes through these, never through the writer: they touch only the `View` they are
handed, plus the parsed-meta and group-key caches, which readers fill and writers only drop.
Rows are numbered across run files (a view's `starts`); metas are parsed on first use and kept
only when small (PARSED_META_KEEP_BYTES). Each function takes the collection (or only the view);
`Collection` keeps thin methods (`_rows_f32`, `_rows_q8`, `parsed_meta`, `group_key`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import orjson

from kissvdb.vectors.distance import F32
from kissvdb.vectors.table import UNPARSED

if TYPE_CHECKING:
    from kissvdb.vectors.collection import Collection, View

# Metas up to this many bytes are kept parsed after a filter or group_by read them. A larger one
# is parsed again each time: kept, its objects would stay on the heap for good, and every
# garbage collection that reaches them walks them all (600 metas of 64 KB: a 200 ms pause,
# holding the interpreter lock, and so the event loop).
PARSED_META_KEEP_BYTES = 4096
GROUP_KEY_FIELDS_MAX = 4  # group_by fields whose keys of large metas are kept (see group_keys)


def rows_f32(col: Collection, v: View, rows: np.ndarray) -> np.ndarray:
    """Float32 rows by global row number, gathered across run files."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), col.dim), F32)
    if len(rows) == 0:
        return out
    if len(v.f32) == 1 and v.starts[0] == 0:
        return v.f32[0].take(rows, axis=0)  # one run file: its rows are the global rows
    ri = np.searchsorted(v.starts, rows, side="right") - 1
    if ri.min() == ri.max():
        i = int(ri[0])
        out[:] = v.f32[i][rows - v.starts[i]]
        return out
    for i in np.unique(ri).tolist():
        sel = ri == i
        out[sel] = v.f32[i][rows[sel] - v.starts[i]]
    return out


def rows_q8(col: Collection, v: View, rows: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows), col.dim), np.int8)
    if len(rows) == 0:
        return out
    ri = np.searchsorted(v.starts, rows, side="right") - 1
    if ri.min() == ri.max():
        i = int(ri[0])
        out[:] = v.q8[i][rows - v.starts[i]]
        return out
    for i in np.unique(ri).tolist():
        sel = ri == i
        out[sel] = v.q8[i][rows[sel] - v.starts[i]]
    return out


def parsed_meta(v: View, row: int, *, keep: bool = True):
    """A row's parsed meta, kept for the next call unless `keep` is False (the metadata
    columns read every row once and keep only what they need) or the meta is larger than
    PARSED_META_KEEP_BYTES."""
    p = v.parsed[row]
    if p is UNPARSED:
        raw = v.table.metas[row]
        if raw is None:
            p = None
        else:
            p = orjson.loads(raw)
            keep = keep and len(raw) <= PARSED_META_KEEP_BYTES
        if keep:
            v.parsed[row] = p
    return p


def group_key(col: Collection, v: View, row: int, field: str, key_of):
    """`key_of(parsed meta)` of `row` for a group_by on `field`. A large meta's key is kept
    (per field, for GROUP_KEY_FIELDS_MAX fields of the current generation): a group_by reads
    one top-level field of hundreds of metas per search, and parsing 64 KB metas again for
    each one costs a search 100 ms of the interpreter lock. Small metas are kept parsed."""
    raw = v.table.metas[row]
    if raw is None or len(raw) <= PARSED_META_KEEP_BYTES:
        return key_of(parsed_meta(v, row))
    keys = col._group_keys.get((v.gen, field))
    if keys is None:
        caches = {gf: c for gf, c in col._group_keys.items() if gf[0] == v.gen}
        while len(caches) >= GROUP_KEY_FIELDS_MAX:
            del caches[next(iter(caches))]
        keys = caches[(v.gen, field)] = {}
        col._group_keys = caches
    key = keys.get(row)
    if key is None:
        with col._group_keys_lock:  # two searches of a batch would parse the same metas
            key = keys.get(row)
            if key is None:
                key = keys[row] = key_of(parsed_meta(v, row))
    return key

"""Writing a build: rows in, a finished build directory out (not yet serving).

`write_build` runs on a worker thread. It streams the rows in chunks: each chunk is normalised,
appended to rows.f32 and added to the usearch graph with `threads` threads. usearch releases the
GIL inside `add`, so the Python between chunks is all the build holds it for (one chunk's
normalisation, a few ms). Progress is reported per chunk as (rows done, rows total), and
`should_stop()` is asked per chunk: a stopped build deletes its temp directory.

Everything goes into `<root>/.tmp-build-<ms>-<pid>/` and is fsynced by `files.publish`; until then
nothing the serving index reads has changed. A kill -9 leaves only the temp directory, which the
next open deletes.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
from usearch.index import Index

import kissvdb.vectors.diskann.files as files
from kissvdb.vectors.distance import unit_rows
from kissvdb.vectors.diskann.params import DiskAnnParams

F32 = np.float32
CHUNK_MIN, CHUNK_MAX = 1024, 16384


class BuildStopped(Exception):
    """`should_stop()` answered true: the temp directory is gone, nothing changed."""


def chunk_size(n: int) -> int:
    """About 100 progress steps, each large enough for usearch's threads to share."""
    return min(CHUNK_MAX, max(CHUNK_MIN, n // 100))


def write_build(root: str, ids: np.ndarray, rows, metric: str, params: DiskAnnParams, *,
                progress=None, should_stop=None, now_ms: int | None = None) -> tuple[str, dict]:
    """Build into a new temp directory under `root`; returns (temp path, manifest). The caller
    publishes it (`files.publish`) or deletes it. `rows` may be a memmap: it is read once, in
    order, a chunk at a time."""
    n, dim = int(rows.shape[0]), int(rows.shape[1])
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} rows")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f"{files.TMP_PREFIX}{now_ms}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        manifest = _fill(tmp, np.asarray(ids, np.int64), rows, n, dim, metric, params, progress, should_stop)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["built_at_ms"] = now_ms
    files.write_manifest(tmp, manifest)
    return tmp, manifest


def _fill(tmp, ids, rows, n, dim, metric, params, progress, should_stop) -> dict:
    index = Index(ndim=dim, metric="ip", dtype="i8", connectivity=params.connectivity,
                  expansion_add=params.expansion_add, expansion_search=params.expansion_search,
                  enable_key_lookups=False)
    step = chunk_size(n)
    with open(os.path.join(tmp, files.ROWS), "wb") as out:
        for lo in range(0, n, step):
            if should_stop is not None and should_stop():
                raise BuildStopped()
            hi = min(n, lo + step)
            chunk = unit_rows(rows[lo:hi])
            out.write(chunk.tobytes())
            index.add(np.arange(lo, hi, dtype=np.uint64), chunk, threads=params.build_threads)
            if progress is not None:
                progress(hi, n)
    if n == 0 and progress is not None:
        progress(0, 0)
    index.save(os.path.join(tmp, files.GRAPH))
    ids_name = files.ids_file(0)
    ids.astype("<i8").tofile(os.path.join(tmp, ids_name))
    return {"format": files.FORMAT, "metric": metric, "dim": dim, "rows": n, "params": params.as_dict(),
            "usearch": {"dtype": "i8", "metric": "ip", "connectivity": params.connectivity,
                        "expansion_add": params.expansion_add},
            "files": {"graph": files.GRAPH, "rows": files.ROWS, "ids": ids_name}, "id_epoch": 0}

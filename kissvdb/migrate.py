"""Data format migrations: bring an older DATA_DIR to the format this build writes.

Runs inside `DataDir.open`, under DATA_DIR's lock and before anything else opens a file.
`STEPS[v]` moves a data directory from format v to v+1; `migrate` runs them in order and
rewrites FORMAT after each step, atomically, once everything the step moved is durable.

Guarantees: each step is idempotent and crash-safe. Until FORMAT names the new version the
old one is what the directory claims, and the step, run again at the next boot, picks up
where a crash stopped it. A step never deletes data a server of the old format would have
served; it deletes only what that server deleted at open (interrupted creations and drops).
Never: rewrites file contents (the WAL, SQLite files and collection files are the same in
both formats), or touches anything outside DATA_DIR.

Format 1 -> 2 (issue 9): collections move from `vectors/<name>/`, beside registry.json, to
`vectors/collections/<collection_dir_name(name)>/` (kissvdb/layout.py). First `vectors/` is
renamed to `vectors.format1/` (one atomic rename, so no format-1 collection called
`collections` can stand in the way), then a new `vectors/collections/` is made and each
collection and the registry are moved into place by rename, then the leftovers a format-1
boot would have deleted are deleted. Data directories format 1 could no longer boot because a
collection was named `registry.json` (issue 9) come back: the collection moves like any other.
A directory kissvdb 1 never served from (a name collections cannot have) stays in
`vectors.format1/`, logged, for its owner to look at. FORMAT is written only after the moves
are durable, and `finish` (every open) removes `vectors.format1/` once it is empty.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Callable

from kissvdb.fsutil import fsync_dir
from kissvdb.layout import (
    COLLECTIONS_DIR, DROPPED_PREFIX, FORMAT1_VECTORS, REGISTRY, STAGING_PREFIX, VECTORS_DIR, collection_dir_name,
    is_valid_collection_name,
)

log = logging.getLogger("kissvdb.datadir")

_MANIFEST = "manifest.json"  # kissvdb/vectors/manifest.py; not imported: that pulls in numpy


def _format1_to_2(path: str, fsync: bool) -> None:
    vectors = os.path.join(path, VECTORS_DIR)
    old = os.path.join(path, FORMAT1_VECTORS)
    if not os.path.isdir(old):
        if not os.path.isdir(vectors):
            return  # no vector store yet: nothing to move
        os.replace(vectors, old)
        _sync(fsync, path)
    collections = os.path.join(vectors, COLLECTIONS_DIR)
    os.makedirs(collections, exist_ok=True)
    _sync(fsync, path, vectors)
    entries = sorted(os.listdir(old))
    moved = 0
    for entry in entries:
        src = os.path.join(old, entry)
        if entry == REGISTRY and not os.path.isdir(src):
            os.replace(src, os.path.join(vectors, REGISTRY))
        elif (is_valid_collection_name(entry) and os.path.isdir(src)
              and os.path.exists(os.path.join(src, _MANIFEST))):
            # A directory called registry.json is a collection of that name that took the
            # registry's place (issue 9): it moves like any other; with no registry file the
            # next boot replays creations and drops from the start of the WAL, which is safe.
            os.replace(src, os.path.join(collections, collection_dir_name(entry)))
            moved += 1
            log.info("format 1 -> 2: moved vector collection %r (%d of at most %d)", entry, moved, len(entries))
    _sync(fsync, collections, vectors, old)
    for entry in sorted(os.listdir(old)):
        src = os.path.join(old, entry)
        if _format1_deleted_at_open(entry, src):
            shutil.rmtree(src) if os.path.isdir(src) else os.unlink(src)
        else:
            log.warning("format 1 -> 2: left %s where it is: not a collection kissvdb 1 served", src)
    _sync(fsync, old)


def _format1_deleted_at_open(entry: str, src: str) -> bool:
    """What a format-1 VectorStore.open deleted (or an atomic_write temp of the registry)."""
    if entry.startswith((STAGING_PREFIX, DROPPED_PREFIX)):
        return True
    if entry.startswith(f".{REGISTRY}.") and entry.endswith(".tmp"):
        return True
    return os.path.isdir(src) and not os.path.exists(os.path.join(src, _MANIFEST))


def finish(path: str) -> None:
    """After FORMAT moved on: remove `vectors.format1/` if the migration emptied it."""
    try:
        os.rmdir(os.path.join(path, FORMAT1_VECTORS))
    except OSError:
        pass  # absent, or it holds what the migration logged and left


def _sync(fsync: bool, *directories: str) -> None:
    if fsync:
        for directory in directories:
            fsync_dir(directory)


STEPS: dict[int, Callable[[str, bool], None]] = {1: _format1_to_2}


def migrate(path: str, found: int, target: int, write_format: Callable[[int], None], *, fsync: bool) -> None:
    """Run STEPS[found .. target-1] on `path`, writing FORMAT after each (see the docstring)."""
    for version in range(found, target):
        log.info("data format %d -> %d: migrating %s", version, version + 1, path)
        STEPS[version](path, fsync)
        write_format(version + 1)
        log.info("data format %d -> %d: done", version, version + 1)

"""Durable file replacement: the two primitives every on-disk structure relies on.

`atomic_write` guarantees that after it returns the file holds exactly the new bytes, and that
after a crash at any moment the file holds either the old or the new bytes, never a mix.
`fsync_dir` makes a directory entry change (create, rename, delete) durable. Neither retries a
failed fsync: after one, the page cache may already have dropped the dirty data, so a second
fsync can "succeed" without the data being on disk. Errors propagate and the caller stops.
"""

from __future__ import annotations

import os
import tempfile


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so entries created, renamed or deleted in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data`: temp file in the same directory, write, fsync, rename, fsync dir.

    The temp file lives in the same directory because rename is atomic only within one
    filesystem. `fsync=False` skips both fsyncs (memory/test mode only: not crash-safe).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        fsync_dir(directory)


def unlink_quiet(path: str | os.PathLike) -> None:
    """Remove a file if it is there (an orphan, or one a crash already removed)."""
    try:
        os.unlink(path)
    except (FileNotFoundError, IsADirectoryError):
        pass

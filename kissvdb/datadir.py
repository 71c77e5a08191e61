"""DATA_DIR ownership: one process at a time, and only a format this build understands.

`DataDir.open` takes an exclusive, non-blocking `flock` on `DATA_DIR/LOCK` and holds it until
`close()`; a second server, or a server beside `repair`/`vacuum`, gets `DataDirLocked` instead
of two writers on one WAL. The kernel drops the lock when the process dies, so a crash never
leaves a stale lock behind (the pid written into LOCK is only for the error message).
It checks `DATA_DIR/FORMAT` ("kissvdb-format 1"), refusing a newer or unknown format with
`ConfigError` rather than misreading it. A directory it creates is its owner's only (0700).
It never touches any other file in the directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re

from kissvdb.errors import ConfigError, DataDirLocked
from kissvdb.fsutil import atomic_write, fsync_dir

DATA_FORMAT_VERSION = 1
FORMAT_FILE = "FORMAT"
LOCK_FILE = "LOCK"
PRIVATE_DIR_MODE = 0o700  # the data is its owner's; files inside are created 0600
_FORMAT_LINE = re.compile(r"kissvdb-format (\d+)\n?")


class DataDir:
    """An opened, locked data directory. Use as a context manager or call `close()`."""

    def __init__(self, path: str, lock_fd: int):
        self._path = path
        self._lock_fd: int | None = lock_fd

    @property
    def path(self) -> str:
        return self._path

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = True, *, fsync: bool = True) -> "DataDir":
        """Create (if `create`) and lock `path`, then write or check its FORMAT file.

        Raises DataDirLocked if another open DataDir (any process, or this one: flock is per
        open file description) holds the lock, ConfigError if the directory is missing (and
        not `create`) or holds another format. `fsync=False` is for memory/test mode.
        """
        path = os.path.abspath(os.fspath(path))
        if create:
            created = not os.path.isdir(path)
            os.makedirs(path, mode=PRIVATE_DIR_MODE, exist_ok=True)
            if created and fsync:
                fsync_dir(os.path.dirname(path))
        elif not os.path.isdir(path):
            raise ConfigError(f"data directory {path} does not exist")
        elif not os.path.exists(os.path.join(path, FORMAT_FILE)):
            # Checked before creating LOCK: pointing an offline command at the wrong directory
            # must not leave a file behind in it.
            raise ConfigError(f"{path} is not a kissvdb data directory (no {FORMAT_FILE} file)")

        lock_path = os.path.join(path, LOCK_FILE)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise DataDirLocked(
                    f"data directory {path} is in use: {lock_path} is locked by another kissvdb "
                    f"process{_holder(fd)} (a running server, repair or vacuum)"
                ) from None
            # Informational only; the flock is the lock.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _check_format(path, create=create, fsync=fsync)
        except BaseException:
            os.close(fd)  # releases the flock if we took it
            raise
        return cls(path, fd)

    def close(self) -> None:
        """Release the lock. Idempotent."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    def __enter__(self) -> "DataDir":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DataDir({self._path!r}{', closed' if self.closed else ''})"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _check_format(path: str, *, create: bool, fsync: bool) -> None:
    format_path = os.path.join(path, FORMAT_FILE)
    try:
        with open(format_path, "rb") as f:
            raw = f.read(256)
    except FileNotFoundError:
        if not create:
            raise ConfigError(f"{path} is not a kissvdb data directory (no {FORMAT_FILE} file)") from None
        atomic_write(format_path, f"kissvdb-format {DATA_FORMAT_VERSION}\n".encode(), fsync=fsync)
        return
    match = _FORMAT_LINE.fullmatch(raw.decode("utf-8", "replace"))
    if match is None:
        raise ConfigError(f"{format_path}: unrecognized content {raw[:64]!r}; expected 'kissvdb-format {DATA_FORMAT_VERSION}'")
    version = int(match.group(1))
    if version != DATA_FORMAT_VERSION:
        newer = "a newer" if version > DATA_FORMAT_VERSION else "an older"
        raise ConfigError(
            f"{format_path}: data format {version} was written by {newer} kissvdb; "
            f"this build reads format {DATA_FORMAT_VERSION}"
        )

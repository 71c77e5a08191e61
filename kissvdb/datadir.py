"""DATA_DIR ownership: one process at a time, and only a format this build understands.

`DataDir.open` takes an exclusive, non-blocking `flock` on `DATA_DIR/LOCK` and holds it until
`close()`; a second server, or a server beside `repair`/`vacuum`, gets `DataDirLocked` instead
of two writers on one WAL. The kernel drops the lock when the process dies, so a crash never
leaves a stale lock behind (the pid written into LOCK is only for the error message).
It checks `DATA_DIR/FORMAT` ("kissvdb-format 2"), refusing a newer or unknown format with
`ConfigError` rather than misreading it, and brings an older one up to date first
(kissvdb/migrate.py) unless asked not to. A directory it creates is its owner's only (0700).
Apart from a migration it never touches any other file in the directory.

Format history: 1 kept vector collections at `vectors/<name>/`; 2 keeps them at
`vectors/collections/<dir>/` (kissvdb/layout.py). The WAL, SQLite and collection files are the
same in both, so the WAL-only offline commands (`check`, `repair`) open format 1 as it is.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re

from kissvdb.errors import ConfigError, DataDirLocked
from kissvdb.fsutil import atomic_write, fsync_dir
from kissvdb.layout import FORMAT_FILE, LOCK_FILE

DATA_FORMAT_VERSION = 2
OLDEST_FORMAT_VERSION = 1  # the oldest format kissvdb/migrate.py can bring up to date
PRIVATE_DIR_MODE = 0o700  # the data is its owner's; files inside are created 0600
_FORMAT_LINE = re.compile(r"kissvdb-format (\d+)\n?")


class DataDir:
    """An opened, locked data directory. Use as a context manager or call `close()`."""

    def __init__(self, path: str, lock_fd: int, format_version: int = DATA_FORMAT_VERSION,
                 migrated_from: int | None = None):
        self._path = path
        self._lock_fd: int | None = lock_fd
        self.format_version = format_version  # what the directory holds now
        self.migrated_from = migrated_from  # the format it held before this open migrated it

    @property
    def path(self) -> str:
        return self._path

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = True, *, fsync: bool = True,
             migrate: bool = True) -> "DataDir":
        """Create (if `create`) and lock `path`, then write or check its FORMAT file.

        An older format is migrated to DATA_FORMAT_VERSION under the lock, or, with
        `migrate=False` (the WAL-only offline commands), opened as it is: `format_version`
        says which. Raises DataDirLocked if another open DataDir (any process, or this one:
        flock is per open file description) holds the lock, ConfigError if the directory is
        missing (and not `create`) or holds a format this build cannot read.
        `fsync=False` is for memory/test mode.
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
            found = _check_format(path, create=create, fsync=fsync)
            migrated_from = None
            if migrate:
                from kissvdb import migrate as migrations

                if found < DATA_FORMAT_VERSION:
                    migrations.migrate(path, found, DATA_FORMAT_VERSION,
                                       lambda version: _write_format(path, version, fsync), fsync=fsync)
                    found, migrated_from = DATA_FORMAT_VERSION, found
                migrations.finish(path)  # a crash after FORMAT moved on may have left this
        except BaseException:
            os.close(fd)  # releases the flock if we took it
            raise
        return cls(path, fd, found, migrated_from)

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


def _write_format(path: str, version: int, fsync: bool) -> None:
    atomic_write(os.path.join(path, FORMAT_FILE), f"kissvdb-format {version}\n".encode(), fsync=fsync)


def _check_format(path: str, *, create: bool, fsync: bool) -> int:
    """The format version `path` holds (writing the current one into a new directory)."""
    format_path = os.path.join(path, FORMAT_FILE)
    try:
        with open(format_path, "rb") as f:
            raw = f.read(256)
    except FileNotFoundError:
        if not create:
            raise ConfigError(f"{path} is not a kissvdb data directory (no {FORMAT_FILE} file)") from None
        _write_format(path, DATA_FORMAT_VERSION, fsync)
        return DATA_FORMAT_VERSION
    match = _FORMAT_LINE.fullmatch(raw.decode("utf-8", "replace"))
    if match is None:
        raise ConfigError(f"{format_path}: unrecognized content {raw[:64]!r}; "
                          f"expected 'kissvdb-format {DATA_FORMAT_VERSION}'")
    version = int(match.group(1))
    if version > DATA_FORMAT_VERSION or version < OLDEST_FORMAT_VERSION:
        newer = "a newer" if version > DATA_FORMAT_VERSION else "an older"
        raise ConfigError(
            f"{format_path}: data format {version} was written by {newer} kissvdb; "
            f"this build reads formats {OLDEST_FORMAT_VERSION} to {DATA_FORMAT_VERSION}"
        )
    return version

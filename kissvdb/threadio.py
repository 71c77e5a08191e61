"""Bytes written by the calling thread, from Linux's per-thread I/O accounting.

SQLite has no live, per-connection measure of the temporary files a statement writes (its
SQLITE_DBSTATUS_TEMPBUF_SPILL counts a sort's spill only once the sort ends, and temporary
b-trees not at all). Each user SQL connection has a thread of its own, though, and the kernel
counts what each thread writes (`wchar` in /proc/thread-self/io: bytes passed to write(2) and
its relatives, whether or not they reached the disk yet). The difference between two readings on
the connection's thread is what its statement wrote.

Guarantees: `read()` reads the counter of the thread calling it (it reopens the file when called
from another thread). Never does: anything where the file is missing (not Linux, or a kernel
without task I/O accounting): `available` is then False and `read()` returns None.
"""

from __future__ import annotations

import os
import threading

_PATH = "/proc/thread-self/io"
_KEY = b"wchar:"


class ThreadWrites:
    def __init__(self) -> None:
        self._fd: int | None = None
        self._tid: int | None = None
        self.available = os.path.exists(_PATH)

    def read(self) -> int | None:
        """Bytes this thread has written so far, or None where the kernel does not say."""
        if not self.available:
            return None
        tid = threading.get_native_id()
        try:
            if self._tid != tid:
                self.close()
                self._fd = os.open(_PATH, os.O_RDONLY | os.O_CLOEXEC)
                self._tid = tid
            data = os.pread(self._fd, 512, 0)
        except OSError:
            self.available = False
            self.close()
            return None
        start = data.find(_KEY)
        if start < 0:
            self.available = False
            return None
        end = data.find(b"\n", start)
        return int(data[start + len(_KEY):end if end >= 0 else len(data)])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._tid = None

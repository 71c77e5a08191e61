"""The pool of read-only state.sqlite connections that run document finds.

A find used to run on the documents writer's thread, so one slow find (seconds on large
documents) held every document write that needed that thread. Here each find runs on a reader
(kissvdb/documents/reader.py), one apsw connection on its own dedicated thread; state.sqlite is in WAL
mode, so readers and the writer do not wait for each other.

Guarantees:
- At most DOC_FIND_CONCURRENCY finds run at once. A find waits for a free reader at most until
  just before its request's deadline (REQUEST_TIMEOUT_SECS without one), and at most
  FIND_WAITERS_MAX finds wait at a time; otherwise it gets 503 + Retry-After (Overloaded) and
  nothing ran.
- Each find has a time limit (SQL_TIME_LIMIT_MS, capped below the request timeout: 400 naming
  `filter`), and a find whose caller gives up is interrupted at once. A reader is handed back
  only when its statement has really ended, so the bound counts finds that still run.
- state.sqlite's WAL stays bounded. A read snapshot keeps SQLite from restarting the WAL, so
  while finds overlap without a gap, writes only append. When state.sqlite-wal is larger than
  STATE_WAL_MAX_BYTES, new finds wait until the running ones end (each within its time limit),
  then the WAL is reset (a TRUNCATE checkpoint on the documents writer's thread) before they
  start. So the file stays below that size plus what one time limit's worth of writes adds.
  `reset_wal_if_large()` does the same from the periodic checkpoint, after finds stop.
Never does: write, or run a find on the writer's thread.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Awaitable, Callable

import trio

from kissvdb.documents.query import CompiledFind
from kissvdb.documents.reader import DocReader
from kissvdb.errors import InvalidArgument, Overloaded
from kissvdb.sql.user import SqlJob

from kissvdb.actors.threads import DedicatedThread

log = logging.getLogger("kissvdb.documents.state")

FIND_WAITERS_MAX = 64  # finds waiting for a reader; more are refused at once (503)
DEADLINE_MARGIN_S = 0.5  # a waiting find gives up this long before its request deadline
WAL_RESET_RETRY_S = 1.0  # after a reset that could not finish, new finds do not wait for another


class DocReaderPool:
    def __init__(self, path: str, *, concurrency: int, time_limit_ms: int, wait_max_s: float,
                 wal_max_bytes: int, reset_wal: Callable[[], Awaitable[int]]):
        self.path = path
        self.wal_path = path + "-wal"
        self.concurrency = concurrency
        self.time_limit_ms = time_limit_ms
        self.wait_max_s = wait_max_s
        self.wal_max_bytes = wal_max_bytes
        self._reset_wal = reset_wal
        self._threads: list[DedicatedThread] = []
        self._readers: list[DocReader] = []
        self._free: list[int] = []
        self._changed = trio.Event()
        self._resetting = False
        self._next_reset_at = float("-inf")
        self.running = 0
        self.waiting = 0
        self.finds_total = 0
        self.timeouts_total = 0
        self.overloaded_total = 0
        self.wal_resets_total = 0

    async def open(self) -> None:
        """Open the readers (state.sqlite and its schema must exist: the DocStore made them)."""
        for i in range(self.concurrency):
            thread = DedicatedThread(f"kissvdb-docs-r{i}")
            self._threads.append(thread)
            self._readers.append(await thread.run(DocReader, self.path))
            self._free.append(i)

    async def aclose(self) -> None:
        for thread, reader in zip(self._threads, self._readers):
            await thread.run(reader.close)
        for thread in self._threads:
            await thread.aclose()
        self._readers = []
        self._free = []

    # -- finds -------------------------------------------------------------------------------

    async def find(self, q: CompiledFind) -> list[tuple]:
        """One page of rows from a reader (see DocReader.find), within the limits above."""
        job = SqlJob(0.0, self.time_limit_ms)
        try:
            rows = await self._run(DocReader.find, q, job=job)
        except InvalidArgument:
            if job.interrupted == "time limit":
                self.timeouts_total += 1
            raise
        self.finds_total += 1
        return rows

    async def explain(self, q: CompiledFind) -> list[str]:
        return await self._run(DocReader.explain, q)

    async def _run(self, method: Callable, q: CompiledFind, *, job: SqlJob | None = None):
        """`method(reader, q[, job])` on a free reader's thread."""
        i = await self._acquire()
        args: tuple = (self._readers[i], q)
        if job is not None:
            job.deadline = time.monotonic() + job.limit_ms / 1000.0  # from the statement's start
            args += (job,)
        done = trio.Event()
        box: list = []

        def finished(ok: bool, value) -> None:
            # Runs on the Trio thread once the statement has ended, even if nobody waits now.
            self.running -= 1
            self._free.append(i)
            self._notify()
            box.append((ok, value))
            done.set()

        self.running += 1
        self._threads[i].submit(method, *args, callback=finished)
        try:
            await done.wait()
        except trio.Cancelled:
            if job is not None:
                job.cancelled = True  # the progress handler interrupts it at its next check
            raise
        ok, value = box[0]
        if not ok:
            raise value
        return value

    # -- waiting for a reader ------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _wait_deadline(self) -> float:
        deadline = trio.current_effective_deadline()
        if deadline == float("inf"):
            deadline = trio.current_time() + self.wait_max_s
        return deadline - DEADLINE_MARGIN_S

    async def _acquire(self) -> int:
        if self.waiting >= FIND_WAITERS_MAX:
            self.overloaded_total += 1
            raise Overloaded("too many document finds waiting, retry later")
        self.waiting += 1
        try:
            with trio.move_on_at(self._wait_deadline()):
                while True:
                    if self._resetting or not self._free:
                        await self._changed.wait()
                    elif self._wal_large() and trio.current_time() >= self._next_reset_at:
                        await self._reset_when_idle()
                    else:
                        return self._free.pop()
        finally:
            self.waiting -= 1
        self.overloaded_total += 1
        raise Overloaded("every document find reader stayed busy, retry later")

    # -- keeping the WAL bounded ---------------------------------------------------------------

    def wal_bytes(self) -> int:
        try:
            return os.stat(self.wal_path).st_size
        except FileNotFoundError:
            return 0

    def _wal_large(self) -> bool:
        return self.wal_bytes() > self.wal_max_bytes

    async def _reset_when_idle(self) -> None:
        """Hold new finds back, wait for the running ones to end, reset the WAL."""
        self._resetting = True
        try:
            while self.running:
                await self._changed.wait()
            await self._reset()
        finally:
            self._resetting = False
            self._notify()

    async def _reset(self) -> None:
        before = self.wal_bytes()
        busy = await self._reset_wal()
        self.wal_resets_total += 1
        if busy:
            self._next_reset_at = trio.current_time() + WAL_RESET_RETRY_S
        log.info("state.sqlite WAL reset%s: %d -> %d bytes", " (incomplete: busy)" if busy else "",
                 before, self.wal_bytes())

    async def reset_wal_if_large(self) -> None:
        """For the periodic checkpoint: reset a large WAL if no find is running."""
        if self._resetting or self.running or not self._wal_large():
            return
        self._resetting = True
        try:
            await self._reset()
        finally:
            self._resetting = False
            self._notify()

    def statistics(self) -> dict[str, int]:
        return {"running": self.running, "waiting": self.waiting, "finds_total": self.finds_total,
                "timeouts_total": self.timeouts_total, "overloaded_total": self.overloaded_total,
                "wal_resets_total": self.wal_resets_total}

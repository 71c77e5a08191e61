"""DiskANN builds of one DISKANN collection, beside its actor: start, wait for, stop, and start
by themselves once the serving graph is stale past DISKANN_REBUILD_SHARE.

Why its own module: a build is long (minutes at 1M rows) and must not hold anything the
collection's writes or searches need. Its snapshot is taken under the collection's write lock
(in the apply limiter, so between two applies); the heavy part runs in a worker thread under an
engine-wide limiter of one (two builds at once would only share the cores), in the actor's
nursery, so a request that stops waiting does not stop the build. usearch releases the GIL while
it adds rows, so the event loop keeps answering every route during a build. Progress is logged
every tenth of the rows.

A build that is cancelled (shutdown, collection dropped) is asked to stop at its next chunk and
deletes its temp directory; a kill -9 leaves the temp directory, which the next open deletes;
either way the previous build keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time

import trio

from kissvdb.errors import Unavailable
from kissvdb.vectors.disk_index import BuildRunning

log = logging.getLogger("kissvdb.vectors.diskann")


class DiskAnnBuilds:
    def __init__(self, actor, limiter: trio.CapacityLimiter):
        self.actor = actor
        self.disk = actor.c.disk
        self.limiter = limiter
        self.done: trio.Event | None = None  # set when the running build ends
        self.error: BaseException | None = None
        self.builds = 0

    def answer(self) -> dict:
        """The contract's `{ok, params, status}`."""
        status = self.disk.status()
        return {"ok": True, "params": status["params"], "status": status}

    async def start(self, given: dict | None, *, wait: bool) -> dict:
        """Start a build (or find the running one); with `wait`, answer when it is done."""
        actor = self.actor
        if actor._nursery is None or actor.closed:
            raise Unavailable(actor.UNAVAILABLE)
        try:
            job = await trio.to_thread.run_sync(self.disk.begin_build, given, limiter=actor.apply_limiter)
        except BuildRunning:
            pass
        else:
            self.done = trio.Event()
            self.error = None
            actor._nursery.start_soon(self._run, job, self.done)
        if wait and self.done is not None:
            await self.done.wait()
            if self.error is not None:
                raise self.error
        return self.answer()

    async def _run(self, job, done: trio.Event) -> None:
        name = self.actor.name
        stop = threading.Event()
        total = len(job.ids)
        step = max(1, total // 10)
        marks = {"next": step}
        t0 = time.monotonic()
        log.info("%s: DiskANN build of %d rows started (%s)", name, total, job.params.as_dict())

        def progress(rows_done: int, rows_total: int) -> None:
            if rows_done >= marks["next"] or rows_done == rows_total:
                marks["next"] = rows_done + step
                log.info("%s: DiskANN build %d/%d rows (%.0f%%, %.1f s)", name, rows_done, rows_total,
                         100.0 * rows_done / max(1, rows_total), time.monotonic() - t0)

        try:
            await trio.to_thread.run_sync(lambda: job.run(progress, stop.is_set), limiter=self.limiter,
                                          abandon_on_cancel=True)
            self.builds += 1
            log.info("%s: DiskANN build of %d rows serving after %.1f s", name, total, time.monotonic() - t0)
        except trio.Cancelled:
            stop.set()  # the thread stops at its next chunk and removes its temp directory
            log.info("%s: DiskANN build stopped (shutdown or drop); the previous build serves", name)
            raise
        except Exception as exc:  # the waiting requests answer it; the collection carries on
            self.error = exc
            log.exception("%s: DiskANN build failed; the previous build serves", name)
        finally:
            done.set()

    async def reconcile(self) -> None:
        """After the boot's replay: serve the mapped build (kissvdb/vectors/disk_index.py)."""
        if self.disk.pending:
            await trio.to_thread.run_sync(self.disk.reconcile, limiter=self.actor.apply_limiter)

    async def maybe_rebuild(self) -> None:
        """Start a build when the serving one is stale past the share (or was dropped damaged)."""
        if self.disk.rebuild_due():
            st = self.disk.status()
            log.info("%s: DiskANN index %.0f%% stale (%d masked, %d unindexed): rebuilding", self.actor.name,
                     100 * st["stale_share"], st["masked_rows"], st["unindexed_rows"])
            await self.start(None, wait=False)

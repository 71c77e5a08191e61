"""A dedicated OS thread that owns one blocking resource (an apsw connection).

apsw connections must stay on one thread, and trio.to_thread hands work to whatever worker is
free, so each connection gets its own thread here, as apsw's own Trio integration does. Jobs run
strictly in submission order: a read submitted after a write sees that write.

A job keeps running if its awaiting caller is cancelled (it may be a write); the result is then
dropped. `wait_caught_up()` returns once every job submitted before it has finished, which lets
another connection's reader see what this thread's jobs committed.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

import trio


class DedicatedThread:
    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False
        self.jobs_total = 0  # submitted (counted on the Trio thread)
        self.jobs_finished = 0  # finished (counted on this thread, after the job returned)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, callback, errors_only = job
            try:
                result = (True, fn(*args))
                self.jobs_finished += 1  # only this thread writes it
                if errors_only:
                    continue
            except BaseException as exc:  # delivered to the caller, which decides
                self.jobs_finished += 1
                result = (False, exc)
            try:
                self._token.run_sync_soon(self._finished, callback, *result)
            except trio.RunFinishedError:
                return
            # Drop this job's references now: a result kept in a local until the next job
            # (a 64 MB query body, say) would stay alive on an idle thread.
            del job, fn, args, callback, result

    def _finished(self, callback: Callable[[bool, Any], None], ok: bool, value) -> None:
        callback(ok, value)

    def submit(self, fn: Callable, *args, callback: Callable[[bool, Any], None], errors_only: bool = False) -> None:
        """Queue `fn(*args)`; `callback(ok, result_or_exception)` runs later on the Trio thread.

        With `errors_only`, the callback runs only if `fn` raised: a job whose success needs no
        answer then costs the Trio thread no wake-up (each one is a socket write, an epoll
        return and a callback, tens of microseconds when the loop was idle).
        """
        if self._closed:
            raise RuntimeError("thread closed")
        self.jobs_total += 1
        self._jobs.put((fn, args, callback, errors_only))

    async def run(self, fn: Callable, *args):
        """Run `fn(*args)` on the thread and return its result (or raise its exception)."""
        done = trio.Event()
        box: list = []

        def callback(ok: bool, value) -> None:
            box.append((ok, value))
            done.set()

        self.submit(fn, *args, callback=callback)
        await done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    async def wait_caught_up(self) -> None:
        """Return once every job submitted before this call has finished (at once if they have:
        jobs that report only errors are counted too)."""
        if self.jobs_finished < self.jobs_total:
            await self.run(_nothing)  # jobs run in order: when this one runs, the others are done

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await trio.to_thread.run_sync(self._thread.join)


def _nothing() -> None:
    return None

"""How long the event loop was held: the longest single Trio task step, measured.

While one task step runs, no other task in the process can run: a request that parses, encodes
or computes for 200 ms in one step makes every other connection (`/v1/health` included) wait
200 ms. `LoopHold` is a `trio.abc.Instrument` that times every task step and keeps the longest:

    with LoopHold.installed() as hold:
        ...  # drive the requests under test
    assert hold.longest_s < LOOP_HOLD_MAX_S, hold.report()

What counts as held: the step's wall time, minus the time the loop's thread sat runnable in the
kernel's run queue waiting for a CPU (Linux `/proc/self/task/<tid>/schedstat`), which is load
from other processes on a shared box, not our doing. Computing, blocking system calls and
waiting for the GIL held by one of our own threads all count. Where schedstat is missing, the
plain wall time is used. `longest_wall_s` keeps the raw wall time for reports.

It measures the Trio run it is installed in (an in-process engine and app, with its test
client), not a server subprocess. Cost: two clock reads and two small file reads per step.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import trio

LOOP_HOLD_MAX_S = 0.1  # the budget every route family is held to (issue 9, "Budgets")


class RunQueueWait:
    """Nanoseconds a thread has waited runnable for a CPU (None where Linux does not say).

    The calling thread by default; `pid`'s thread `tid` (a server's event loop) otherwise."""

    def __init__(self, pid: int | None = None, tid: int | None = None) -> None:
        process = "self" if pid is None else str(pid)
        thread = threading.get_native_id() if tid is None else tid
        try:
            self._file = open(f"/proc/{process}/task/{thread}/schedstat", "rb", buffering=0)
        except OSError:
            self._file = None

    def ns(self) -> int | None:
        if self._file is None:
            return None
        self._file.seek(0)
        return int(self._file.read().split()[1])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class LoopHold(trio.abc.Instrument):
    def __init__(self) -> None:
        self.longest_s = 0.0
        self.longest_wall_s = 0.0
        self.longest_task: str | None = None
        self.steps = 0
        self._waits = RunQueueWait()  # built on the loop's thread: installed() runs there
        self._started: tuple[float, int | None] | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = (time.perf_counter(), self._waits.ns())

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        started, self._started = self._started, None
        if started is None:  # installed in the middle of this step
            return
        wall = time.perf_counter() - started[0]
        waited_ns = self._waits.ns()
        held = wall if waited_ns is None or started[1] is None else wall - (waited_ns - started[1]) / 1e9
        self.steps += 1
        self.longest_wall_s = max(self.longest_wall_s, wall)
        if held > self.longest_s:
            self.longest_s = held
            self.longest_task = task.name

    def report(self) -> str:
        return (f"longest task step {self.longest_s * 1000:.1f} ms in {self.longest_task} "
                f"({self.steps} steps; longest wall time {self.longest_wall_s * 1000:.1f} ms)")

    @classmethod
    @contextmanager
    def installed(cls) -> Iterator["LoopHold"]:
        """Measure every task step of the current Trio run until the block ends."""
        hold = cls()
        trio.lowlevel.add_instrument(hold)
        try:
            yield hold
        finally:
            trio.lowlevel.remove_instrument(hold)
            hold._waits.close()

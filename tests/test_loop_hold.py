"""tests/loop_hold.py catches what it is for: CPU work on the loop, a blocking call on the loop,
and a health endpoint that stops answering 200; and lets a loop that only awaits pass.
"""

from __future__ import annotations

import time

import pytest
import trio

from tests.loop_hold import LOOP_HOLD_MAX_S, run_within_budget


class Health:
    """A stand-in for GET /v1/health: answers at once with `status_code`; `called` is set once
    the probe has asked, so a test's work can wait for the probe instead of sleeping."""

    def __init__(self, status_code: int = 200):
        self.status_code = status_code
        self.calls = 0
        self.called = trio.Event()

    async def asked(self) -> None:
        """Wait for the probe's next call (run_within_budget runs `work` more than once)."""
        self.called = trio.Event()
        await self.called.wait()

    async def get(self):
        self.calls += 1
        self.called.set()
        await trio.lowlevel.checkpoint()
        return self


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def test_a_loop_that_only_awaits_is_within_budget():
    health = Health()

    async def work():
        await health.asked()
        for _ in range(20):
            await trio.lowlevel.checkpoint()
        return "done"

    with trio.fail_after(10):
        assert await run_within_budget(health.get, work) == "done"
    assert health.calls > 0


async def test_cpu_work_on_the_loop_fails_on_the_first_run():
    runs = []
    health = Health()

    async def work():
        runs.append(1)
        await health.asked()  # the probe has started
        spin(LOOP_HOLD_MAX_S * 1.5)

    with trio.fail_after(10), pytest.raises(AssertionError, match="CPU"):
        await run_within_budget(health.get, work)
    assert runs == [1]


async def test_a_blocking_call_on_the_loop_fails_every_run():
    health = Health()

    async def work():
        await health.asked()
        time.sleep(LOOP_HOLD_MAX_S * 1.5)  # the blocking call under test: no CPU, but the loop is held

    with trio.fail_after(10), pytest.raises(AssertionError, match="wall-time budget exceeded on every run"):
        await run_within_budget(health.get, work)


async def test_a_failing_health_endpoint_fails():
    health = Health(503)

    async def work():
        await health.asked()
        await trio.lowlevel.checkpoint()  # the probe records its answer

    with trio.fail_after(10), pytest.raises(AssertionError, match="status 503"):
        await run_within_budget(health.get, work)

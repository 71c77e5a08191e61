"""tests/loop_hold.py catches what it is for: CPU work on the loop, a blocking call on the loop,
and a health endpoint that stops answering 200; and lets a loop that only awaits pass.
"""

from __future__ import annotations

import time

import pytest
import trio

from tests.loop_hold import LOOP_HOLD_MAX_S, run_within_budget


class Health:
    """A stand-in for GET /v1/health: answers at once with `status_code`."""

    def __init__(self, status_code: int = 200):
        self.status_code = status_code
        self.calls = 0

    async def get(self):
        self.calls += 1
        await trio.sleep(0.001)
        return self


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def test_a_loop_that_only_awaits_is_within_budget():
    health = Health()

    async def work():
        for _ in range(20):
            await trio.sleep(0.002)
        return "done"

    with trio.fail_after(10):
        assert await run_within_budget(health.get, work) == "done"
    assert health.calls > 0


async def test_cpu_work_on_the_loop_fails_on_the_first_run():
    runs = []

    async def work():
        runs.append(1)
        await trio.sleep(0.01)  # let the probe start
        spin(LOOP_HOLD_MAX_S * 1.5)

    with trio.fail_after(10), pytest.raises(AssertionError, match="CPU"):
        await run_within_budget(Health().get, work)
    assert runs == [1]


async def test_a_blocking_call_on_the_loop_fails_every_run():
    async def work():
        await trio.sleep(0.01)
        time.sleep(LOOP_HOLD_MAX_S * 1.5)  # no CPU, but the loop is held all the same

    with trio.fail_after(10), pytest.raises(AssertionError, match="wall-time budget exceeded on every run"):
        await run_within_budget(Health().get, work)


async def test_a_failing_health_endpoint_fails():
    async def work():
        await trio.sleep(0.01)

    with trio.fail_after(10), pytest.raises(AssertionError, match="status 503"):
        await run_within_budget(Health(503).get, work)

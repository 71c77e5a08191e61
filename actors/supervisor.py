"""Restart loop for materializer actors, with a budget.

An actor that raises is logged, its callers are settled (`settle_after_crash`), and a fresh one
is built from durable state by `factory` (checkpoint + WAL tail). While it is down the Engine
answers 503. Past `budget` restarts within `window_s` the failure is escalated: the exception
leaves the supervisor and stops the engine. Only `Exception` is caught; cancellation passes.
"""

from __future__ import annotations

import logging
import time

import trio

log = logging.getLogger("kissvdb.supervisor")


def _only_exceptions(group: BaseExceptionGroup) -> bool:
    return group.subgroup(lambda e: not isinstance(e, Exception)) is None


async def supervise(name: str, factory, *, on_up, on_down, budget: int = 5, window_s: float = 60.0,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    restarts: list[float] = []
    started = False
    while True:
        actor = await factory()
        failure: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(actor.run)
                on_up(actor)
                if not started:
                    started = True
                    task_status.started(actor)
        except BaseExceptionGroup as group:
            if not _only_exceptions(group):
                raise
            failure = group
        except Exception as exc:
            failure = exc
        if failure is None:
            return  # clean stop (shutdown)
        on_down()
        log.error("%s actor failed; restarting from its checkpoint", name, exc_info=failure)
        await actor.settle_after_crash()
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < window_s] + [now]
        if len(restarts) > budget:
            log.critical("%s actor failed %d times in %.0fs; giving up", name, len(restarts), window_s)
            raise failure

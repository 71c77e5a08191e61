"""The TTL sweeper, one for every model with expiring items (KV keys, documents).

Every second it asks each model's store for due items and sends each an expire command
(`Expire(key, mod_offset)`, `DocExpire(collection, id, mod_offset)`) through that model's write
actor, which logs the deletion (reason "ttl") only if the item is still the exact version seen.
Replay never reads the clock. The sweeper knows the models only through `Expiring`: where the
live actor is, how a due row becomes a command, and how a command is sent.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, NamedTuple

import trio

from kissvdb.errors import KissError

SWEEP_INTERVAL_S = 1.0
SWEEP_BATCH = 1000


class Expiring(NamedTuple):
    actor: Callable[[], Any]  # the model's live store actor, or None while it restarts
    expire: Callable[..., Any]  # a due row (its store's `due_expirations`) -> the expire command
    call: Callable[[Any], Awaitable]  # sends a command to the model's actor, answers its result


async def run_ttl_sweeper(models: list[Expiring], clock, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        await trio.sleep(SWEEP_INTERVAL_S)
        for model in models:
            await sweep_once(model, clock)


async def sweep_once(model: Expiring, clock) -> int:
    """Expire what is due in one model (up to SWEEP_BATCH items); how many were deleted."""
    actor = model.actor()
    if actor is None:
        return 0
    due = await actor.due_expirations(clock(), SWEEP_BATCH)
    expired = 0
    for row in due:
        try:
            if await model.call(model.expire(*row)) is not None:
                expired += 1
        except KissError:
            break  # overloaded or restarting: next sweep
    return expired

"""Periodic upkeep: the TTL sweeper and the checkpointer (+ WAL retention).

TTL: every second, ask state.sqlite for due keys and send each an `Expire(key, mod_offset)`
through the KV actor, which logs a `state_deleted` (reason "ttl") only if the key is still the
exact version seen. Replay never reads the clock.

Checkpoint: every SNAPSHOT_INTERVAL_SECS (and at shutdown), make state.sqlite durable up to its
applied offset; then drop WAL segments that every materializer has checkpointed past and that
retention allows.
"""

from __future__ import annotations

import logging

import trio

from kissvdb.errors import KissError
from kissvdb.kv import Expire

log = logging.getLogger("kissvdb.maintenance")

SWEEP_INTERVAL_S = 1.0
SWEEP_BATCH = 1000


async def run_ttl_sweeper(engine, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        await trio.sleep(SWEEP_INTERVAL_S)
        await sweep_once(engine)


async def sweep_once(engine) -> int:
    kv = engine.kv_actor
    if kv is None:
        return 0
    due = await kv.due_expirations(engine.clock(), SWEEP_BATCH)
    expired = 0
    for key, mod_offset in due:
        try:
            if await engine.call_kv(Expire(key, mod_offset)) is not None:
                expired += 1
        except KissError:
            break  # overloaded or restarting: next sweep
    return expired


async def run_checkpointer(engine, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        await trio.sleep(engine.settings.snapshot_interval_secs)
        await engine.checkpoint()

"""The checkpointer: every SNAPSHOT_INTERVAL_SECS (and at shutdown, by the boot sequence), make
every materializer durable up to its applied offset, then drop the WAL segments that all of
them have checkpointed past and that retention allows (Engine.checkpoint).

Nothing else compacts in the background as a separate actor: a vector collection's compaction
(dead records dropped, HNSW segments merged, IVF retrained) is run by the collection's own
actor when an apply or this checkpointer leaves it due (actors/vectors.py, `maintain`).
"""

from __future__ import annotations

import trio


async def run_checkpointer(checkpoint, interval_s: float, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        await trio.sleep(interval_s)
        await checkpoint()

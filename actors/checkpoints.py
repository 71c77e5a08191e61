"""One checkpoint of an engine: every materializer made durable, then WAL retention.

Its own module because it is the one place that knows the retention rule (a WAL segment may go
only once every materializer has checkpointed past it) and the order of the materializers;
actors/checkpointer.py decides when, this module what. `Engine.checkpoint` calls into here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kissvdb.actors.engine import Engine

log = logging.getLogger("kissvdb.engine")

MATERIALIZERS = ("kv", "docs", "vectors", "search")


async def checkpoint(engine: Engine) -> None:
    """Make every materializer durable up to its applied offset, then apply WAL retention."""
    actor = engine.kv_actor
    if actor is None:
        return
    offsets = await actor.checkpoint()
    engine.checkpointed["kv"] = offsets.get("kv", 0)
    if engine.docs is not None:
        engine.checkpointed.update(await engine.docs.checkpoint())
    if engine.vectors is not None:
        engine.checkpointed["vectors"] = await engine.vectors.checkpoint()
    if engine.search_index is not None:
        engine.checkpointed["search"] = await engine.search_index.checkpoint()
    # The retention floor is the smallest checkpointed offset over every materializer.
    floor = min(engine.checkpointed[name] for name in MATERIALIZERS if name in engine.checkpointed)
    s = engine.settings
    removed = await engine.writer.run_locked(
        engine.wal_log.retain, floor, s.wal_retention_segments, s.wal_retention_min_bytes,
        float(s.wal_retention_min_secs), time.time())
    if removed:
        log.info("retention: dropped %d WAL segment(s) checkpointed past offset %d", len(removed), floor)

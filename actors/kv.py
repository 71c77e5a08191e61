"""The KV actor: a StoreActor (actors/store_actor.py) over a KvState and state.sqlite's KV
table. It adds what is KV's own: batch puts (each operation decided on its own, errors
reported inline), the answers of put/delete/expire, the put/delete counters, and prefix scans.
"""

from __future__ import annotations

import logging

from kissvdb.events import STATE_UPDATED
from kissvdb.kv import BatchPut, Delete, Expire, Put, StateItem

from kissvdb.actors.store_actor import Pending, StoreActor

log = logging.getLogger("kissvdb.kv")


class KvActor(StoreActor):
    UNAVAILABLE = "kv store restarting, retry"
    STORE_NAME = "state.sqlite"
    EXPIRE = Expire

    def keys_of(self, command) -> list[str]:
        if isinstance(command, BatchPut):
            return [op.key for op in command.ops]
        return [command.key]

    def batch_ops(self, command):
        return command.ops if isinstance(command, BatchPut) else None

    def result(self, p: Pending):
        """A put answers its durable item: the one applied to the cache, or (after a crash,
        before it was applied) one built from its decision and offset."""
        cmd = p.request.command
        if isinstance(cmd, Put):
            return p.changes[0] if p.changes is not None else _item_from(p.decisions[0], p.records[0].offset)
        if isinstance(cmd, BatchPut):
            if p.changes is not None:
                items = iter(p.changes)
            else:
                items = (_item_from(d, rec.offset) for d, rec in zip(p.decisions, p.records))
            return [next(items) if slot is None else slot for slot in p.slots]
        if isinstance(cmd, Delete):
            return True
        return None

    def applied(self, record, change) -> str:
        if record.type == STATE_UPDATED:
            self.counters["state_put_total"] += 1
            return change.key
        self.counters["state_delete_total"] += 1
        return change

    def apply_to_store(self, changes, applied_offset: int) -> None:
        self.store.apply_kv(changes, applied_offset)

    # -- reads ------------------------------------------------------------------------------

    def cached(self, key: str) -> tuple[bool, StateItem | None]:
        """(hit, durable item or None) from the cache alone: a GET's common case, answered
        without a coroutine or a thread."""
        return self.state.lookup(key)

    async def get(self, key: str) -> StateItem | None:
        return await self._get(key)

    async def scan(self, prefix: str, limit: int, now_ms: int, start_after: str | None = None) -> list[StateItem]:
        return await self.thread.run(self.store.scan_prefix, prefix, limit, now_ms, start_after)


def _item_from(decision, offset: int) -> StateItem:
    a = decision.after
    return StateItem(a.key, bytes(a.value), a.revision, a.expires_at_ms, offset)

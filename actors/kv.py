"""The KV actor: a StoreActor (actors/store_actor.py) over a KvState and state.sqlite's KV
table. It adds what is KV's own: batch puts (each operation decided on its own, errors
reported inline), the answers of put/delete/expire, the put/delete counters, and prefix scans.

`KvService` is what the Engine holds for KV: the supervised actor, state.sqlite's KV connection
and its thread. It (re)builds the actor from durable state and tells who waits when it goes
down or comes back.
"""

from __future__ import annotations

import logging

import trio

from kissvdb.events import STATE_UPDATED
from kissvdb.kv.state import Along, BatchPut, Delete, Expire, KvLimits, KvState, Put, StateItem

from kissvdb.recovery import kv_replay
from kissvdb.statedb.file import StateStore

from kissvdb.actors.store_actor import StoreActor, reopen_and_replay
from kissvdb.actors.supervisor import supervise
from kissvdb.actors.write_actor import Pending

log = logging.getLogger("kissvdb.kv.state")


class KvActor(StoreActor):
    UNAVAILABLE = "kv store restarting, retry"
    STORE_NAME = "state.sqlite"
    EXPIRE = Expire

    def keys_of(self, command) -> list[str]:
        if isinstance(command, BatchPut):
            return [op.key for op in command.ops]
        if isinstance(command, Along):
            return [command.command.key]
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
        if isinstance(cmd, Along):
            return p.records
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


class KvService:
    """The supervised KV actor and its state.sqlite connection, on the state thread."""

    def __init__(self, settings, writer, wal_log, store_path: str, thread, *, clock, counters, checkpointed: dict):
        self.settings = settings
        self.writer = writer
        self.wal_log = wal_log
        self.store_path = store_path
        self.thread = thread
        self.clock = clock
        self.counters = counters
        self.checkpointed = checkpointed  # the engine's {materializer: checkpointed offset}
        self.limits = KvLimits(settings.max_key_len, settings.max_json_bytes)
        self.store: StateStore | None = None
        self.actor: KvActor | None = None
        self.restarts = 0
        self._changed = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await supervise("kv", self._build, on_up=self._up, on_down=self._down, task_status=task_status)

    async def _build(self) -> KvActor:
        """A fresh KV actor from durable state: (re)open state.sqlite and replay the WAL tail."""
        s = self.settings
        store = await reopen_and_replay(self, lambda: StateStore(self.store_path, durable=not s.memory), kv_replay)
        # Make the replayed state durable now, so retention and metrics start from a real
        # checkpoint instead of waiting for the first periodic one.
        durable = await self.thread.run(store.checkpoint)
        self.checkpointed["kv"] = durable.get("kv", 0)
        state = KvState(self.limits, s.kv_cache_items)
        return KvActor(state, store, self.thread, self.writer, inbox_size=s.inbox_requests_max,
                       inflight_max=s.inbox_requests_max * 4, clock=self.clock, counters=self.counters)

    def _up(self, actor: KvActor) -> None:
        self.actor = actor
        self._changed.set()
        self._changed = trio.Event()

    def _down(self) -> None:
        self.actor = None
        self.restarts += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Wait until the KV actor goes down or comes (back) up."""
        await self._changed.wait()

    async def aclose(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            await self.thread.run(store.close)

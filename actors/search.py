"""The `/search` store's follower: its SQLite file on its own thread, kept up with the durable
events of the `_search` vector collection.

Why a follower and not a write actor: `/search` documents are written as ordinary vector
upserts and deletes of the `_search` collection (kissvdb/search/changes.py), through that
collection's actor and the WAL. The FTS index is a second materializer of those events, like
the change stream: the broadcaster hands every published (durable) batch to `on_publish`, on
the event loop, without blocking; the follower keeps the changes that concern the collection
and the offset it has seen, and applies them on its own thread (`DedicatedThread`, one apsw
connection) in one transaction with that offset.

Guarantees:
- Nothing is missed or applied twice: batches reach `on_publish` in offset order from the first
  publish after boot, and the store was brought to the end of the WAL before that
  (kissvdb/search/replay.py); `SearchStore.apply` skips an offset it has applied.
- `catch_up()` returns once everything published before the call is applied: an ingest calls it
  after its upsert is durable, so a search right after sees the write.
- An idle store never pins the WAL: `checkpoint()` first applies up to the offset seen (with no
  changes, only the offset moves), then makes the file durable and returns the offset WAL
  retention may drop up to.
- Searches run on the same thread, one after another, each under its request's deadline.
Never does: decide writes (the Engine sends them to the collection's actor), or read the WAL.
"""

from __future__ import annotations

import logging

import trio

from kissvdb.errors import Unavailable
from kissvdb.events import VECTOR_COLLECTION_DELETED, VECTOR_EVENTS
from kissvdb.search.changes import SEARCH_COLLECTION, changes
from kissvdb.search.store import SearchStore

from kissvdb.actors.threads import DedicatedThread

log = logging.getLogger("kissvdb.search")

_TYPES = frozenset(VECTOR_EVENTS + (VECTOR_COLLECTION_DELETED,))


class SearchFollower:
    def __init__(self, store: SearchStore, thread: DedicatedThread):
        self.store = store
        self.thread = thread
        self.seen = store.applied_offset  # every durable record up to here has been looked at
        self._pending: list = []  # changes seen, not applied yet
        self._lock = trio.Lock()  # one apply at a time, in order
        self.failed: BaseException | None = None
        self.applied_total = 0

    def on_publish(self, records: list) -> None:
        """Called by the broadcaster with every durable batch, in offset order. Never blocks."""
        mine = [r for r in records if r.type in _TYPES and type(r.data) is dict
                and r.data.get("collection") == SEARCH_COLLECTION]
        if mine:
            self._pending.extend(changes(mine))
        if records:
            self.seen = records[-1].offset

    def _check(self) -> None:
        if self.failed is not None:
            raise Unavailable("search index unavailable (see the server log), retry after a restart")

    async def catch_up(self) -> int:
        """Apply everything seen so far; returns the store's applied offset."""
        self._check()
        async with self._lock:
            offset, pending = self.seen, self._pending
            if offset <= self.store.applied_offset:
                return self.store.applied_offset
            self._pending = []
            try:
                await self.thread.run(self.store.apply, offset, pending)
            except Exception as exc:
                # The file is behind the WAL now: a restart replays what it lacks.
                self.failed = exc
                log.exception("search index: applying up to offset %d failed; /search is unavailable", offset)
                raise Unavailable("search index unavailable (see the server log), retry after a restart") from None
            self.applied_total += len(pending)
            return self.store.applied_offset

    async def checkpoint(self) -> int:
        """Apply what was seen, make the file durable; the offset WAL retention may drop up to."""
        if self.failed is not None:
            return self.store.durable_offset
        await self.catch_up()
        async with self._lock:
            return await self.thread.run(self.store.checkpoint)

    async def run(self, fn, *args):
        """`fn(store, *args)` on the store's thread (a search)."""
        self._check()
        return await self.thread.run(fn, self.store, *args)

    async def aclose(self) -> None:
        """Checkpoint and close the file (shutdown, after the writers stopped)."""
        try:
            if self.failed is None:
                await self.catch_up()
        finally:
            await self.thread.run(self.store.close)
            await self.thread.aclose()

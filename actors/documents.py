"""The document actor: a StoreActor (actors/store_actor.py) over a DocState and the docs
table of state.sqlite (on its own connection and thread). It adds what is the documents' own:
the answers of put/delete, the counters, and `_index`, which runs on the store thread.

`find` does not touch the actor's thread: DocService runs it on a pool of read connections
(actors/doc_readers.py), so no find delays a document write. It first waits until the store
thread has committed every apply submitted before it (an acknowledged write's apply is
submitted before its caller hears the answer), so a find sees every acknowledged write.

The TTL sweeper (actors/ttl.py) sends `DocExpire(collection, id, mod_offset)` for due documents;
the actor logs `doc_deleted` (reason "ttl") only for the exact version seen.
"""

from __future__ import annotations

import logging

import trio

from kissvdb.documents.query import FindQuery, compile_find, encode_cursor
from kissvdb.documents.state import DocExpire, DocItem, DocLimits, DocPut, DocState
from kissvdb.documents.table import DocStore
from kissvdb.errors import Unavailable
from kissvdb.recovery import docs_replay

from kissvdb.actors.doc_readers import DocReaderPool
from kissvdb.actors.sql import effective_time_limit_ms
from kissvdb.actors.store_actor import StoreActor, reopen_and_replay
from kissvdb.actors.supervisor import supervise
from kissvdb.actors.write_actor import Pending

log = logging.getLogger("kissvdb.documents.state")



class DocActor(StoreActor):
    UNAVAILABLE = "document store restarting, retry"
    STORE_NAME = "state.sqlite (docs)"
    EXPIRE = DocExpire
    index_time_limit_ms: int | None = None  # set by DocService (SQL_TIME_LIMIT_MS, capped)

    def keys_of(self, command) -> list[tuple[str, str]]:
        return [(command.collection, command.id)]

    def result(self, p: Pending):
        if isinstance(p.request.command, DocPut):
            a = p.decisions[0].after
            return DocItem(a.collection, a.id, a.doc, a.revision, a.expires_at_ms, p.records[0].offset)
        return True

    def applied(self, record, change) -> tuple[str, str]:
        self.counters["doc_put_total" if change[0] == 0 else "doc_delete_total"] += 1
        return (change[1], change[2])

    def apply_to_store(self, changes, applied_offset: int) -> None:
        self.store.apply_docs(changes, applied_offset)

    # -- reads and maintenance ---------------------------------------------------------

    async def get(self, collection: str, id_: str) -> DocItem | None:
        return await self._get((collection, id_))

    async def collections(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        return await self.thread.run(self.store.collections, now_ms, limit)

    async def create_index(self, collection: str, field: str, now_ms: int) -> tuple[str, bool]:
        return await self.thread.run(self.store.create_index, collection, field, now_ms,
                                     self.index_time_limit_ms)


class DocService:
    """What the Engine holds for documents: the supervised actor, its thread and store, and
    the pool of readers that runs finds.

    `run` (started with `nursery.start`) builds the actor from durable state (state.sqlite +
    WAL tail replay) and restarts it on failure; callers get 503 while it is down. `close()`
    stops taking requests and drains accepted writes (before the WAL writer closes);
    `aclose()` closes the readers, the store and the thread last.
    """

    def __init__(self, settings, writer, wal_log, store_path: str, thread, *, clock):

        self.settings = settings
        self.writer = writer
        self.wal_log = wal_log
        self.store_path = store_path
        self.thread = thread
        self.clock = clock
        self.counters = {"doc_put_total": 0, "doc_delete_total": 0}
        self.limits = DocLimits(settings.max_collection_len, settings.max_id_len,
                                settings.max_json_bytes, settings.max_doc_find)
        self.store = None
        self.readers: DocReaderPool | None = None
        self.actor: DocActor | None = None
        self.restarts = 0
        self.closing = False

    async def _build(self) -> DocActor:

        s = self.settings
        await reopen_and_replay(self, lambda: DocStore(self.store_path, durable=not s.memory), docs_replay)
        state = DocState(self.limits, s.doc_cache_items)

        actor = DocActor(state, self.store, self.thread, self.writer, inbox_size=s.inbox_requests_max,
                         inflight_max=s.inbox_requests_max * 4, clock=self.clock, counters=self.counters)
        actor.index_time_limit_ms = effective_time_limit_ms(s)
        if self.readers is None:  # once state.sqlite has its schema; readers outlive restarts
            self.readers = DocReaderPool(
                self.store_path, concurrency=s.doc_find_concurrency, time_limit_ms=effective_time_limit_ms(s),
                wait_max_s=float(s.request_timeout_secs), wal_max_bytes=s.state_wal_max_bytes,
                reset_wal=self._reset_wal)
            await self.readers.open()
        return actor

    async def _reset_wal(self) -> int:
        store = self.store
        if store is None:
            return 1
        return await self.thread.run(store.reset_wal)

    # -- finds ---------------------------------------------------------------------------

    async def _compiled(self, query: FindQuery, now_ms: int):
        """The query's SQL, once every write acknowledged so far is in state.sqlite."""
        actor = self.live_actor()
        compiled = compile_find(query, now_ms)
        await actor.thread.wait_caught_up()  # every acknowledged write is committed
        return compiled

    async def find(self, query: FindQuery, now_ms: int) -> tuple[list[tuple], str | None]:
        """One page: ([(id, doc, revision, expires_at_ms)], next_cursor or None)."""
        compiled = await self._compiled(query, now_ms)
        rows = await self.readers.find(compiled)
        next_cursor = None
        if len(rows) > compiled.limit:
            rows = rows[: compiled.limit]
            last = rows[-1]
            next_cursor = encode_cursor(query.sort, list(last[4:]), last[0])
        return [r[:4] for r in rows], next_cursor

    async def explain(self, query: FindQuery, now_ms: int) -> list[str]:
        return await self.readers.explain(await self._compiled(query, now_ms))

    def _up(self, actor: DocActor) -> None:
        self.actor = actor

    def _down(self) -> None:
        self.actor = None
        self.restarts += 1

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:

        await supervise("docs", self._build, on_up=self._up, on_down=self._down, task_status=task_status)

    def live_actor(self) -> DocActor:
        actor = self.actor
        if actor is None or self.closing:
            raise Unavailable("document store unavailable, retry")
        return actor

    async def close(self) -> None:
        """Refuse new calls, close the inbox, wait for accepted writes to be answered."""
        self.closing = True
        actor = self.actor
        if actor is not None:
            await actor.inbox.aclose()
            await actor.wait_drained()

    async def checkpoint(self) -> dict[str, int]:
        actor = self.actor
        if actor is None:
            return {}
        offsets = await actor.checkpoint()
        if self.readers is not None:
            await self.readers.reset_wal_if_large()
        return offsets

    async def aclose(self) -> None:
        if self.readers is not None:
            readers, self.readers = self.readers, None
            await readers.aclose()
        if self.store is not None:
            store, self.store = self.store, None
            await self.thread.run(store.close)
        await self.thread.aclose()

    def metrics(self) -> list[tuple[str, str, float]]:
        st = self.actor.state.statistics() if self.actor is not None else {}
        rd = self.readers.statistics() if self.readers is not None else {}
        return [
            ("kissvdb_doc_find_total", "counter", rd.get("finds_total", 0)),
            ("kissvdb_doc_find_running", "gauge", rd.get("running", 0)),
            ("kissvdb_doc_find_waiting", "gauge", rd.get("waiting", 0)),
            ("kissvdb_doc_find_timeouts_total", "counter", rd.get("timeouts_total", 0)),
            ("kissvdb_doc_find_overloaded_total", "counter", rd.get("overloaded_total", 0)),
            ("kissvdb_state_wal_resets_total", "counter", rd.get("wal_resets_total", 0)),
            ("kissvdb_doc_put_total", "counter", self.counters.get("doc_put_total", 0)),
            ("kissvdb_doc_delete_total", "counter", self.counters.get("doc_delete_total", 0)),
            ("kissvdb_doc_cache_items", "gauge", st.get("cached", 0)),
            ("kissvdb_doc_inflight", "gauge", st.get("inflight", 0)),
            ("kissvdb_doc_restarts_total", "counter", self.restarts),
        ]

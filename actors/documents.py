"""The document actor: owns a DocState and its state.sqlite connection (on its own thread).

The same shape as the KV actor (actors/kv.py), which it mirrors:
- Main loop: take requests from the inbox (a few at a time), load the documents they need that
  are not cached, decide each against durable state + the in-flight overlay, queue the events
  to the WAL writer. It never waits for one write's fsync before deciding the next.
- Applier task: waits for the oldest queued write to be resolved, applies every resolved write
  at the head (cache first, then one state.sqlite transaction for the lot, submitted to the
  store thread without waiting) and replies, in offset order, once the change is readable.
- Reads (`get`, `find`) skip the inbox: a cache hit is answered at once; a miss or a find is a
  job on the store thread, which runs after every apply submitted before it, so a find sees
  every acknowledged write.
- An idle actor still moves its applied offset to the durable offset at each checkpoint, so
  the docs materializer never pins the WAL.

The TTL sweeper (`run_doc_ttl_sweeper`) sends `DocExpire(collection, id, mod_offset)` for due
documents; the actor logs `doc_deleted` (reason "ttl") only for the exact version seen.
"""

from __future__ import annotations

import logging

import trio

from kissvdb.docquery import FindQuery, compile_find, encode_cursor
from kissvdb.documents import DocExpire, DocItem, DocPut, DocState
from kissvdb.errors import KissError, PersistenceError, Unavailable

from kissvdb.actors.mailbox import CANCELLED, QUEUED, PendingWrites, Request, receive_batch, settle_crashed
from kissvdb.actors.wal import WalWrite

log = logging.getLogger("kissvdb.documents")

DRAIN_MAX = 64  # requests decided per inbox wake-up
SWEEP_INTERVAL_S = 1.0
SWEEP_BATCH = 1000


class DocStoreFailed(Exception):
    pass


class _Pending:
    __slots__ = ("request", "decision", "write")

    def __init__(self, request, decision, write):
        self.request = request
        self.decision = decision
        self.write = write


def _key_of(command) -> tuple[str, str]:
    return (command.collection, command.id)


class DocActor:
    def __init__(self, state: DocState, store, store_thread, wal_writer, *, inbox_size: int,
                 inflight_max: int, clock, counters):
        self.state = state
        self.store = store
        self.thread = store_thread
        self.writer = wal_writer
        self.inbox, self._receive = trio.open_memory_channel(inbox_size)
        self._wal = wal_writer.send_channel.clone()
        self.inflight_max = inflight_max
        self.clock = clock
        self.counters = counters
        self.epoch = wal_writer.epoch
        self._pending = PendingWrites()  # of _Pending
        self._store_error: BaseException | None = None
        self._store_failed = trio.Event()
        self._submitted_applied = 0
        self._batch: list[Request] = []
        self.closed = False
        self.find_time_limit_ms: int | None = None  # set by DocService (SQL_TIME_LIMIT_MS, capped)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._applier)
            nursery.start_soon(self._watch_store)
            task_status.started(self)
            async with self._receive, self._wal:
                await self._serve_inbox()
                await self._pending.drained()  # inbox closed (shutdown): finish what was accepted
            nursery.cancel_scope.cancel()

    async def wait_drained(self) -> None:
        await self._pending.drained()

    async def _watch_store(self) -> None:
        await self._store_failed.wait()
        raise DocStoreFailed(f"state.sqlite (docs) failed: {self._store_error!r}") from self._store_error

    async def settle_after_crash(self) -> None:
        """After a crash: refuse what was never queued, report the WAL verdict for what was."""
        self.closed = True
        await settle_crashed(self._batch, self._receive, self._pending,
                             Unavailable("document store restarting, retry"), self._result)

    # -- deciding ----------------------------------------------------------------------------

    async def _serve_inbox(self) -> None:
        receive = self._receive
        while True:
            batch = await receive_batch(receive, DRAIN_MAX)
            if batch is None:
                return
            self._batch = batch
            keys = {_key_of(r.command) for r in batch}
            self.state.pin(keys)
            try:
                missing = self.state.missing(keys)
                if missing:
                    await self._load(missing)
                for req in batch:
                    if req.state == CANCELLED:
                        continue
                    await self._pending.room(self.inflight_max)
                    await self._decide_and_queue(req)
            finally:
                self.state.unpin(keys)

    async def _decide_and_queue(self, req: Request) -> None:
        cmd = req.command
        now = self.clock()
        try:
            d = self.state.decide(cmd, now)
        except KissError as exc:
            req.fail(exc)
            return
        if d is None:
            req.succeed(None if isinstance(cmd, DocExpire) else False)
            return
        write = WalWrite([(now, d.type, d.data)], self.epoch)
        self.state.begin(d, write)
        req.state = QUEUED
        self._pending.push(_Pending(req, d, write))
        await self._wal.send(write)

    # -- applying ----------------------------------------------------------------------------

    async def _applier(self) -> None:
        pending = self._pending
        while True:
            settled = await pending.settled()
            changes = []
            touched = []
            for _ in range(settled):
                p = pending.pop()
                write = p.write
                if write.error is not None:
                    self._fail(p, write.error)
                    continue
                for record in write.records:
                    change = self.state.apply(record)
                    if change is not None:
                        changes.append(change)
                        touched.append(((change[1], change[2]), record.offset))
                        self.counters["doc_put_total" if change[0] == 0 else "doc_delete_total"] += 1
                self.state.finish(p.decision.key, write)
                p.request.succeed(self._result(p))
            # Every doc event up to the durable offset is applied now (a head that is not done
            # is not durable), so state.sqlite may record that offset even if it was not ours.
            self._submit_apply(changes, touched, self.writer.durable_offset)
            self._pending.changed()

    def _fail(self, p: _Pending, error: PersistenceError) -> None:
        self.state.finish(p.decision.key, p.write)
        if self.writer.epoch != self.epoch:
            self.state.drop_inflight()
            self.epoch = self.writer.epoch
        p.request.fail(error)

    @staticmethod
    def _result(p: _Pending):
        cmd = p.request.command
        if isinstance(cmd, DocPut):
            a = p.decision.after
            return DocItem(a.collection, a.id, a.doc, a.revision, a.expires_at_ms, p.write.records[0].offset)
        return True

    def _submit_apply(self, changes, touched, applied_offset: int) -> None:
        if not changes and applied_offset <= self._submitted_applied:
            return
        self._submitted_applied = max(self._submitted_applied, applied_offset)

        def committed(ok: bool, result) -> None:
            if ok:
                self.state.committed(touched)
            elif self._store_error is None:
                self._store_error = result
                self._store_failed.set()

        self.thread.submit(self.store.apply_docs, changes, applied_offset, callback=committed)

    # -- reads and maintenance ---------------------------------------------------------

    async def _load(self, keys) -> None:
        keys = list(keys)
        self.state.pin(keys)
        try:
            items = await self.thread.run(self.store.get_many, keys)
            self.state.loaded(items)
        finally:
            self.state.unpin(keys)

    async def get(self, collection: str, id_: str) -> DocItem | None:
        key = (collection, id_)
        hit, item = self.state.lookup(key)
        if not hit:
            await self._load([key])
            hit, item = self.state.lookup(key)
            if not hit:  # evicted already (tiny cache): read straight through
                item = (await self.thread.run(self.store.get_many, [key]))[key]
        return item

    async def find(self, query: FindQuery, now_ms: int) -> tuple[list[tuple], str | None]:
        """One page: ([(id, doc, revision, expires_at_ms)], next_cursor or None)."""
        compiled = compile_find(query, now_ms)
        rows = await self.thread.run(self.store.find, compiled, self.find_time_limit_ms)
        next_cursor = None
        if len(rows) > compiled.limit:
            rows = rows[: compiled.limit]
            last = rows[-1]
            next_cursor = encode_cursor(query.sort, list(last[4:]), last[0])
        return [r[:4] for r in rows], next_cursor

    async def explain(self, query: FindQuery, now_ms: int) -> list[str]:
        return await self.thread.run(self.store.explain, compile_find(query, now_ms))

    async def create_index(self, collection: str, field: str, now_ms: int) -> tuple[str, bool]:
        return await self.thread.run(self.store.create_index, collection, field, now_ms)

    async def due_expirations(self, now_ms: int, limit: int):
        return await self.thread.run(self.store.due_expirations, now_ms, limit)

    async def checkpoint(self) -> dict[str, int]:
        """Advance the applied offset if idle, then make the docs table durable up to it."""
        if not self._pending:
            self._submit_apply([], [], self.writer.durable_offset)
        return await self.thread.run(self.store.checkpoint)


async def run_doc_ttl_sweeper(engine, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        await trio.sleep(SWEEP_INTERVAL_S)
        await sweep_docs_once(engine)


async def sweep_docs_once(engine) -> int:
    actor = engine.docs.actor if engine.docs is not None else None
    if actor is None:
        return 0
    due = await actor.due_expirations(engine.clock(), SWEEP_BATCH)
    expired = 0
    for collection, id_, mod_offset in due:
        try:
            if await engine.call_docs(DocExpire(collection, id_, mod_offset)) is not None:
                expired += 1
        except KissError:
            break  # overloaded or restarting: next sweep
    return expired


class DocService:
    """What the Engine holds for documents: the supervised actor, its thread and store.

    `run` (started with `nursery.start`) builds the actor from durable state (state.sqlite +
    WAL tail replay) and restarts it on failure; callers get 503 while it is down. `close()`
    stops taking requests and drains accepted writes (before the WAL writer closes);
    `aclose()` closes the store and the thread last.
    """

    def __init__(self, settings, writer, wal_log, store_path: str, thread, *, clock):
        from kissvdb.documents import DocLimits

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
        self.actor: DocActor | None = None
        self.restarts = 0
        self.recovery_replayed = 0
        self.closing = False

    async def _build(self) -> DocActor:
        from kissvdb.docstore import DocStore
        from kissvdb.recovery import replay_docs

        s = self.settings
        if self.store is not None:
            old, self.store = self.store, None
            await self.thread.run(old.close)
        self.store = await self.thread.run(lambda: DocStore(self.store_path, durable=not s.memory))
        upto = self.writer.durable_offset
        replayed = await self.thread.run(lambda: replay_docs(self.store, self.wal_log, upto))
        if self.actor is None and self.restarts == 0:
            self.recovery_replayed = replayed
        state = DocState(self.limits, s.doc_cache_items)
        from kissvdb.actors.sql import effective_time_limit_ms

        actor = DocActor(state, self.store, self.thread, self.writer, inbox_size=s.inbox_requests_max,
                         inflight_max=s.inbox_requests_max * 4, clock=self.clock, counters=self.counters)
        actor.find_time_limit_ms = effective_time_limit_ms(s)
        return actor

    def _up(self, actor: DocActor) -> None:
        self.actor = actor

    def _down(self) -> None:
        self.actor = None
        self.restarts += 1

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        from kissvdb.actors.supervisor import supervise

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
        return await actor.checkpoint()

    async def aclose(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            await self.thread.run(store.close)
        await self.thread.aclose()

    def metrics(self) -> list[tuple[str, str, float]]:
        st = self.actor.state.statistics() if self.actor is not None else {}
        return [
            ("kissvdb_doc_put_total", "counter", self.counters.get("doc_put_total", 0)),
            ("kissvdb_doc_delete_total", "counter", self.counters.get("doc_delete_total", 0)),
            ("kissvdb_doc_cache_items", "gauge", st.get("cached", 0)),
            ("kissvdb_doc_inflight", "gauge", st.get("inflight", 0)),
            ("kissvdb_doc_restarts_total", "counter", self.restarts),
        ]

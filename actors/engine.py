"""The Engine: every method the HTTP layer awaits, and nothing else.

Each method checks its input in the contract's order and hands it to the model that owns it:
KV to the KV actor (actors/kv.py), documents to DocService (actors/documents.py), vectors to
VectorManager and its collection actors (actors/vectors.py), SQL to SqlService, API keys to
KeyService, the change stream to the Broadcaster. Writes go through one call path
(actors/write_actor.py `call`). Building and stopping an engine, in order, is actors/boot.py.

The longer jobs behind a few methods live beside it, each one idea, and the methods here are
thin calls into them: the /metrics series (actors/metrics.py), a checkpoint and WAL retention
(actors/checkpoints.py), the collection listings (actors/vector_listing.py) and the /search
requests (actors/search_requests.py).
"""

from __future__ import annotations

import time

import trio

from kissvdb.config import Settings
from kissvdb.documents.query import FindQuery, json_path
from kissvdb.documents.state import DocDelete, DocExpire, DocItem, DocPut, check_collection, check_doc_key
from kissvdb.errors import (
    Conflict, Forbidden, InvalidArgument, KissError, NotEnabled, NotFound, PayloadTooLarge, Unavailable,
)
from kissvdb.events import RawJson
from kissvdb.kv.state import BatchPut, Delete, Expire, Put, StateItem, check_key, check_user_writable
from kissvdb.search.changes import SEARCH_COLLECTION
from kissvdb.search.request import SearchDocument, SearchLimits, SearchRequest
from kissvdb.sql.result import JsonChunks
from kissvdb.vectors.collection import INDEX_KINDS
from kissvdb.vectors.disk_index import idle_status
from kissvdb.vectors.filters import compile_filter
from kissvdb.vectors.state import (
    KEEP, AddVector, DeleteBatch, DeleteVector, DimMismatch, ItemError, UpdateVector, UpsertBatch, UpsertVector,
    VectorLimits, check_id, check_item_shape, check_vector_shape,
)
from kissvdb.vectors.store import check_collection_name

from kissvdb.actors import checkpoints, search_requests, vector_listing
from kissvdb.actors import metrics as metric_series
from kissvdb.actors.auth_keys import KeyService
from kissvdb.actors.cdc import Broadcaster
from kissvdb.actors.documents import DocService
from kissvdb.actors.kv import KvActor, KvService
from kissvdb.actors.search import SearchFollower
from kissvdb.actors.sql import SqlService
from kissvdb.actors.threads import DedicatedThread
from kissvdb.actors.ttl import Expiring, sweep_once
from kissvdb.actors.vector_manager import VectorManager
from kissvdb.actors.wal import WalWriter
from kissvdb.actors.write_actor import call

LIST_LIMIT_MAX = 1000


def _kv_gone() -> Unavailable:
    return Unavailable("kv store unavailable, retry")


def _docs_gone() -> Unavailable:
    return Unavailable("document store unavailable, retry")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _collection_gone() -> NotFound:
    return NotFound("collection or id not found", field="collection")


class Engine:
    """Every method the HTTP layer awaits, and nothing else: typed calls that check their
    input in the contract's order and send it to the model's actor or service."""

    def __init__(self, settings: Settings, wal_log, writer: WalWriter, broadcaster: Broadcaster,
                 store_path: str, store_thread: DedicatedThread, *, clock=now_ms):
        self.settings = settings
        self.wal_log = wal_log
        self.writer = writer
        self.broadcaster = broadcaster
        self.clock = clock
        self.vectors: VectorManager | None = None
        self.counters = {"state_put_total": 0, "state_delete_total": 0, "vector_ops_total": 0}
        self.checkpointed: dict[str, int] = {}
        self.kv = KvService(settings, writer, wal_log, store_path, store_thread, clock=clock,
                            counters=self.counters, checkpointed=self.checkpointed)
        self.limits = self.kv.limits
        self.recovery_replayed = 0
        self.closing = False
        self.fatal = trio.Event()
        self.fatal_error: BaseException | None = None
        self.shutdown_requested = trio.Event()
        self.docs: DocService | None = None  # set by open_engine (issue 4: documents, SQL, keys)
        self.sql: SqlService | None = None  # None while SQLITE_ENABLED is off
        self.keys: KeyService | None = None
        self.search_index: SearchFollower | None = None  # the /search index (issue 11), set by open_engine

    # -- documents, SQL, API keys (issue 4) ----------------------------------------------------

    async def call_docs(self, command):
        return await call(self.docs.live_actor(), command, _docs_gone)

    async def doc_put(self, collection: str, id_: str, doc: RawJson, *, ttl_ms: int | None = None,
                      if_revision: int | None = None) -> DocItem:
        return await self.call_docs(DocPut(collection, id_, doc, ttl_ms, if_revision))

    async def doc_get(self, collection: str, id_: str) -> DocItem:
        check_doc_key(collection, id_, self.docs.limits)
        item = await self.docs.live_actor().get(collection, id_)
        if item is None or not item.live(self.clock()):
            raise NotFound("document not found")
        return item

    async def doc_delete(self, collection: str, id_: str, *, if_revision: int | None = None) -> bool:
        return await self.call_docs(DocDelete(collection, id_, if_revision))

    async def doc_find(self, query: FindQuery):
        """One page of `find`: ([(id, doc, revision, expires_at_ms)], next_cursor or None)."""
        check_collection(query.collection, self.docs.limits)
        return await self.docs.find(query, self.clock())

    async def doc_collections(self, limit: int) -> list[tuple[str, int]]:
        """(name, live document count) of up to `limit` collections, by name."""
        return await self.docs.live_actor().collections(self.clock(), limit)

    async def doc_create_index(self, collection: str, field: str) -> tuple[str, bool]:
        check_collection(collection, self.docs.limits)
        json_path(field, what="field")
        return await self.docs.live_actor().create_index(collection, field, self.clock())

    def check_doc_address(self, collection: str, id_: str | None = None) -> None:
        """The collection name (and document id) against the limits, before a body is read."""
        if id_ is None:
            check_collection(collection, self.docs.limits)
        else:
            check_doc_key(collection, id_, self.docs.limits)

    def check_sql_enabled(self) -> None:
        self._sql()

    def _sql(self) -> SqlService:
        if self.sql is None:
            raise NotEnabled("sqlite module is disabled")
        return self.sql

    async def sql_query_json(self, sql: str, params) -> JsonChunks:
        """The response body `{"rows": [...]}`, encoded in pieces on the SQL thread."""
        return await self._sql().query_json(sql, params)

    async def sql_exec(self, sql: str, params) -> int:
        return await self._sql().exec(sql, params)

    async def auth_key_create(self, name: str, role: str, permissions: bytes):
        return await self.keys.create(name, role, permissions)

    async def auth_key_list(self):
        return await self.keys.list()

    async def auth_key_delete(self, key_id: str) -> None:
        await self.keys.delete(key_id)

    # -- KV ----------------------------------------------------------------------------------

    @property
    def kv_actor(self) -> KvActor | None:
        """The live KV actor, None while it restarts."""
        return self.kv.actor

    def _kv(self) -> KvActor:
        actor = self.kv.actor
        if actor is None or self.closing:
            raise Unavailable("kv store unavailable, retry")
        return actor

    async def call_kv(self, command):
        return await call(self._kv(), command, _kv_gone)

    async def kv_get(self, key: str) -> StateItem:
        check_key(key, self.limits)
        actor = self._kv()
        hit, item = actor.cached(key)
        if not hit:
            item = await actor.get(key)
        if item is None or not item.live(self.clock()):
            raise NotFound("key not found")
        return item

    async def kv_list(self, prefix: str, limit: int, start_after: str | None = None) -> list[StateItem]:
        """Live items under `prefix` in key-byte order, after `start_after` when given."""
        if len(prefix.encode("utf-8")) > self.settings.max_key_len:
            raise InvalidArgument("prefix too long", field="prefix")
        if start_after is not None and len(start_after.encode("utf-8")) > self.settings.max_key_len:
            raise InvalidArgument("start_after too long", field="start_after")
        limit = max(0, min(limit, LIST_LIMIT_MAX))
        if limit == 0:
            return []
        return await self._kv().scan(prefix, limit, self.clock(), start_after)

    async def kv_put(self, key: str, value: RawJson, *, ttl_ms: int | None = None,
                     if_revision: int | None = None) -> StateItem:
        check_user_writable(key)
        return await call(self._kv(), Put(key, value, ttl_ms, if_revision), _kv_gone)

    async def kv_delete(self, key: str, *, if_revision: int | None = None) -> bool:
        check_user_writable(key)
        return await self.call_kv(Delete(key, if_revision))

    async def kv_batch_put(self, ops: list[Put]) -> list[StateItem | KissError]:
        for o in ops:
            check_user_writable(o.key)  # the whole batch is refused: nothing written
        return await self.call_kv(BatchPut(tuple(ops)))

    # -- vectors (contract §3.5-§3.7: checks run in its order) ---------------------------------

    def _vm(self) -> VectorManager:
        vm = self.vectors
        if vm is None or self.closing:
            raise Unavailable("vector store unavailable, retry")
        return vm

    def vector_limits(self):
        s = self.settings
        return VectorLimits(s.max_id_len, s.max_vector_dim, s.max_json_bytes, s.max_vector_batch,
                            s.max_collection_len, s.max_k, max_collections=s.max_vector_collections)

    def _check_name(self, name: str) -> None:
        check_collection_name(name, self.settings.max_collection_len)

    def _check_writable(self, name: str) -> None:
        """A collection users may create, drop and write: not `_search`, which holds the /search
        documents (written through /search/ingest and /search/delete only; readable here)."""
        self._check_name(name)
        if name == SEARCH_COLLECTION:
            raise Forbidden(f"collection {name!r} is read-only: it holds the /search documents, written through "
                            "/search/ingest and /search/delete", field="collection")

    async def _call_vector(self, name: str, command):
        # A closed inbox: the collection was dropped meanwhile.
        return await call(self._vm().actor(name), command, _collection_gone)

    # -- collections ---------------------------------------------------------------------

    async def vector_create(self, name: str, dim: int, metric: str, index: str | None = None) -> dict:
        self._check_writable(name)
        if dim == 0 or dim > self.settings.max_vector_dim:
            raise InvalidArgument("invalid dim", field="dim")
        if metric not in ("cosine", "dot"):  # the route answers 422 first; the engine never logs it
            raise InvalidArgument("metric must be cosine or dot", field="metric")
        kind = index or self.settings.index_kind
        if kind not in INDEX_KINDS:
            raise InvalidArgument("index must be HNSW, IVF_FLAT_Q8, FLAT or DISKANN", field="index")
        await self._vm().create(name, dim, metric, kind)
        return {"collection": name, "dim": dim, "metric": metric, "index": kind}

    async def vector_drop(self, name: str) -> bool:
        self._check_writable(name)
        await self._vm().drop(name)
        return True

    async def vector_list(self) -> list[dict]:
        """Every collection, sorted by name, with its status (actors/vector_listing.py)."""
        return await vector_listing.vector_list(self)

    async def vector_info(self, name: str) -> dict:
        return await vector_listing.vector_info(self, name)

    # -- mutations ---------------------------------------------------------------------------

    async def vector_put(self, name: str, item, *, add: bool) -> bool:
        self._check_writable(name)
        check_item_shape(item, self.vector_limits())  # the contract's order: before the collection
        return await self._call_vector(name, AddVector(item) if add else UpsertVector(item))

    async def vector_update(self, name: str, vid: str, vector, meta) -> bool:
        self._check_writable(name)
        limits = self.vector_limits()
        check_id(vid, limits)
        if vector is not KEEP:
            check_vector_shape(vector, limits)
        if meta is not KEEP and meta is not None and len(meta) > limits.max_json_bytes:
            raise PayloadTooLarge("meta too large", field="meta")
        return await self._call_vector(name, UpdateVector(vid, vector, meta))

    async def vector_delete(self, name: str, vid: str) -> bool:
        self._check_writable(name)
        check_id(vid, self.vector_limits())
        return await self._call_vector(name, DeleteVector(vid))

    async def vector_upsert_batch(self, name: str, items: list) -> list[dict]:
        self._check_writable(name)
        limits = self.vector_limits()
        if not items:
            raise InvalidArgument("items required", field="items")
        if len(items) > limits.max_vector_batch:
            raise InvalidArgument("too many items", field="items")
        checked = []
        for it in items:
            if isinstance(it, ItemError):
                checked.append(it)
                continue
            try:
                check_item_shape(it, limits)
                checked.append(it)
            except KissError as exc:
                checked.append(ItemError(it.id, exc))
        return await self._call_vector(name, UpsertBatch(tuple(checked)))

    async def vector_delete_batch(self, name: str, ids: list) -> list[dict]:
        self._check_writable(name)
        limits = self.vector_limits()
        if not ids:
            raise InvalidArgument("ids required", field="ids")
        if len(ids) > limits.max_vector_batch:
            raise InvalidArgument("too many ids", field="ids")
        checked = []
        for vid in ids:
            try:
                check_id(vid, limits)
                checked.append(vid)
            except KissError as exc:
                checked.append(ItemError(vid, exc))
        return await self._call_vector(name, DeleteBatch(tuple(checked)))

    # -- reads -------------------------------------------------------------------------------

    async def vector_get(self, name: str, vid: str):
        self._check_name(name)
        check_id(vid, self.vector_limits())
        actor = self._vm().actor(name)
        got = actor.get(vid)
        if got is None:
            raise NotFound("vector id not found", field="id")
        return got

    async def vector_search(self, name: str, vector, k: int, *, filters=None, filters_size: int = 0,
                            include_meta: bool = False, group_by: str | None = None, group_limit: int = 1,
                            nprobe: int | None = None, ef: int | None = None):
        self._check_name(name)
        limits = self.vector_limits()
        check_vector_shape(vector, limits)
        if k == 0 or k > limits.max_k:
            raise InvalidArgument("invalid k", field="k")
        if filters_size > limits.max_json_bytes:
            raise PayloadTooLarge("filters too large", field="filters")
        predicate = compile_filter(filters)
        actor = self._vm().actor(name)
        if len(vector) != actor.c.dim:
            raise DimMismatch()
        self.counters["vector_search_total"] = self.counters.get("vector_search_total", 0) + 1
        return await actor.search(vector, k, predicate=predicate, include_meta=include_meta, group_by=group_by,
                                  group_limit=group_limit, nprobe=nprobe, ef=ef)

    async def vector_search_many(self, name: str, queries: list[tuple]) -> list:
        """Every (vector, k, keyword arguments) of a batch search, concurrently, so unfiltered
        HNSW queries join one graph-walk batch (actors/vectors.py); each result is its hits or
        the KissError it raised."""
        results: list = [None] * len(queries)

        async def one(i: int, vector, k: int, kw: dict) -> None:
            try:
                results[i] = await self.vector_search(name, vector, k, **kw)
            except KissError as exc:
                results[i] = exc

        async with trio.open_nursery() as nursery:
            for i, (vector, k, kw) in enumerate(queries):
                nursery.start_soon(one, i, vector, k, kw)
        return results

    async def vector_compact(self, name: str) -> dict:
        self._check_name(name)
        actor = self._vm().actor(name)
        ran = await actor.compact()
        return {"ok": True, **ran, **actor.c.info()}

    # -- DiskANN control (contract §3.8; actors/diskann_builds.py) ------------------------------

    def _diskann_actor(self, name: str, *, control: bool):
        """The collection's actor; `control` (build, tune) needs a DISKANN collection (409)."""
        self._check_name(name)
        actor = self._vm().actor(name)
        if control and actor.diskann is None:
            raise Conflict(f"collection index is {actor.c.kind}: DiskANN build and tune need a collection "
                           "created with \"index\": \"DISKANN\"", field="collection")
        return actor

    async def diskann_build(self, name: str, params: dict, *, wait: bool) -> dict:
        """Start a build (or find the running one); `wait` answers when it is done."""
        return await self._diskann_actor(name, control=True).diskann.start(params, wait=wait)

    async def diskann_tune(self, name: str, params: dict) -> dict:
        actor = self._diskann_actor(name, control=True)
        await trio.to_thread.run_sync(actor.c.disk.index.tune, params, limiter=actor.apply_limiter)
        return actor.diskann.answer()

    async def diskann_status(self, name: str) -> dict:
        """The collection's DiskAnnStatus; a collection of another kind has none built
        (`available: false`, the configured params), as the original answers."""
        actor = self._diskann_actor(name, control=False)
        if actor.diskann is None:
            return idle_status(actor.c.p.diskann)
        return actor.c.disk.status()

    def vector_metrics(self) -> list[tuple[str, str, float]]:
        return metric_series.vector_metrics(self)

    # -- /search (contract §3.10, §5.6): documents in the `_search` vector collection --------

    @property
    def search_limits(self) -> SearchLimits:
        """The /search caps, from the vector settings they mirror."""
        return search_requests.search_limits(self)

    def search_metrics(self) -> list[tuple[str, str, float]]:
        return metric_series.search_metrics(self)

    async def search_ingest(self, docs: list[SearchDocument]) -> None:
        """Upsert `docs` into the `_search` collection; returns once the search index applied them."""
        await search_requests.search_ingest(self, docs)

    async def search_delete(self, ids: list[int]) -> list[bool]:
        """Delete documents by id; per id, whether it existed. Returns once the index applied it."""
        return await search_requests.search_delete(self, ids)

    async def search(self, req: SearchRequest, deadline: float | None = None) -> dict:
        """One /search answer, stopped at the request's deadline."""
        return await search_requests.search(self, req, deadline)

    # -- change stream -------------------------------------------------------------------

    def subscribe(self, since: int, flt, *, owner: str | None = None):
        """A change-stream subscription for the credential `owner` (ended when it is revoked),
        within the per-key and replay caps (429 / 503 otherwise)."""
        s = self.settings
        return self.broadcaster.subscribe(since, flt, owner=owner, owner_max=s.max_streams_per_key,
                                          replays_max=s.max_stream_replays)

    @property
    def durable_offset(self) -> int:
        return self.writer.durable_offset

    # -- maintenance ---------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """First step of a graceful stop: end SSE streams now (they would hold the HTTP
        server's graceful drain open); writes keep draining. Safe to call twice."""
        self.broadcaster.close()
        self.shutdown_requested.set()

    async def checkpoint(self) -> None:
        """Make every materializer durable up to its applied offset, then apply WAL retention."""
        await checkpoints.checkpoint(self)

    def expiring(self) -> list[Expiring]:
        """The models the TTL sweeper visits: KV keys, then documents."""
        return [Expiring(lambda: self.kv_actor, Expire, self.call_kv),
                Expiring(lambda: self.docs.actor if self.docs is not None else None, DocExpire, self.call_docs)]

    async def sweep_ttl(self) -> int:
        """One TTL sweep over every model now (the sweeper's round); how many items expired."""
        return sum([await sweep_once(m, self.clock) for m in self.expiring()])

    def on_fatal(self, exc: BaseException) -> None:
        """The WAL writer failed for good: the server stops (fail-stop)."""
        self.fatal_error = exc
        self.fatal.set()
        self.shutdown_requested.set()

    def metrics(self) -> list[tuple[str, str, float]]:
        return metric_series.engine_metrics(self)

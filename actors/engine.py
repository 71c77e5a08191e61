"""The Engine: every method the HTTP layer awaits, and nothing else.

Each method checks its input in the contract's order and hands it to the model that owns it:
KV to the KV actor (actors/kv.py), documents to DocService (actors/documents.py), vectors to
VectorManager and its collection actors (actors/vectors.py), SQL to SqlService, API keys to
KeyService, the change stream to the Broadcaster. Writes go through one call path
(actors/write_actor.py `call`). Building and stopping an engine, in order, is actors/boot.py.
"""

from __future__ import annotations

import logging
import math
import time

import orjson
import trio

from kissvdb.config import Settings
from kissvdb.documents.query import FindQuery, json_path
from kissvdb.documents.state import DocDelete, DocExpire, DocItem, DocPut, check_collection, check_doc_key
from kissvdb.errors import (
    AlreadyExists, Conflict, Forbidden, InvalidArgument, KissError, NotEnabled, NotFound, PayloadTooLarge, Unavailable,
)
from kissvdb.events import RawJson
from kissvdb.kv.state import BatchPut, Delete, Expire, Put, StateItem, check_key, check_user_writable
from kissvdb.search.changes import SEARCH_COLLECTION, vector_items
from kissvdb.search.query import SearchDimMismatch, check_dims
from kissvdb.search.query import search as search_query
from kissvdb.search.request import DEFAULT_LIMITS as SEARCH_DEFAULT_LIMITS
from kissvdb.search.request import SearchDocument, SearchLimits, SearchRequest
from kissvdb.sql.result import JsonChunks
from kissvdb.vectors.collection import INDEX_KINDS
from kissvdb.vectors.disk_index import idle_status
from kissvdb.vectors.filters import compile_filter
from kissvdb.vectors.state import (
    KEEP, AddVector, DeleteBatch, DeleteVector, DimMismatch, Item, ItemError, UpdateVector, UpsertBatch, UpsertVector,
    VectorLimits, check_id, check_item_shape, check_vector_shape,
)
from kissvdb.vectors.store import check_collection_name

from kissvdb.actors.auth_keys import KeyService
from kissvdb.actors.cdc import Broadcaster
from kissvdb.actors.documents import DocService
from kissvdb.actors.kv import KvActor, KvService
from kissvdb.actors.search import SearchFollower
from kissvdb.actors.sql import SqlService
from kissvdb.actors.threads import DedicatedThread
from kissvdb.actors.ttl import Expiring, sweep_once
from kissvdb.actors.vector_manager import VectorManager
from kissvdb.actors.vectors import manifest_key
from kissvdb.actors.wal import WalWriter
from kissvdb.actors.write_actor import call

log = logging.getLogger("kissvdb.engine")

LIST_LIMIT_MAX = 1000


def _kv_gone() -> Unavailable:
    return Unavailable("kv store unavailable, retry")


def _docs_gone() -> Unavailable:
    return Unavailable("document store unavailable, retry")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _manifest_only_entry(name: str, m: dict) -> dict:
    """A GET /v1/vector entry for a collection that is not loaded: what its manifest says."""
    return {"collection": name, "dim": m.get("dim", 0), "metric": m.get("metric", "cosine"),
            "live_count": 0, "total_records": 0, "upsert_count": 0, "file_len": 0, "applied_offset": 0,
            "created_at_ms": m.get("created_at_ms"), "updated_at_ms": m.get("updated_at_ms"),
            "segments": None, "deleted_count": None}


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

    async def _kv_manifest(self, name: str):
        try:
            item = await self.kv_get(manifest_key(name))
        except NotFound:
            return None
        try:
            return orjson.loads(item.value)
        except orjson.JSONDecodeError:
            return None

    async def vector_list(self) -> list[dict]:
        """Every collection, sorted by name. `status` (kissvdb addition) is `ready`, `quarantined`
        (503 on its routes; `reason` says why) or `manifest_only` (known from its KV manifest key
        alone, as the contract's fallback)."""
        vm = self._vm()
        out = {}
        for name, c in sorted(vm.store.collections.items()):
            info = c.info()
            out[name] = {"collection": name, "dim": c.dim, "metric": c.metric, "live_count": info["live_count"],
                         "total_records": info["total_records"], "upsert_count": info["upsert_count"],
                         "file_len": info["file_len"], "applied_offset": info["applied_offset"],
                         "created_at_ms": c.created["created_at_ms"], "updated_at_ms": c.created["created_at_ms"],
                         "segments": info["segments"], "deleted_count": info["deleted_count"],
                         "index": c.kind, "status": "ready"}
            if info["diskann"] is not None:
                out[name]["diskann"] = info["diskann"]
        manifests = {}
        for item in await self.kv_list("vector:", 1000):
            key = item.key
            if not key.endswith(":manifest"):
                continue
            try:
                m = orjson.loads(item.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(m, dict):
                manifests[key[len("vector:"):-len(":manifest")]] = m
        for q in vm.store.quarantined.values():
            if q.name is not None:
                out[q.name] = dict(_manifest_only_entry(q.name, manifests.get(q.name, q.facts)), status="quarantined",
                                   reason=q.reason)
        # A manifest key without a collection (written by hand) still yields an entry.
        for name, m in manifests.items():
            if name not in out:
                out[name] = dict(_manifest_only_entry(name, m), status="manifest_only")
        return [out[k] for k in sorted(out)]

    async def vector_info(self, name: str) -> dict:
        self._check_name(name)
        vm = self._vm()
        vm.check_not_quarantined(name)
        c = vm.store.collections.get(name)
        manifest = await self._kv_manifest(name)
        if c is None:
            if manifest is None or not isinstance(manifest, dict):
                raise NotFound("collection not found", field="collection")
            return {"collection": name, "dim": manifest.get("dim"), "metric": manifest.get("metric"), "count": 0,
                    "created_at_ms": manifest.get("created_at_ms"), "updated_at_ms": manifest.get("updated_at_ms"),
                    "manifest": manifest, "notes": "using manifest fallback", "segments": None, "deleted": None}
        info = c.info()
        return {"collection": name, "dim": c.dim, "metric": c.metric, "count": info["live_count"],
                "created_at_ms": c.created["created_at_ms"], "updated_at_ms": c.created["created_at_ms"],
                "manifest": manifest, "notes": None, "segments": info["segments"], "deleted": info["deleted_count"],
                "index": c.kind, "total_records": info["total_records"], "file_len": info["file_len"],
                "applied_offset": info["applied_offset"], "runs": info["runs"],
                "ivf_trained": info["ivf_trained"], "ivf_lists": info["ivf_lists"], "diskann": info["diskann"]}

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
        vm = self.vectors
        if vm is None:
            return []
        colls = list(vm.store.collections.values())
        infos = [c.info() for c in colls]
        return [
            ("kissvdb_vector_collections", "gauge", len(colls)),
            ("kissvdb_vector_quarantined", "gauge", len(vm.store.quarantined)),
            ("kissvdb_vector_live", "gauge", sum(i["live_count"] for i in infos)),
            ("kissvdb_vector_records", "gauge", sum(i["total_records"] for i in infos)),
            ("kissvdb_vector_file_bytes", "gauge", sum(i["file_len"] for i in infos)),
            ("kissvdb_vector_searches_total", "counter", self.counters.get("vector_search_total", 0)),
            ("kissvdb_vector_maintenance_total", "counter",
             sum(a.maintenance_runs for a in vm.actors.values())),
            ("kissvdb_vector_restarts_total", "counter", vm.restarts),
            ("kissvdb_vector_search_batches_total", "counter", sum(a.search_batches for a in vm.actors.values())),
            ("kissvdb_vector_search_batched_total", "counter", sum(a.search_batched for a in vm.actors.values())),
            ("kissvdb_vector_checkpoint_offset", "gauge", vm.store.checkpointed_floor()),
        ]

    # -- /search (contract §3.10, §5.6): documents in the `_search` vector collection --------

    @property
    def search_limits(self) -> SearchLimits:
        """The /search caps, from the vector settings they mirror."""
        s = self.settings
        return SearchLimits(content_bytes_max=min(SEARCH_DEFAULT_LIMITS.content_bytes_max, s.max_json_bytes),
                            docs_per_ingest_max=s.max_vector_batch, ids_per_delete_max=s.max_vector_batch,
                            top_k_max=s.max_k, group_limit_max=s.max_k, dim_max=s.max_vector_dim)

    def _search_follower(self) -> SearchFollower:
        if self.search_index is None or self.closing:
            raise Unavailable("search index unavailable, retry")
        return self.search_index

    def _search_collection(self):
        return self._vm().store.collections.get(SEARCH_COLLECTION)

    def search_metrics(self) -> list[tuple[str, str, float]]:
        index = self.search_index
        if index is None:
            return []
        return [("kissvdb_search_documents", "gauge", len(index.store)),
                ("kissvdb_search_applied_offset", "gauge", index.store.applied_offset),
                ("kissvdb_search_checkpoint_offset", "gauge", index.store.durable_offset)]

    async def search_ingest(self, docs: list[SearchDocument]) -> None:
        """Upsert `docs` as one batch of the `_search` collection (created, cosine, with the first
        document's dimension); returns once the search index has applied them."""
        follower = self._search_follower()
        coll = self._search_collection()
        check_dims(docs, None if coll is None else coll.dim)
        items = vector_items(docs)
        json_max = self.settings.max_json_bytes
        for doc, (_vid, _vec, meta) in zip(docs, items):
            if len(meta) > json_max:  # content escaped as JSON (\u0001 is 6 bytes) can pass its own cap
                raise PayloadTooLarge(f"content and metadata are {len(meta)} bytes as stored JSON, over "
                                      f"MAX_JSON_BYTES ({json_max})", field=f"{doc.path}.content")
        if coll is None:
            # The in-memory kinds only: /search filters need Collection.search(ids=) over its rows.
            kind = self.settings.index_kind if self.settings.index_kind in ("HNSW", "IVF_FLAT_Q8", "FLAT") else "HNSW"
            try:
                await self._vm().create(SEARCH_COLLECTION, len(docs[0].vector), "cosine", kind)
            except AlreadyExists:  # another ingest created it meanwhile, maybe with another dim
                check_dims(docs, self._search_collection().dim)
        results = await self._call_vector(SEARCH_COLLECTION, UpsertBatch(tuple(
            Item(vid, vec, meta) for vid, vec, meta in items)))
        await follower.catch_up()
        for doc, r in zip(docs, results):
            # Checked above; the collection refuses an item only if its dimension changed under
            # us (a `_search` made by hand before it was reserved). The other items are stored.
            if r["status"] == "error":
                error = SearchDimMismatch if r["error"]["error"] == "dim_mismatch" else InvalidArgument
                raise error(r["error"]["message"], field=f"{doc.path}.vector")

    async def search_delete(self, ids: list[int]) -> list[bool]:
        """Delete documents by id; per id, whether it existed. Returns once the index applied it."""
        follower = self._search_follower()
        if self._search_collection() is None:
            return [False] * len(ids)
        results = await self._call_vector(SEARCH_COLLECTION, DeleteBatch(tuple(str(i) for i in ids)))
        await follower.catch_up()
        return [r["status"] == "deleted" for r in results]

    async def search(self, req: SearchRequest, deadline: float | None = None) -> dict:
        """One /search answer, computed on the search index's thread (BM25 there, vectors from
        the collection) and stopped at the request's deadline."""
        follower = self._search_follower()
        coll = self._search_collection()
        trio_deadline = trio.current_effective_deadline() if deadline is None else deadline
        until = None if math.isinf(trio_deadline) else time.monotonic() + (trio_deadline - trio.current_time())

        def rank_vectors(query, limit: int, allowed):
            if coll is None:
                return []
            ids = None if allowed is None else {str(i) for i in allowed}
            hits = coll.search(query, limit, ids=ids, deadline=until)
            return [(int(h.id), h.score) for h in hits if h.id.isdigit()]

        dim = None if coll is None else coll.dim
        return await follower.run(lambda store: search_query(req, store, rank_vectors, dim, until))

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
        actor = self.kv_actor
        if actor is None:
            return
        offsets = await actor.checkpoint()
        self.checkpointed["kv"] = offsets.get("kv", 0)
        if self.docs is not None:
            self.checkpointed.update(await self.docs.checkpoint())
        if self.vectors is not None:
            self.checkpointed["vectors"] = await self.vectors.checkpoint()
        if self.search_index is not None:
            self.checkpointed["search"] = await self.search_index.checkpoint()
        # The retention floor is the smallest checkpointed offset over every materializer.
        floor = min(self.checkpointed[name] for name in ("kv", "docs", "vectors", "search")
                    if name in self.checkpointed)
        s = self.settings
        removed = await self.writer.run_locked(
            self.wal_log.retain, floor, s.wal_retention_segments, s.wal_retention_min_bytes,
            float(s.wal_retention_min_secs), time.time())
        if removed:
            log.info("retention: dropped %d WAL segment(s) checkpointed past offset %d", len(removed), floor)

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
        w = self.writer.statistics()
        b = self.broadcaster.statistics()
        kv = self.kv_actor.state.statistics() if self.kv_actor is not None else {}
        return [
            ("state_put_total", "counter", self.counters["state_put_total"]),
            ("state_delete_total", "counter", self.counters["state_delete_total"]),
            ("vector_ops_total", "counter", self.counters["vector_ops_total"]),
            ("events_total", "counter", b.published_total),
            ("sse_clients", "gauge", b.subscribers),
            ("kissvdb_wal_durable_offset", "gauge", w.durable_offset),
            ("kissvdb_wal_first_offset", "gauge", self.wal_log.first_offset),
            ("kissvdb_wal_retained_bytes", "gauge", self.wal_log.retained_bytes),
            ("kissvdb_wal_batches_total", "counter", w.batches_total),
            ("kissvdb_wal_records_total", "counter", w.records_total),
            ("kissvdb_wal_bytes_total", "counter", w.bytes_total),
            ("kissvdb_wal_fsync_total", "counter", w.fsync_total),
            ("kissvdb_wal_fsync_seconds_total", "counter", w.fsync_seconds_total),
            ("kissvdb_wal_batch_records_max", "gauge", w.batch_records_max),
            ("kissvdb_wal_write_errors_total", "counter", w.write_errors_total),
            ("kissvdb_wal_failed", "gauge", 1 if w.failed else 0),
            ("kissvdb_checkpoint_offset", "gauge", self.checkpointed.get("kv", 0)),
            ("kissvdb_recovery_replayed_events", "gauge", self.recovery_replayed),
            ("kissvdb_kv_cache_items", "gauge", kv.get("cached", 0)),
            ("kissvdb_kv_inflight", "gauge", kv.get("inflight", 0)),
            ("kissvdb_kv_restarts_total", "counter", self.kv.restarts),
            ("kissvdb_sse_log_reads_total", "counter", b.log_reads_total),
            ("kissvdb_sse_gaps_total", "counter", b.gaps_total),
        ] + (self.docs.metrics() if self.docs is not None else []) + (
            self.sql.metrics() if self.sql is not None else []) + self.vector_metrics() + self.search_metrics()

"""The /search routes over HTTP (contract §3.10, §5.6): every field and error, roles, and the
call shapes a client sends.

DRAFT (issue 11, phase 1): api/routes/search.py is served on its own by a KissApp whose engine
is `CoreSearchEngine` below: the Engine methods proposed for phase 2 over the real core (a
SearchStore on a real file, exact vectors in memory, changes applied from vector events as the
WAL would hand them over). Phase 2 swaps the fixture for the real Engine (and adds the
durability, change stream and crash tests); the HTTP assertions stay.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import numpy as np
import pytest

from kissvdb.api.app import KissApp
from kissvdb.api.auth import ADMIN, Principal
from kissvdb.api.routes import search as search_routes
from kissvdb.api.routing import Router
from kissvdb.events import EventRecord
from kissvdb.search.changes import SEARCH_COLLECTION, changes, vector_items
from kissvdb.search.exact import ExactRanker
from kissvdb.search.query import check_dims, search
from kissvdb.search.request import SearchLimits
from kissvdb.search.store import SearchStore
from tests.api import conftest
from tests.api.conftest import API_KEY, open_client
from tests.helpers import assert_error

READ_KEY = "read-key-0123"


class CoreSearchEngine:
    """The proposed Engine methods, over kissvdb.search's real pieces, in process."""

    def __init__(self, path: str, limits: SearchLimits | None = None):
        self.store = SearchStore(path)
        self.vectors: dict[int, np.ndarray] = {}
        self.dim: int | None = None
        self.offset = 0
        if limits is not None:
            self.search_limits = limits

    def _apply(self, records):
        for r in records:
            if r.type == "vector_upserted":
                self.vectors[int(r.data["id"])] = r.data["vector"]
            elif r.type == "vector_deleted":
                self.vectors.pop(int(r.data["id"]), None)
        self.store.apply(records[-1].offset, changes(records))

    def _record(self, type_, **data):
        self.offset += 1
        return EventRecord(self.offset, 0, type_, dict(collection=SEARCH_COLLECTION, **data))

    async def search_ingest(self, docs):
        self.dim = check_dims(docs, self.dim)
        self._apply([self._record("vector_upserted", id=i, vector=v, meta=m) for i, v, m in vector_items(docs)])

    async def search_delete(self, ids):
        found = [i in self.vectors for i in ids]
        self._apply([self._record("vector_deleted", id=str(i)) for i in ids])
        return found

    async def search(self, req, deadline):
        if self.vectors:
            ranker = ExactRanker(list(self.vectors), np.stack(list(self.vectors.values())))
            rank = ranker.rank
        else:
            def rank(q, n, allowed):
                return []
        return search(req, self.store, rank, self.dim, deadline)


class Keys:
    def check(self, token: str):
        return {API_KEY: ADMIN, READ_KEY: Principal("reader", "read")}.get(token)


@asynccontextmanager
async def open_search_api(tmp_path, limits=None):
    settings = conftest.test_settings(tmp_path / "data")
    engine = CoreSearchEngine(str(tmp_path / "fts.sqlite"), limits)
    app = KissApp(engine, settings, Keys(), [])
    app.router = Router(search_routes.routes(app))
    async with open_client(app, settings) as api:
        yield api


@pytest.fixture
async def api(tmp_path):
    async with open_search_api(tmp_path) as client:
        yield client


def doc(id, vector, content="", **metadata):
    return {"id": id, "vector": vector, "content": content, "metadata": metadata}


async def ingest(api, *docs):
    body = {"document": docs[0]} if len(docs) == 1 else {"documents": list(docs)}
    reply = await api.post("/search/ingest", json=body)
    assert reply.status_code == 200, reply.content
    return reply


async def ids_of(api, **body):
    reply = await api.post("/search", json=body)
    assert reply.status_code == 200, reply.content
    return [r["document"]["id"] for r in reply.json()["results"]]


async def test_ingest_answers_200_with_an_empty_body_and_no_content_type(api):
    reply = await ingest(api, doc(1, [1, 0], "hello"))
    assert reply.content == b"" and "content-type" not in reply.headers


async def test_search_answer_is_the_contracts_shape(api):
    await ingest(api, doc(1, [1, 0], "hello", filename="a.md", processed_at=5, category="c", language="es",
                          status="s", version="v1", group_id=9, document_id="d"))
    reply = await api.post("/search", json={"query": "TEST_VEC:1,0"})
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"query": "TEST_VEC:1,0", "top_k": 10, "results": [{"score": 1.0, "document": {
        "id": 1, "content": "hello", "metadata": {"filename": "a.md", "processed_at": 5, "category": "c",
                                                  "language": "es", "status": "s", "version": "v1",
                                                  "group_id": 9, "document_id": "d"}}}]}
    assert list(reply.json()) == ["query", "top_k", "results"]


async def test_the_originals_client_call_shapes(api):
    # What a client of the original sends: one document per ingest, and a body with query,
    # top_k, filters (language as a list), group_by and group_limit.
    await ingest(api, doc(1, [1, 0], "a", language="es", filename="x"))
    await ingest(api, doc(2, [1, 0.2], "b", language="en", filename="x"))
    await ingest(api, doc(3, [1, 0.4], "c", language="fr", filename="y"))
    assert await ids_of(api, query="TEST_VEC:1,0", top_k=5, filters={"language": ["es", "en", "fr"],
                        "version_policy": "all"}, group_by="filename", group_limit=1) == [1, 3]


async def test_reingest_replaces_and_delete_removes(api):
    await ingest(api, doc(1, [1, 0], "old words"))
    await ingest(api, doc(1, [1, 0], "new words"))
    reply = await api.post("/search", json={"query": "words", "mode": "keyword"})
    assert [r["document"]["content"] for r in reply.json()["results"]] == ["new words"]
    reply = await api.post("/search/delete", json={"id": 1})
    assert reply.status_code == 200 and reply.json() == {"deleted": True}
    assert await ids_of(api, query="TEST_VEC:1,0") == []
    reply = await api.post("/search/delete", json={"ids": [1, 2]})
    assert reply.json() == {"results": [{"id": 1, "deleted": False}, {"id": 2, "deleted": False}]}


async def test_filters_latest_groups_and_top_k(api):
    await ingest(api, doc(1, [1, 0], group_id=1, processed_at=1, category="k"),
                 doc(2, [0, 1], group_id=1, processed_at=2, category="k"),
                 doc(3, [1, 0.1], status="ok", category="k"),
                 doc(4, [1, 0.2]))
    q = "TEST_VEC:1,0"
    assert await ids_of(api, query=q, filters={"version_policy": "latest"}) == [3, 4, 2]
    assert await ids_of(api, query=q, filters={"category": "k", "status": "ok"}) == [3]
    assert await ids_of(api, query=q, top_k=2) == [1, 3]
    assert await ids_of(api, query=q, group_by="group_id", group_limit=1) == [1, 3, 4]
    assert await ids_of(api, query=q, top_k=0) == []


async def test_modes_and_the_query_vector(api):
    await ingest(api, doc(1, [1, 0], "keyword match here"), doc(2, [0, 1], "nothing"))
    assert await ids_of(api, query="keyword match", mode="keyword") == [1]
    assert await ids_of(api, query="keyword match", vector=[0, 1]) == [2, 1]
    assert (await ids_of(api, query="keyword match", mode="hybrid", vector=[0, 1],
                         weights={"vector": 0.1, "keyword": 1}))[0] == 1


@pytest.mark.parametrize("path, body, status, field", [
    ("/search/ingest", {}, 422, "document"),
    ("/search/ingest", {"document": doc(-1, [1])}, 422, "document.id"),
    ("/search/ingest", {"document": {"id": 1, "vector": [1], "content": "x"}}, 422, "document.metadata"),
    ("/search/ingest", {"document": doc(1, [1], category=5)}, 422, "document.metadata.category"),
    ("/search/ingest", {"document": doc(1, [])}, 400, "document.vector"),
    ("/search/ingest", {"documents": [doc(1, [1]), doc(1, [1])]}, 400, "documents[1].id"),
    ("/search/ingest", {"document": doc(1, [1], "x" * 40000)}, 413, "document.content"),
    ("/search/delete", {"ids": []}, 400, "ids"),
    ("/search/delete", {"id": "1"}, 422, "id"),
    ("/search", {}, 422, "query"),
    ("/search", {"query": "q", "top_k": -1}, 422, "top_k"),
    ("/search", {"query": "q", "top_k": 100000}, 400, "top_k"),
    ("/search", {"query": "q", "group_limit": 100000}, 400, "group_limit"),
    ("/search", {"query": "q", "filters": {"language": 3}}, 422, "filters.language"),
    ("/search", {"query": "q", "filters": {"category": []}}, 422, "filters.category"),
    ("/search", {"query": "q", "filters": {"status": 1}}, 422, "filters.status"),
    ("/search", {"query": "q", "filters": {"version_policy": 1}}, 422, "filters.version_policy"),
    ("/search", {"query": "q", "group_by": 1}, 422, "group_by"),
    ("/search", {"query": "q", "mode": "fuzzy"}, 400, "mode"),
    ("/search", {"query": "q", "vector": ["a"]}, 422, "vector"),
    ("/search", {"query": "q", "weights": {"vector": 0, "keyword": 0}}, 400, "weights"),
    ("/search", {"query": "TEST_VEC:1,nan"}, 400, "query"),
])
async def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(api, path, body, status, field):
    assert_error(await api.post(path, json=body), status, field=field)
    assert await ids_of(api, query="TEST_VEC:1") == []


async def test_body_that_is_not_json(api):
    assert_error(await api.post("/search", data=b"{", headers={"Content-Type": "application/json"}), 400,
                 field="body")
    assert_error(await api.post("/search", data=b"{}", headers={"Content-Type": "text/plain"}), 415, field="body")
    assert_error(await api.post("/search/ingest", json=[1]), 422, field="body")


async def test_dimension_mismatch_is_400_dim_mismatch(api):
    await ingest(api, doc(1, [1, 0]))
    assert_error(await api.post("/search/ingest", json={"documents": [doc(2, [1, 0]), doc(3, [1])]}), 400,
                 code="dim_mismatch", field="documents[1].vector")
    assert_error(await api.post("/search", json={"query": "q", "vector": [1, 0, 0]}), 400, code="dim_mismatch",
                 field="vector")
    assert await ids_of(api, query="TEST_VEC:1,0") == [1]  # the refused batch wrote nothing
    assert await ids_of(api, query="TEST_VEC:1,0,0") == []  # the original's answer for another length


async def test_roles_read_may_search_only(api):
    headers = {"Authorization": f"Bearer {READ_KEY}"}
    reply = await api.request("POST", "/search", json={"query": "q"}, headers=headers)
    assert reply.status_code == 200
    for path, body in (("/search/ingest", {"document": doc(1, [1])}), ("/search/delete", {"id": 1})):
        assert_error(await api.request("POST", path, json=body, headers=headers), 403)
        assert_error(await api.request("POST", path, json=body, auth=False), 401)


async def test_caps_come_from_the_engine(tmp_path):
    async with open_search_api(tmp_path, SearchLimits(docs_per_ingest_max=1, top_k_max=3)) as api:
        assert_error(await api.post("/search/ingest", json={"documents": [doc(1, [1]), doc(2, [1])]}), 400,
                     field="documents")
        assert_error(await api.post("/search", json={"query": "q", "top_k": 4}), 400, field="top_k")

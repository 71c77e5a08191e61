"""The /search routes over HTTP on the real server (contract §3.10, §5.6): every field and
error, roles, the call shapes a client sends, the `_search` collection behind them (read-only
through /v1/vector, its events on the change stream) and the index's checkpoints.

The API is the real app over a real Engine on a temporary DATA_DIR, over real sockets
(tests/api/conftest.py). Crash and restart: tests/e2e/test_search_durability.py.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import open_api
from tests.helpers import assert_error


async def read_key(api) -> str:
    reply = await api.post("/v1/auth/keys", json={"name": "reader", "role": "read"})
    assert reply.status_code == 200, reply.content
    return reply.json()["key"]


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
    headers = {"Authorization": f"Bearer {await read_key(api)}"}
    reply = await api.request("POST", "/search", json={"query": "q"}, headers=headers, auth=False)
    assert reply.status_code == 200
    for path, body in (("/search/ingest", {"document": doc(1, [1])}), ("/search/delete", {"id": 1})):
        assert_error(await api.request("POST", path, json=body, headers=headers, auth=False), 403)
        assert_error(await api.request("POST", path, json=body, auth=False), 401)
    assert await ids_of(api, query="TEST_VEC:1") == []


async def test_caps_come_from_the_settings(tmp_path):
    async with open_api(tmp_path / "data", max_vector_batch=1, max_k=3) as api:
        assert_error(await api.post("/search/ingest", json={"documents": [doc(1, [1]), doc(2, [1])]}), 400,
                     field="documents")
        assert_error(await api.post("/search/delete", json={"ids": [1, 2]}), 400, field="ids")
        assert_error(await api.post("/search", json={"query": "q", "top_k": 4}), 400, field="top_k")
        assert_error(await api.post("/search", json={"query": "q", "group_limit": 4}), 400, field="group_limit")

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
    ("/search/ingest", {"document": doc(1 << 32, [1])}, 422, "document.id"),
    ("/search/ingest", {"document": {"id": 1, "content": "x", "metadata": {}}}, 422, "document.vector"),
    ("/search/ingest", {"document": doc(1, "1")}, 422, "document.vector"),
    ("/search/ingest", {"document": doc(1, [1] * 5000)}, 400, "document.vector"),
    ("/search/ingest", {"document": {"id": 1, "vector": [1], "metadata": {}}}, 422, "document.content"),
    ("/search/ingest", {"document": doc(1, [1], 5)}, 422, "document.content"),
    ("/search/ingest", {"document": {"id": 1, "vector": [1], "content": "x", "metadata": []}}, 422,
     "document.metadata"),
    ("/search/ingest", {"document": doc(1, [1], processed_at=-1)}, 422, "document.metadata.processed_at"),
    ("/search/ingest", {"document": doc(1, [1], group_id=1 << 32)}, 422, "document.metadata.group_id"),
    ("/search/ingest", {"document": doc(1, [1], filename="f" * 300)}, 400, "document.metadata.filename"),
    ("/search/ingest", {"documents": {}}, 422, "documents"),
    ("/search/ingest", {"documents": []}, 400, "documents"),
    ("/search/ingest", {"document": doc(1, [1]), "documents": [doc(2, [1])]}, 400, "documents"),
    ("/search/ingest", {"documents": [doc(1, [1]), doc(2, [1], category=1)]}, 422, "documents[1].metadata.category"),
    ("/search/delete", {}, 422, "id"),
    ("/search/delete", {"ids": 1}, 422, "ids"),
    ("/search/delete", {"ids": [1, -2]}, 422, "ids[1]"),
    ("/search", {"query": 5}, 422, "query"),
    ("/search", {"query": "q" * 70000}, 400, "query"),
    ("/search", {"query": "q", "top_k": 1.5}, 422, "top_k"),
    ("/search", {"query": "q", "group_limit": -1}, 422, "group_limit"),
    ("/search", {"query": "q", "filters": []}, 422, "filters"),
    ("/search", {"query": "q", "filters": {"language": ["a"] * 65}}, 400, "filters.language"),
    ("/search", {"query": "q", "filters": {"language": ["a", 1]}}, 422, "filters.language[1]"),
    ("/search", {"query": "q", "mode": 1}, 422, "mode"),
    ("/search", {"query": "q", "vector": []}, 400, "vector"),
    ("/search", {"query": "q", "vector": [1] * 5000}, 400, "vector"),
    ("/search", {"query": "q", "weights": []}, 422, "weights"),
    ("/search", {"query": "q", "weights": {"vector": "1"}}, 422, "weights.vector"),
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


# ---- kissvdb's departures: the _search collection, the stream, the index's offset -------------


async def test_meta_over_max_json_bytes_after_escaping_is_413_naming_content(api):
    # 20,000 control characters pass `content`'s 32 KiB cap but are 6 bytes each as JSON.
    reply = await api.post("/search/ingest", json={"documents": [doc(1, [1, 0], "ok"), doc(2, [1, 0], "\x01" * 20000)]})
    assert_error(reply, 413, field="documents[1].content")
    assert await ids_of(api, query="TEST_VEC:1,0") == []
    assert (await api.get("/v1/vector/_search")).status_code == 404  # nothing was created either


async def test_the_search_collection_is_visible_and_read_only_through_v1_vector(api):
    await ingest(api, doc(7, [1, 0], "seven", category="c"))
    listed = (await api.get("/v1/vector")).json()["collections"]
    assert [c["collection"] for c in listed] == ["_search"] and listed[0]["live_count"] == 1
    info = (await api.get("/v1/vector/_search")).json()
    assert (info["dim"], info["metric"], info["count"]) == (2, "cosine", 1)
    got = (await api.get("/v1/vector/_search/get?id=7")).json()
    assert got["meta"] == {"content": "seven", "metadata": {"category": "c"}}
    hits = (await api.post("/v1/vector/_search/search", json={"vector": [1, 0], "k": 1})).json()["hits"]
    assert [h["id"] for h in hits] == ["7"]
    item = {"id": "8", "vector": [1, 0], "meta": {"content": "x", "metadata": {}}}
    for method, path, body in (
        ("POST", "/v1/vector/_search", {"dim": 2, "metric": "cosine"}),
        ("DELETE", "/v1/vector/_search", None),
        ("POST", "/v1/vector/_search/add", item),
        ("POST", "/v1/vector/_search/upsert", item),
        ("POST", "/v1/vector/_search/update", {"id": "7", "meta": {"content": "changed"}}),
        ("POST", "/v1/vector/_search/delete", {"id": "7"}),
        ("POST", "/v1/vector/_search/upsert_batch", {"items": [item]}),
        ("POST", "/v1/vector/_search/delete_batch", {"ids": ["7"]}),
    ):
        kw = {} if body is None else {"json": body}
        reply = await api.request(method, path, **kw)
        assert_error(reply, 403, code="forbidden", field="collection")
        assert "_search" in reply.json()["message"]
    reply = await api.post("/search", json={"query": "seven", "mode": "keyword"})
    assert [(r["document"]["id"], r["document"]["content"]) for r in reply.json()["results"]] == [(7, "seven")]


async def test_a_fresh_data_dir_refuses_creating_the_reserved_collection(api):
    assert_error(await api.post("/v1/vector/_search", json={"dim": 3, "metric": "cosine"}), 403, field="collection")
    assert (await api.get("/v1/vector")).json()["collections"] == []


async def read_vector_events(api, count: int) -> list[dict]:
    from tests.api.test_stream_routes import open_stream, read_frames

    async with open_stream(api, "/v1/stream?since=0&types=vector_collection_created,vector_upserted,"
                                "vector_deleted") as conn:
        return [f["data"] for f in await read_frames(conn, count)]


async def test_documents_appear_on_the_change_stream_as_vector_events(api):
    await ingest(api, doc(1, [1, 0], "one", language="es"), doc(2, [0, 1], "two"))
    await ingest(api, doc(1, [1, 0], "one again"))
    assert (await api.post("/search/delete", json={"id": 2})).json() == {"deleted": True}
    events = await read_vector_events(api, 5)
    assert [(e["type"], e["data"]["collection"], e["data"].get("id")) for e in events] == [
        ("vector_collection_created", "_search", None), ("vector_upserted", "_search", "1"),
        ("vector_upserted", "_search", "2"), ("vector_upserted", "_search", "1"), ("vector_deleted", "_search", "2")]
    assert events[1]["data"]["meta"] == {"content": "one", "metadata": {"language": "es"}}
    assert events[3]["data"]["meta"] == {"content": "one again", "metadata": {}}


async def test_a_search_right_after_each_write_sees_it(api):
    for i in range(1, 21):
        await ingest(api, doc(i, [1, i / 100], f"word{i} common"))
        reply = await api.post("/search", json={"query": f"word{i}", "mode": "keyword"})
        assert [r["document"]["id"] for r in reply.json()["results"]] == [i]
    reply = await api.post("/search/delete", json={"ids": list(range(1, 11))})
    assert all(r["deleted"] for r in reply.json()["results"])
    assert sorted(await ids_of(api, query="common", mode="keyword", top_k=50)) == list(range(11, 21))
    assert sorted(await ids_of(api, query="TEST_VEC:1,0", top_k=50)) == list(range(11, 21))


async def test_filters_narrow_the_vector_ranking_to_allowed_documents(api):
    # 300 documents, the 3 in category "rare" the furthest from the query: the vector side must
    # search among the allowed ids, not take the nearest and filter afterwards.
    docs = [doc(i, [1, i / 1000], category="common") for i in range(1, 298)]
    docs += [doc(297 + j, [0, 1], f"rare{j}", category="rare") for j in range(1, 4)]
    for start in range(0, len(docs), 100):
        await ingest(api, *docs[start:start + 100])
    assert await ids_of(api, query="TEST_VEC:1,0", top_k=5, filters={"category": "rare"}) == [298, 299, 300]
    assert await ids_of(api, query="TEST_VEC:1,0", top_k=3) == [1, 2, 3]


async def test_an_idle_index_follows_the_durable_offset_so_it_never_pins_the_wal(api):
    await ingest(api, doc(1, [1, 0], "one"))
    for i in range(5):
        assert (await api.put(f"/v1/state/k{i}", json={"value": i})).status_code == 200
    engine = api.engine
    await engine.checkpoint()
    assert engine.checkpointed["search"] == engine.durable_offset
    assert engine.search_index.store.applied_offset == engine.durable_offset


class SdkStyleClient:
    """The original SDK's transport (contract §9.1 `Client.request`): `Authorization: Bearer`,
    a JSON body, JSON back when the answer's Content-Type says so and its text otherwise, and
    `"<error> - <message>"` for a status >= 400. The SDK has no /search method (§9.2); this is
    the call a client of it makes for /search through `request`."""

    def __init__(self, api):
        self.api = api

    async def request(self, method: str, path: str, *, json=None):
        reply = await self.api.request(method, path, json=json)
        if reply.status_code >= 400:
            body = reply.json()
            raise RuntimeError(f"{body.get('error', 'error')} - {body.get('message', reply.text)}")
        if reply.headers.get("content-type", "").startswith("application/json"):
            return reply.json()
        return reply.text


async def test_the_sdk_call_shape_for_search(api):
    client = SdkStyleClient(api)
    document = {"id": 5, "vector": [0.5, 0.5], "content": "sdk text", "metadata": {"filename": "f.md"}}
    assert await client.request("POST", "/search/ingest", json={"document": document}) == ""
    answer = await client.request("POST", "/search", json={"query": "TEST_VEC:0.5,0.5", "top_k": 3})
    assert answer["query"] == "TEST_VEC:0.5,0.5" and answer["top_k"] == 3
    assert [(r["document"]["id"], r["document"]["metadata"]) for r in answer["results"]] == [(5, {"filename": "f.md"})]
    with pytest.raises(RuntimeError, match=r"^invalid_argument - missing field `query`"):
        await client.request("POST", "/search", json={"top_k": 3})


async def test_metadata_nulls_unknown_fields_and_the_filters_forms(api):
    body = doc(1, [1, 0], "x", language="es", category=None, extra="dropped")
    await ingest(api, body, doc(2, [1, 0.5], "y", language="en"), doc(3, [1, 0.9], "z"))
    reply = await api.post("/search", json={"query": "TEST_VEC:1,0", "top_k": 1})
    assert reply.json()["results"][0]["document"]["metadata"] == {"language": "es"}
    assert await ids_of(api, query="TEST_VEC:1,0", filters={"language": "en"}) == [2]
    assert await ids_of(api, query="TEST_VEC:1,0", filters={"language": ["en", "es"]}) == [1, 2]
    assert await ids_of(api, query="TEST_VEC:1,0", filters={"category": "c"}) == []
    assert await ids_of(api, query="TEST_VEC:1,0", filters={"version_policy": "other"}) == [1, 2, 3]
    # An unknown group_by name: every document is a group of its own; group_limit 0: nothing.
    assert await ids_of(api, query="TEST_VEC:1,0", group_by="nope") == [1, 2, 3]
    assert await ids_of(api, query="TEST_VEC:1,0", group_by="language", group_limit=0) == []
    assert await ids_of(api, query="TEST_VEC:1,0", top_k=None, group_by=None, filters=None, mode=None) == [1, 2, 3]
    # Text queries use the original's 384-value pseudo-embedding: another length, no vector hits.
    assert await ids_of(api, query="hello") == []

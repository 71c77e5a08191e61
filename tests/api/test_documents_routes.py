"""`/v1/doc/*` over the real app and a real Engine: every route and every row of §3.4, plus the
additions (if_revision, ttl_ms, find operators/sort/cursor, `_index`).

Each bad input is checked for status, code, message and field, and then shown to have written
nothing: the WAL's durable offset did not move and the document reads back unchanged.
"""

from __future__ import annotations

import pytest
import trio

from tests.api.conftest import API_KEY, open_api
from tests.api.test_stream_routes import open_stream, read_frames
from tests.helpers import assert_error, raw_request


async def put(api, collection: str, id_: str, doc, query: str = ""):
    return await api.put(f"/v1/doc/{collection}/{id_}{query}", json=doc)


async def assert_doc(api, collection: str, id_: str, doc, revision: int) -> dict:
    reply = await api.get(f"/v1/doc/{collection}/{id_}")
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert (body["id"], body["doc"], body["revision"]) == (id_.replace("%2F", "/"), doc, revision)
    return body


async def assert_absent(api, collection: str, id_: str) -> None:
    assert_error(await api.get(f"/v1/doc/{collection}/{id_}"), 404, "not_found", message="document not found")


def offset(api) -> int:
    return api.engine.durable_offset


# ---- PUT / GET / DELETE ------------------------------------------------------------------------


async def test_put_get_round_trip_with_the_contract_shapes(api):
    reply = await put(api, "users", "u1", {"name": "Ada", "role": "admin", "z": [1, 2.5, None]})
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert list(body)[:3] == ["id", "revision", "doc"]
    assert body == {"id": "u1", "revision": 1, "doc": {"name": "Ada", "role": "admin", "z": [1, 2.5, None]},
                    "expires_at_ms": None}
    got = await assert_doc(api, "users", "u1", {"name": "Ada", "role": "admin", "z": [1, 2.5, None]}, 1)
    assert got["expires_at_ms"] is None
    second = (await put(api, "users", "u1", {"name": "Ada"})).json()
    assert second["revision"] == 2
    await assert_doc(api, "users", "u1", {"name": "Ada"}, 2)


@pytest.mark.parametrize("doc", [None, 0, -1.5, "text", [], {}, [1, {"z": 1, "a": 2}], True])
async def test_any_json_document_round_trips(api, doc):
    assert (await put(api, "c", "d", doc)).status_code == 200
    await assert_doc(api, "c", "d", doc, 1)


async def test_object_keys_come_back_sorted(api):
    await put(api, "c", "d", {"b": 1, "a": {"y": 1, "x": 2}})
    reply = await api.get("/v1/doc/c/d")
    assert b'{"a":{"x":2,"y":1},"b":1}' in reply.content


async def test_delete_answers_true_then_false_never_404(api):
    await put(api, "c", "d", {"x": 1})
    reply = await api.delete("/v1/doc/c/d")
    assert (reply.status_code, reply.json()) == (200, {"deleted": True})
    await assert_absent(api, "c", "d")
    before = offset(api)
    reply = await api.delete("/v1/doc/c/d")
    assert (reply.status_code, reply.json()) == (200, {"deleted": False})
    assert offset(api) == before  # no event for a missing document
    # the next put starts again at revision 1
    assert (await put(api, "c", "d", {"x": 2})).json()["revision"] == 1


async def test_get_missing_is_404(api):
    await assert_absent(api, "c", "nope")


async def test_collections_are_separate(api):
    await put(api, "a", "x", 1)
    await put(api, "b", "x", 2)
    await assert_doc(api, "a", "x", 1, 1)
    await assert_doc(api, "b", "x", 2, 1)


async def test_id_may_contain_slash_via_percent_2f(api):
    assert (await put(api, "c", "a%2Fb", {"k": 1})).status_code == 200
    await assert_doc(api, "c", "a%2Fb", {"k": 1}, 1)


# ---- bad input writes nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "collection, id_, doc, status, code, message, field",
    [
        ("c" * 65, "d", {}, 400, "invalid_argument", "collection too long", "collection"),
        ("c", "d" * 129, {}, 400, "invalid_argument", "id too long", "id"),
        ("c", "d", {"x": "y" * 65536}, 413, "payload_too_large", "doc too large", "doc"),
        # collection length is checked before id length, id before doc size (contract order)
        ("c" * 65, "d" * 129, {"x": "y" * 65536}, 400, "invalid_argument", "collection too long", "collection"),
        ("c", "d" * 129, {"x": "y" * 65536}, 400, "invalid_argument", "id too long", "id"),
    ],
)
async def test_limits_in_contract_order(api, collection, id_, doc, status, code, message, field):
    before = offset(api)
    assert_error(await put(api, collection, id_, doc), status, code, field=field, message=message)
    assert offset(api) == before


@pytest.mark.parametrize("collection", ["a%20b", ".hidden", "..", "a%5Cb", "a:b", "%C3%A9t%C3%A9"])
async def test_unsafe_collection_names_are_400(api, collection):
    # Sent raw: a client library would resolve `..` away before sending.
    auth = [("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json")]
    before = offset(api)
    for method, suffix, body in (("PUT", "/d", b"{}"), ("GET", "/d", b""), ("DELETE", "/d", b""),
                                 ("POST", "/find", b"{}"), ("POST", "/_index", b'{"field": "a"}')):
        reply = await raw_request(api.url, method, f"/v1/doc/{collection}{suffix}", auth, body)
        assert_error(reply, 400, "invalid_argument", field="collection")
    assert offset(api) == before


async def test_collection_name_with_dots_dashes_underscores_is_fine(api):
    assert (await put(api, "my-app_v1.users", "d", 1)).status_code == 200


async def test_get_and_delete_check_lengths(api):
    assert_error(await api.get(f"/v1/doc/{'c' * 65}/d"), 400, message="collection too long")
    assert_error(await api.get(f"/v1/doc/c/{'d' * 129}"), 400, message="id too long")
    assert_error(await api.delete(f"/v1/doc/c/{'d' * 129}"), 400, message="id too long")


async def test_body_errors(api):
    before = offset(api)
    reply = await api.put("/v1/doc/c/d", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(reply, 400, "invalid_argument", field="body")
    reply = await api.put("/v1/doc/c/d", data=b"{}")
    assert_error(reply, 415, field="body")
    assert offset(api) == before
    await assert_absent(api, "c", "d")


@pytest.mark.parametrize("id_", ["find", "_index"])
async def test_static_segments_win_over_ids(api, id_):
    for method in ("GET", "PUT", "DELETE"):
        reply = await api.request(method, f"/v1/doc/c/{id_}", json={})
        assert_error(reply, 405)
        assert reply.headers["Allow"] == "OPTIONS, POST"  # as OPTIONS says, and as /v1/sql/query


# ---- CAS and TTL -------------------------------------------------------------------------------


async def test_if_revision_on_put(api):
    await put(api, "c", "d", {"v": 1})
    before = offset(api)
    for rev in (0, 2, 99):
        reply = await put(api, "c", "d", {"v": "stale"}, f"?if_revision={rev}")
        assert_error(reply, 409, "revision_mismatch", message="if_revision mismatch")
    assert offset(api) == before
    await assert_doc(api, "c", "d", {"v": 1}, 1)
    reply = await put(api, "c", "d", {"v": 2}, "?if_revision=1")
    assert reply.json()["revision"] == 2
    assert_error(await put(api, "c", "absent", {}, "?if_revision=1"), 409, "revision_mismatch")
    await assert_absent(api, "c", "absent")


async def test_if_revision_on_delete(api):
    await put(api, "c", "d", {"v": 1})
    before = offset(api)
    assert_error(await api.delete("/v1/doc/c/d?if_revision=2"), 409, "revision_mismatch")
    assert_error(await api.delete("/v1/doc/c/absent?if_revision=1"), 409, "revision_mismatch")
    assert offset(api) == before
    await assert_doc(api, "c", "d", {"v": 1}, 1)
    assert (await api.delete("/v1/doc/c/d?if_revision=1")).json() == {"deleted": True}


@pytest.mark.parametrize("query, field", [("?if_revision=x", "if_revision"), ("?ttl_ms=-1", "ttl_ms"),
                                          ("?if_revision=1.5", "if_revision")])
async def test_bad_query_values_are_400(api, query, field):
    before = offset(api)
    assert_error(await put(api, "c", "d", {}, query), 400, field=field)
    assert offset(api) == before


async def test_ttl_expires_documents_with_a_logged_event(api):
    reply = await put(api, "c", "short", {"v": 1}, "?ttl_ms=0")
    body = reply.json()
    assert body["revision"] == 1 and isinstance(body["expires_at_ms"], int)
    await assert_absent(api, "c", "short")  # expired at once: invisible
    assert (await api.post("/v1/doc/c/find", json={})).json()["documents"] == []
    long = (await put(api, "c", "long", {"v": 1}, "?ttl_ms=3600000")).json()
    assert long["expires_at_ms"] > body["expires_at_ms"]
    await api.engine.sweep_ttl()  # (the background sweeper may have been first)
    # the expiry is a logged doc_deleted event with reason "ttl"
    async with open_stream(api, "/v1/stream?since=0&types=doc_deleted") as conn:
        (frame,) = await read_frames(conn, 1)
    assert frame["data"]["data"] == {"collection": "c", "id": "short", "revision": 1, "reason": "ttl"}
    await assert_doc(api, "c", "long", {"v": 1}, 1)
    # a put without ttl_ms clears the TTL
    assert (await put(api, "c", "long", {"v": 2})).json()["expires_at_ms"] is None


# ---- events ------------------------------------------------------------------------------------


async def test_doc_events_on_the_stream_with_collection_filter(api):
    await api.put("/v1/state/k", json={"value": 1})
    await put(api, "other", "x", {"a": 1})
    await put(api, "users", "u1", {"name": "Ada"})
    await api.delete("/v1/doc/users/u1")
    async with open_stream(api, "/v1/stream?since=0&collection=users") as conn:
        frames = await read_frames(conn, 2)
    assert [f["event"] for f in frames] == ["doc_upserted", "doc_deleted"]
    up, down = (f["data"] for f in frames)
    assert up["data"] == {"collection": "users", "id": "u1", "revision": 1, "doc": {"name": "Ada"},
                          "expires_at_ms": None}
    assert down["data"] == {"collection": "users", "id": "u1", "revision": 1, "reason": "explicit"}
    assert down["offset"] > up["offset"]


# ---- durability ----------------------------------------------------------------------------------


async def test_documents_survive_restart_with_revisions(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        for i in range(30):
            await put(api, "c", f"d{i}", {"i": i})
        await put(api, "c", "d0", {"i": "again"})
        await api.delete("/v1/doc/c/d1")
        await api.engine.checkpoint()
        await put(api, "c", "d2", {"i": "after checkpoint"})  # only in the WAL tail
    async with open_api(data) as api:
        await assert_doc(api, "c", "d0", {"i": "again"}, 2)
        await assert_absent(api, "c", "d1")
        await assert_doc(api, "c", "d2", {"i": "after checkpoint"}, 2)
        await assert_doc(api, "c", "d29", {"i": 29}, 1)
        assert (await put(api, "c", "d2", {})).json()["revision"] == 3


async def test_idle_docs_materializer_advances_its_checkpoint(api):
    for i in range(5):
        await api.put(f"/v1/state/k{i}", json={"value": i})
    await api.engine.checkpoint()
    assert api.engine.checkpointed["docs"] == api.engine.durable_offset


# ---- find ----------------------------------------------------------------------------------------


async def find(api, collection: str = "c", **body):
    reply = await api.post(f"/v1/doc/{collection}/find", json=body)
    assert reply.status_code == 200, reply.content
    return reply.json()


async def test_find_contract_shape_and_limits(api):
    for i in range(130):
        await put(api, "c", f"d{i:03d}", {"i": i, "even": i % 2 == 0})
    body = await find(api)
    assert list(body) == ["documents", "next_cursor"]
    assert len(body["documents"]) == 20  # default limit
    assert list(body["documents"][0]) == ["id", "doc", "revision"]
    assert [d["id"] for d in body["documents"]] == [f"d{i:03d}" for i in range(20)]
    assert len((await find(api, limit=1000))["documents"]) == 100  # MAX_DOC_FIND
    assert len((await find(api, limit=0))["documents"]) == 1  # at least one
    assert len((await find(api, filter=None, limit=5))["documents"]) == 5
    assert (await find(api, collection="empty"))["documents"] == []


async def test_find_top_level_exact_match_as_the_original(api):
    await put(api, "users", "u1", {"name": "Ada", "role": "admin"})
    await put(api, "users", "u2", {"name": "Bob", "role": "user"})
    body = await find(api, "users", filter={"role": "admin"})
    assert body["documents"] == [{"id": "u1", "doc": {"name": "Ada", "role": "admin"}, "revision": 1}]
    assert (await find(api, "users", filter="admin"))["documents"] == []  # non-object filter
    assert len((await find(api, "users", filter={}))["documents"]) == 2


async def test_json_equality_keeps_types_apart(api):
    for id_, v in [("int", 1), ("float", 1.0), ("true", True), ("str", "1"), ("null", None), ("list", [1])]:
        await put(api, "t", id_, {"v": v})
    for v, expected in [(1, ["int"]), (1.0, ["float"]), (True, ["true"]), ("1", ["str"]), (None, ["null"]),
                        ([1], ["list"]), ([1.0], [])]:
        ids = [d["id"] for d in (await find(api, "t", filter={"v": v}))["documents"]]
        assert ids == expected, v


@pytest.mark.parametrize(
    "flt, field, message",
    [
        ({"a": {"$regex": "x"}}, "filter.a.$regex", None),
        ({"a": {"$in": 1}}, "filter.a.$in", "$in needs an array"),
        ({"a": {"$gt": True}}, "filter.a.$gt", "$gt needs a number or a string"),
        ({"a": {"$gt": [1]}}, "filter.a.$gt", None),
        ({"a": {"$exists": 1}}, "filter.a.$exists", "$exists needs true or false"),
        ({"a": {"$eq": 1, "b": 2}}, "filter.a", None),
        ({"a..b": 1}, "filter.a..b", None),
        ({"": 1}, "filter.", None),
    ],
)
async def test_bad_filters_are_400_naming_the_field(api, flt, field, message):
    assert_error(await api.post("/v1/doc/c/find", json={"filter": flt}), 400, "invalid_argument",
                 field=field, message=message)


async def test_find_body_errors(api):
    assert_error(await api.post("/v1/doc/c/find", json={"filter": {"a": "x" * 70000}}), 413,
                 "payload_too_large", message="filter too large")
    assert_error(await api.post("/v1/doc/c/find", json={"limit": -1}), 422, field="limit")
    assert_error(await api.post("/v1/doc/c/find", json={"limit": "5"}), 422, field="limit")
    assert_error(await api.post("/v1/doc/c/find", json={"cursor": "!!!"}), 400, field="cursor")
    assert_error(await api.post("/v1/doc/c/find", json={"cursor": 5}), 422, field="cursor")
    assert_error(await api.post("/v1/doc/c/find", json={"sort": 5}), 400, field="sort")
    assert_error(await api.post("/v1/doc/c/find", json=[1]), 422, field="body")


async def test_cursor_of_another_sort_is_refused(api):
    for i in range(3):
        await put(api, "c", f"d{i}", {"a": i})
    cursor = (await find(api, limit=1, sort="a"))["next_cursor"]
    assert cursor
    assert_error(await api.post("/v1/doc/c/find", json={"limit": 1, "sort": "-a", "cursor": cursor}), 400,
                 field="cursor")


# ---- _index --------------------------------------------------------------------------------------


async def test_index_creation_is_idempotent_and_used(api):
    for i in range(50):
        await put(api, "c", f"d{i:02d}", {"a": {"b": i % 5}, "name": f"n{i}"})
    reply = await api.post("/v1/doc/c/_index", json={"field": "a.b"})
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert body["collection"] == "c" and body["field"] == "a.b" and body["created"] is True
    again = (await api.post("/v1/doc/c/_index", json={"field": "a.b"})).json()
    assert again["created"] is False and again["index"] == body["index"]
    from kissvdb.documents.query import FindQuery

    plan = await api.engine.docs.explain(FindQuery("c", {"a.b": 3}), 0)
    assert any(body["index"] in step for step in plan), plan
    ids = [d["id"] for d in (await find(api, filter={"a.b": 3}, limit=100))["documents"]]
    assert ids == [f"d{i:02d}" for i in range(50) if i % 5 == 3]


async def test_index_bad_input(api):
    assert_error(await api.post("/v1/doc/c/_index", json={}), 422, field="field")
    assert_error(await api.post("/v1/doc/c/_index", json={"field": 1}), 422, field="field")
    assert_error(await api.post("/v1/doc/c/_index", json={"field": "a..b"}), 400, field="field")
    assert_error(await api.post("/v1/doc/c/_index", json={"field": ""}), 400, field="field")


async def test_unknown_methods_on_find_and_index(api):
    assert_error(await api.get("/v1/doc/c"), 404)
    reply = await api.request("PATCH", "/v1/doc/c/d", json={})
    assert_error(reply, 405)


async def test_a_find_sees_every_acknowledged_write(api):
    async def writer(n: int):
        for i in range(20):
            await put(api, "c", f"w{n}-{i}", {"n": n})

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(writer, n)
    body = await find(api, filter={"n": {"$in": [0, 1, 2, 3]}}, limit=100)
    assert len(body["documents"]) == 80


async def test_a_find_past_the_time_limit_is_interrupted(make_api):
    async with make_api(sql_time_limit_ms=1) as api:
        docs = [(0, "c", f"d{i:05d}", b'{"a":{"b":%d}}' % i, 1, None, 1) for i in range(60_000)]
        await api.engine.docs.thread.run(api.engine.docs.store.apply_docs, docs, 0)
        reply = await api.post("/v1/doc/c/find", json={"filter": {"a.b": {"$gt": 10**9}}})
        body = assert_error(reply, 400, "invalid_argument", field="filter")
        assert "time limit" in body["message"]
        assert (await put(api, "c", "after", {"a": 1})).status_code == 200  # the docs thread is free


async def test_doc_series_in_metrics(api):
    await put(api, "c", "d", 1)
    await api.delete("/v1/doc/c/d")
    assert await api.metric("kissvdb_doc_put_total") == 1
    assert await api.metric("kissvdb_doc_delete_total") == 1
    assert await api.metric("kissvdb_sql_queries_total") == 0


# ---- GET /v1/doc (collections) -----------------------------------------------------------------


async def test_collections_are_listed_by_name_with_live_counts(api):
    assert (await api.get("/v1/doc")).json() == {"collections": []}
    for collection, id_ in [("users", "a"), ("users", "b"), ("orders", "1"), ("B-2.x", "1")]:
        assert (await put(api, collection, id_, {"n": 1})).status_code == 200
    assert (await put(api, "gone", "1", {"n": 1})).status_code == 200
    assert (await api.delete("/v1/doc/gone/1")).json() == {"deleted": True}
    assert (await put(api, "users", "c", {"n": 1}, "?ttl_ms=0")).status_code == 200  # expired at once
    reply = await api.get("/v1/doc")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert reply.json() == {"collections": [
        {"name": "B-2.x", "count": 1}, {"name": "orders", "count": 1}, {"name": "users", "count": 2}]}

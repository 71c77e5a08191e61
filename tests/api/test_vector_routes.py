"""/v1/vector* over a real Engine: contract shapes, every error row (each checked to log
nothing), semantics of add/upsert/update/delete, CBOR = JSON, filters and groups."""

import cbor2
import numpy as np
import pytest

from tests.helpers import assert_error

C = "/v1/vector/docs"


async def durable(api) -> int:
    return api.engine.durable_offset


async def create(api, name="docs", dim=3, metric="cosine", **extra):
    r = await api.post(f"/v1/vector/{name}", json={"dim": dim, "metric": metric, **extra})
    assert r.status_code == 200, r.content
    return r.json()


async def test_create_list_info_and_the_manifest_key(api):
    assert (await api.get("/v1/vector")).json() == {"collections": []}
    assert await create(api) == {"collection": "docs", "dim": 3, "metric": "cosine", "index": "IVF_FLAT_Q8"}
    cols = (await api.get("/v1/vector")).json()["collections"]
    assert [c["collection"] for c in cols] == ["docs"]
    c = cols[0]
    for field in ("dim", "metric", "live_count", "total_records", "upsert_count", "file_len", "applied_offset",
                  "created_at_ms", "updated_at_ms", "segments", "deleted_count"):
        assert field in c
    info = (await api.get(C)).json()
    assert info["count"] == 0 and info["dim"] == 3 and info["metric"] == "cosine" and info["notes"] is None
    assert info["manifest"]["collection"] == "docs" and info["manifest"]["dim"] == 3
    r = await api.post(C, json={"dim": 3, "metric": "cosine"})
    assert_error(r, 409, "already_exists", message="collection already exists")


async def test_add_upsert_update_delete_get_search(api):
    await create(api)
    assert (await api.post(f"{C}/add", json={"id": "a", "vector": [1, 0, 0], "meta": {"t": "x"}})).json() == {"ok": True}
    assert_error(await api.post(f"{C}/add", json={"id": "a", "vector": [1, 0, 0]}), 409, "already_exists",
                 message="id already exists")
    assert (await api.post(f"{C}/upsert", json={"id": "b", "vector": [0.9, 0.1, 0]})).json() == {"ok": True}
    g = (await api.get(f"{C}/get?id=a")).json()
    assert g == {"id": "a", "vector": [1.0, 0.0, 0.0], "meta": {"t": "x"}}
    # update keeps absent fields
    assert (await api.post(f"{C}/update", json={"id": "a", "vector": [0.1, 0.2, 0.3]})).json() == {"ok": True}
    g = (await api.get(f"{C}/get?id=a")).json()
    assert g["vector"] == [0.1, 0.2, 0.3] and g["meta"] == {"t": "x"}
    await api.post(f"{C}/update", json={"id": "a", "meta": {"t": "y"}})
    g = (await api.get(f"{C}/get?id=a")).json()
    assert g["vector"] == [0.1, 0.2, 0.3] and g["meta"] == {"t": "y"}
    hits = (await api.post(f"{C}/search", json={"vector": [0.9, 0.1, 0], "k": 5, "include_meta": True})).json()["hits"]
    assert [h["id"] for h in hits] == ["b", "a"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-6) and hits[0]["meta"] is None
    assert hits[1]["meta"] == {"t": "y"}
    hits = (await api.post(f"{C}/search", json={"vector": [0.9, 0.1, 0], "k": 5})).json()["hits"]
    assert hits[1]["meta"] is None
    assert (await api.post(f"{C}/delete", json={"id": "a"})).json() == {"deleted": True}
    assert_error(await api.get(f"{C}/get?id=a"), 404, "not_found", message="vector id not found")
    assert_error(await api.post(f"{C}/delete", json={"id": "a"}), 404, "not_found", message="id not found")


async def test_dot_vectors_come_back_normalized(api):
    await create(api, "d", dim=2, metric="dot")
    await api.post("/v1/vector/d/upsert", json={"id": "a", "vector": [3, 4]})
    assert (await api.get("/v1/vector/d/get?id=a")).json()["vector"] == [0.6, 0.8]


ERRORS = [
    # (method, path, body, status, code, message)
    ("post", "/v1/vector/" + "x" * 65, {"dim": 3, "metric": "cosine"}, 400, "invalid_argument", "collection too long"),
    ("post", C + "x", {"dim": 0, "metric": "cosine"}, 400, "invalid_argument", "invalid dim"),
    ("post", C + "x", {"dim": 5000, "metric": "cosine"}, 400, "invalid_argument", "invalid dim"),
    ("post", C + "x", {"dim": 3, "metric": "l2"}, 422, None, None),
    ("post", C + "x", {"metric": "cosine"}, 422, None, None),
    ("post", C + "/add", {"id": "i" * 129, "vector": [1, 2, 3]}, 400, "invalid_argument", "id too long"),
    ("post", C + "/add", {"id": "a", "vector": [1.0] * 4097}, 400, "invalid_argument", "vector too large"),
    ("post", C + "/add", {"id": "a", "vector": [1, 2, 3], "meta": {"s": "x" * 70000}}, 413, "payload_too_large",
     "meta too large"),
    ("post", "/v1/vector/nope/add", {"id": "a", "vector": [1, 2, 3]}, 404, "not_found", "collection or id not found"),
    ("post", C + "/add", {"id": "a", "vector": [1, 2]}, 400, "dim_mismatch", "vector dimension mismatch"),
    ("post", C + "/upsert", {"id": "a", "vector": []}, 400, "dim_mismatch", "vector dimension mismatch"),
    ("post", C + "/upsert", {"id": "a", "vector": [1, "x", 3]}, 422, None, None),
    ("post", C + "/upsert", {"id": "a", "vector": [1, True, 3]}, 422, None, None),
    ("post", C + "/update", {"id": "zz", "meta": {}}, 404, "not_found", "id not found"),
    ("post", C + "/update", {"id": "a", "vector": [1, 2]}, 400, "dim_mismatch", "vector dimension mismatch"),
    ("post", C + "/delete", {"id": "zz"}, 404, "not_found", "id not found"),
    ("post", "/v1/vector/nope/delete", {"id": "a"}, 404, "not_found", "collection or id not found"),
    ("post", C + "/upsert_batch", {"items": []}, 400, "invalid_argument", "items required"),
    ("post", C + "/upsert_batch", {"items": [{"id": str(i), "vector": [1, 2, 3]} for i in range(257)]}, 400,
     "invalid_argument", "too many items"),
    ("post", "/v1/vector/nope/upsert_batch", {"items": [{"id": "a", "vector": [1, 2, 3]}]}, 404, "not_found", None),
    ("post", C + "/delete_batch", {"ids": []}, 400, "invalid_argument", "ids required"),
    ("post", C + "/delete_batch", {"ids": [str(i) for i in range(257)]}, 400, "invalid_argument", "too many ids"),
    ("post", "/v1/vector/nope/delete_batch", {"ids": ["a"]}, 404, "not_found", None),
    ("get", C + "/get", None, 400, None, None),
    ("get", C + "/get?id=" + "i" * 129, None, 400, "invalid_argument", "id too long"),
    ("get", "/v1/vector/nope/get?id=a", None, 404, "not_found", "collection or id not found"),
    ("post", C + "/search", {"vector": [1.0] * 4097, "k": 1}, 400, "invalid_argument", "vector too large"),
    ("post", C + "/search", {"vector": [1, 2, 3], "k": 0}, 400, "invalid_argument", "invalid k"),
    ("post", C + "/search", {"vector": [1, 2, 3], "k": 257}, 400, "invalid_argument", "invalid k"),
    ("post", C + "/search", {"vector": [1, 2, 3], "k": 1, "filters": {"s": "x" * 70000}}, 413, "payload_too_large",
     "filters too large"),
    ("post", "/v1/vector/nope/search", {"vector": [1, 2, 3], "k": 1}, 404, "not_found", None),
    ("post", C + "/search", {"vector": [1, 2], "k": 1}, 400, "dim_mismatch", "vector dimension mismatch"),
    ("post", C + "/search", {"vector": [1, 2, 3], "k": 1, "filters": {"a": {"$bad": 1}}}, 400, "invalid_argument",
     None),
    ("get", "/v1/vector/nope", None, 404, "not_found", "collection not found"),
    ("delete", "/v1/vector/nope", None, 404, "not_found", None),
    ("post", "/v1/vector/..bad", {"dim": 3, "metric": "cosine"}, 400, "invalid_argument", None),
]


@pytest.mark.parametrize("method,path,body,status,code,message", ERRORS)
async def test_every_error_row_logs_nothing(api, method, path, body, status, code, message):
    await create(api)
    await api.post(f"{C}/upsert", json={"id": "a", "vector": [1, 2, 3]})
    before = await durable(api)
    kw = {"json": body} if body is not None else {}
    r = await getattr(api, method)(path, **kw)
    assert_error(r, status, code, message=message)
    assert await durable(api) == before  # nothing was logged


async def test_batches_report_inline_errors_in_input_order(api):
    await create(api)
    r = await api.post(f"{C}/upsert_batch", json={"items": [
        {"id": "a", "vector": [1, 0, 0]}, {"id": "b", "vector": [1, 0]}, {"id": "i" * 129, "vector": [1, 2, 3]},
        {"id": "c", "vector": [1, 2, 3], "meta": {"s": "x" * 70000}}, {"id": "d", "vector": [0, 1, 0], "meta": 7}]})
    res = r.json()["results"]
    assert res[0] == {"status": "upserted", "id": "a"}
    assert res[1]["error"] == {"error": "dim_mismatch", "message": "vector dimension mismatch"}
    assert res[2]["error"] == {"error": "invalid_argument", "message": "id too long"}
    assert res[3]["error"] == {"error": "payload_too_large", "message": "meta too large"}
    assert res[4] == {"status": "upserted", "id": "d"}
    r = await api.post(f"{C}/delete_batch", json={"ids": ["a", "zz", "i" * 129]})
    res = r.json()["results"]
    assert res[0] == {"status": "deleted", "id": "a"}
    assert res[1]["error"] == {"error": "not_found", "message": "id not found"}
    assert res[2]["error"]["message"] == "id too long"


async def test_cbor_and_json_give_identical_results(api):
    await create(api, dim=4)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((50, 4)).astype(np.float32)
    items = [{"id": f"v{i}", "vector": vecs[i].tobytes(), "meta": {"g": i % 3}} for i in range(50)]
    r = await api.post(f"{C}/upsert_batch", data=cbor2.dumps({"items": items}),
                       headers={"Content-Type": "application/cbor", "Accept": "application/cbor"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/cbor"
    assert all(x["status"] == "upserted" for x in cbor2.loads(r.content)["results"])
    q = vecs[7]
    body = {"vector": q.tolist(), "k": 5, "include_meta": True, "filters": {"g": {"$in": [0, 1]}}}
    j = (await api.post(f"{C}/search", json=body)).json()
    c = cbor2.loads((await api.post(f"{C}/search", data=cbor2.dumps(dict(body, vector=q.tobytes())),
                                    headers={"Content-Type": "application/cbor",
                                             "Accept": "application/cbor"})).content)
    assert [h["id"] for h in j["hits"]] == [h["id"] for h in c["hits"]]
    assert np.allclose([h["score"] for h in j["hits"]], [h["score"] for h in c["hits"]])
    assert [h["meta"] for h in j["hits"]] == [h["meta"] for h in c["hits"]]
    got = (await api.get(f"{C}/get?id=v7")).json()
    assert np.array_equal(np.array(got["vector"], np.float32), vecs[7])


async def test_group_by_and_filter_operators(api):
    await create(api, dim=2)
    for i in range(12):
        await api.post(f"{C}/upsert", json={"id": f"v{i:02d}", "vector": [1, i / 10], "meta": {"g": i % 3, "n": i}})
    hits = (await api.post(f"{C}/search", json={"vector": [1, 0], "k": 4, "group_by": "g", "group_limit": 2,
                                                 "include_meta": True})).json()["hits"]
    assert [h["id"] for h in hits] == ["v00", "v03", "v01", "v04"]
    hits = (await api.post(f"{C}/search", json={"vector": [1, 0], "k": 10,
                                                 "filters": {"n": {"$gte": 5, "$lt": 8}}})).json()["hits"]
    assert sorted(h["id"] for h in hits) == ["v05", "v06", "v07"]


async def test_drop_collection_and_compact(api):
    await create(api)
    for i in range(10):
        await api.post(f"{C}/upsert", json={"id": str(i), "vector": [1, i, 0]})
    for i in range(6):
        await api.post(f"{C}/delete", json={"id": str(i)})
    r = (await api.post(f"{C}/compact")).json()
    assert r["ok"] is True and r["live_count"] == 4 and r["deleted_count"] == 0
    assert (await api.delete(C)).json() == {"deleted": True}
    assert_error(await api.get(C), 404, "not_found")
    assert (await api.get("/v1/vector")).json() == {"collections": []}
    await create(api)  # the name is free again
    assert (await api.get(C)).json()["count"] == 0


async def test_index_field_and_restart(make_api):
    async with make_api() as api:
        for kind in ("HNSW", "FLAT", "IVF_FLAT_Q8"):
            assert (await create(api, kind.lower().replace("_", "-"), dim=3, index=kind))["index"] == kind
            await api.post(f"/v1/vector/{kind.lower().replace('_', '-')}/upsert",
                           json={"id": "a", "vector": [1, 2, 3], "meta": {"k": kind}})
        assert_error(await api.post("/v1/vector/z", json={"dim": 3, "metric": "cosine", "index": "LSH"}), 422,
                     field="index")
        data_dir = api.engine.settings.data_dir
    from tests.api.conftest import open_api
    async with open_api(data_dir) as api:
        for kind in ("HNSW", "FLAT", "IVF_FLAT_Q8"):
            name = kind.lower().replace("_", "-")
            g = (await api.get(f"/v1/vector/{name}/get?id=a")).json()
            assert g["meta"] == {"k": kind}
            assert (await api.get(f"/v1/vector/{name}")).json()["index"] == kind


async def test_vector_events_on_the_stream_with_the_collection_filter(api):
    from tests.api.test_stream_routes import open_stream, read_frames

    await create(api)
    await create(api, "other")
    await api.post(f"{C}/add", json={"id": "a", "vector": [0.1, 0.2, 0.3], "meta": {"b": 1, "a": 2}})
    await api.post(f"{C}/upsert", json={"id": "b", "vector": [1, 2, 3]})
    await api.post("/v1/vector/other/upsert", json={"id": "x", "vector": [1, 2, 3]})
    await api.post(f"{C}/update", json={"id": "a", "meta": {"c": 3}})
    await api.post(f"{C}/delete", json={"id": "b"})
    async with open_stream(api, "/v1/stream?since=0&collection=docs") as conn:
        frames = await read_frames(conn, 5)
    types = [f["event"] for f in frames]
    assert types == ["vector_collection_created", "vector_added", "vector_upserted", "vector_updated",
                     "vector_deleted"]
    assert frames[0]["data"]["data"] == {"collection": "docs", "dim": 3, "metric": "cosine", "index": "IVF_FLAT_Q8"}
    assert frames[1]["data"]["data"] == {"collection": "docs", "id": "a", "vector": [0.1, 0.2, 0.3],
                                         "meta": {"a": 2, "b": 1}}
    assert frames[3]["data"]["data"]["meta"] == {"c": 3} and frames[3]["data"]["data"]["vector"] == [0.1, 0.2, 0.3]
    assert frames[4]["data"]["data"] == {"collection": "docs", "id": "b"}


async def test_meta_too_deep_and_non_json_cbor_meta_are_refused_and_log_nothing(api):
    await create(api)
    before = await durable(api)
    deep = b'{"id":"d","vector":[1,2,3],"meta":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}"
    assert_error(await api.post(f"{C}/upsert", data=deep, headers={"Content-Type": "application/json"}), 400,
                 "invalid_argument", field="meta")
    r = await api.post(f"{C}/upsert_batch", data=cbor2.dumps({"items": [{"id": "b", "vector": [1, 2, 3],
                                                                          "meta": {"x": b"bytes"}}]}),
                       headers={"Content-Type": "application/cbor"})
    assert r.json()["results"][0]["status"] == "error"
    assert await durable(api) == before


@pytest.mark.parametrize("index", ["HNSW", "IVF_FLAT_Q8"])
async def test_search_batch_answers_each_query_as_search_does(api, index):
    await create(api, dim=4, index=index)
    rng = np.random.default_rng(9)
    vecs = rng.standard_normal((300, 4)).astype(np.float32)
    items = [{"id": f"v{i}", "vector": vecs[i].tobytes(), "meta": {"g": i % 3}} for i in range(300)]
    for s in range(0, 300, 100):
        r = await api.post(f"{C}/upsert_batch", data=cbor2.dumps({"items": items[s:s + 100]}),
                           headers={"Content-Type": "application/cbor"})
        assert r.status_code == 200
    queries = [{"vector": vecs[i].tolist(), "k": 5} for i in range(6)]
    queries += [{"vector": vecs[7].tolist(), "k": 3, "filters": {"g": 2}, "include_meta": True},
                {"vector": vecs[8].tolist(), "k": 4, "group_by": "g"},
                {"vector": vecs[9].tolist(), "k": 2, "ef": 16, "nprobe": 4}]
    r = await api.post(f"{C}/search_batch", json={"queries": queries})
    assert r.status_code == 200, r.content
    results = r.json()["results"]
    assert len(results) == len(queries)
    for q, res in zip(queries, results):
        alone = (await api.post(f"{C}/search", json=q)).json()
        assert res == alone
    # CBOR in and out, vectors as float32 bytes.
    cq = [dict(q, vector=np.asarray(q["vector"], np.float32).tobytes()) for q in queries]
    r = await api.post(f"{C}/search_batch", data=cbor2.dumps({"queries": cq}),
                       headers={"Content-Type": "application/cbor", "Accept": "application/cbor"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/cbor"
    c = cbor2.loads(r.content)["results"]
    assert [[h["id"] for h in x["hits"]] for x in c] == [[h["id"] for h in x["hits"]] for x in results]


async def test_search_batch_errors_name_the_query_and_write_nothing(api):
    await create(api)
    await api.post(f"{C}/upsert", json={"id": "a", "vector": [1, 2, 3]})
    before = await durable(api)
    ok = {"vector": [1, 0, 0], "k": 1}
    cases = [
        ({}, 422, "invalid_argument", "queries"),
        ({"queries": []}, 400, "invalid_argument", "queries"),
        ({"queries": [ok] * 257}, 400, "invalid_argument", "queries"),
        ({"queries": [ok, 3]}, 422, "invalid_argument", "queries[1]"),
        ({"queries": [ok, {"k": 1}]}, 422, "invalid_argument", "queries[1].vector"),
        ({"queries": [ok, {"vector": [1, 0, 0], "k": -1}]}, 422, "invalid_argument", "queries[1].k"),
        ({"queries": [ok, {"vector": [1, 0], "k": 1}]}, 400, "dim_mismatch", "queries[1].vector"),
        ({"queries": [ok, {"vector": [1, 0, 0], "k": 0}]}, 400, "invalid_argument", "queries[1].k"),
        ({"queries": [ok, {"vector": [1, 0, 0], "k": 1, "filters": {"g": {"$nope": 1}}}]}, 400,
         "invalid_argument", "queries[1].filters.g.$nope"),
    ]
    for body, status, code, field in cases:
        r = await api.post(f"{C}/search_batch", json=body)
        assert_error(r, status, code, field=field)
    r = await api.post("/v1/vector/missing/search_batch", json={"queries": [ok]})
    assert_error(r, 404, "not_found", field="collection")
    assert await durable(api) == before


async def test_a_collection_and_its_manifest_key_are_one_wal_write(api):
    """The collection event and its `vector:<name>:manifest` key are logged in ONE WAL write:
    a crash keeps both or neither. Dropping logs the deletion and the key's removal together."""
    w = api.engine.writer
    batches, records = w.statistics().batches_total, w.statistics().records_total
    await create(api)
    assert (w.statistics().batches_total, w.statistics().records_total) == (batches + 1, records + 2)
    item = (await api.get("/v1/state/vector:docs:manifest")).json()
    manifest = (await api.get(C)).json()["manifest"]
    assert item["value"] == manifest and manifest["created_at_ms"] == (await api.get(C)).json()["created_at_ms"]
    assert (await api.delete(C)).status_code == 200
    assert (w.statistics().batches_total, w.statistics().records_total) == (batches + 2, records + 4)
    assert (await api.get("/v1/state/vector:docs:manifest")).status_code == 404


async def test_the_vector_key_prefix_is_read_only_to_users(api):
    await create(api)
    key = "vector:docs:manifest"
    before = (await api.get(C)).json()["manifest"]
    offset = await durable(api)
    body = assert_error(await api.put(f"/v1/state/{key}", json={"value": "junk"}), 403, "forbidden", field="key")
    assert key in body["message"]
    r = await api.put(f"/v1/state/{key}", json={"value": "junk", "if_revision": 1})  # compare-and-set
    assert_error(r, 403, "forbidden", field="key")
    assert_error(await api.delete(f"/v1/state/{key}"), 403, "forbidden", field="key")
    assert_error(await api.put("/v1/state/vector:new", json={"value": 1}), 403, "forbidden", field="key")
    r = await api.post("/v1/state/batch_put", json={"operations": [
        {"key": "fine", "value": 1}, {"key": "vector:other:manifest", "value": 2}]})
    body = assert_error(r, 403, "forbidden", field="operations[1].key")
    assert "vector:other:manifest" in body["message"]
    assert await durable(api) == offset  # nothing written
    assert (await api.get("/v1/state/fine")).status_code == 404
    assert (await api.get(C)).json()["manifest"] == before
    assert (await api.get(f"/v1/state/{key}")).json()["value"] == before

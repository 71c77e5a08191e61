"""The vector routes (`/v1/vector*`) at their largest legal inputs, against the worst legal stored
data, keep the event loop free and `/v1/health` answering (issue 9, "Budgets";
tests/loop_hold.py, tests/vector_workload.py).

In turn: a search_batch of MAX_VECTOR_BATCH queries x MAX_K with metas and group_by, in JSON and
in CBOR (4 GB of metas: refused, naming `queries`, past VECTOR_RESULT_BYTES_MAX; it used to be
built, and CBOR spent seconds re-encoding metas on the loop), the same without metas, a single
search answering MAX_K metas of MAX_JSON_BYTES in JSON and in CBOR, an upsert_batch of the
default MAX_BODY_BYTES of JSON numbers (parsing grows with the setting, which is raised here for
the search_batch alone), deletes, a compaction, get, info and list.
"""

from __future__ import annotations

import cbor2
import numpy as np
import orjson
import trio

from tests.helpers import assert_error, wait_until
from tests.loop_hold import run_within_budget
from tests.vector_workload import (BODY_BYTES_MAX, CBOR_HEADERS, COLLECTION, DEFAULTS, DIM, STORED,
                                   largest_json_upsert, largest_search, search_batch, seed_bodies, worst_meta)

C = f"/v1/vector/{COLLECTION}"
CBOR_BOTH = {**CBOR_HEADERS, "Accept": "application/cbor"}


def expected_meta(vid: str) -> dict:
    return worst_meta(int(vid[1:])) if vid.startswith("v") else {"g": -1 - int(vid[4:])}


async def largest_requests(api, batch_meta: bytes, batch_ids: bytes, one: bytes, upsert: bytes) -> dict:
    """Each of the largest requests in turn (together, they would measure how the box shares
    two cores between the loop and the search threads, not how long one request holds the loop)."""
    json_ids = [item["id"] for item in orjson.loads(upsert)["items"]]
    return {
        "refused": await api.post(f"{C}/search_batch", data=batch_meta, headers=CBOR_HEADERS),
        "refused_cbor": await api.post(f"{C}/search_batch", data=batch_meta, headers=CBOR_BOTH),
        "batch": await api.pieces("POST", f"{C}/search_batch", data=batch_ids, headers=CBOR_HEADERS),
        "search": await api.pieces("POST", f"{C}/search", data=one, headers=CBOR_HEADERS),
        "search_cbor": await api.pieces("POST", f"{C}/search", data=one, headers=CBOR_BOTH),
        "upsert": await api.post(f"{C}/upsert_batch", data=upsert, headers={"Content-Type": "application/json"}),
        "delete": await api.post(f"{C}/delete_batch", json={"ids": json_ids}),
        "compact": await api.post(f"{C}/compact"),
        "get": await api.get(f"{C}/get?id=v0000", headers={"Accept": "application/cbor"}),
        "info": await api.get(C),
        "list": await api.get("/v1/vector"),
    }


async def test_vector_routes_largest_legal_requests_keep_the_loop_free(make_api):
    async with make_api(max_body_bytes=BODY_BYTES_MAX) as api:
        with trio.fail_after(300):
            reply = await api.post(C, json={"dim": DIM, "metric": "cosine"})
            assert reply.status_code == 200, reply.content
            for body in seed_bodies():
                reply = await api.post(f"{C}/upsert_batch", data=body, headers=CBOR_HEADERS)
                assert reply.status_code == 200, reply.content[:300]
            bodies = (search_batch(include_meta=True), search_batch(include_meta=False), largest_search(),
                      largest_json_upsert())
            replies = await run_within_budget(lambda: api.get("/v1/health", auth=False),
                                              lambda: largest_requests(api, *bodies))

        cap = DEFAULTS.vector_result_bytes_max
        for name in ("refused", "refused_cbor"):
            body = assert_error(replies[name], 400, "invalid_argument", field="queries")
            assert f"larger than {cap} bytes (VECTOR_RESULT_BYTES_MAX)" in body["message"]

        reply, pieces = replies["batch"]
        assert reply.status_code == 200
        results = orjson.loads(b"".join(pieces))["results"]
        assert len(results) == DEFAULTS.max_vector_batch
        assert all(len(r["hits"]) == DEFAULTS.max_k and all(h["meta"] is None for h in r["hits"]) for r in results)

        reply, pieces = replies["search"]
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
        hits = orjson.loads(b"".join(pieces))["hits"]
        assert len(hits) == DEFAULTS.max_k and all(h["meta"] == expected_meta(h["id"]) for h in hits)
        assert DEFAULTS.max_k * DEFAULTS.max_json_bytes < len(b"".join(pieces)) <= cap
        reply, pieces = replies["search_cbor"]
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/cbor"
        cbor_hits = cbor2.loads(b"".join(pieces))["hits"]
        assert [(h["id"], h["meta"]) for h in cbor_hits] == [(h["id"], h["meta"]) for h in hits]
        assert [np.float32(h["score"]) for h in cbor_hits] == [np.float32(h["score"]) for h in hits]

        assert all(r["status"] == "upserted" for r in replies["upsert"].json()["results"])
        assert all(r["status"] == "deleted" for r in replies["delete"].json()["results"])
        assert replies["compact"].status_code == 200 and replies["compact"].json()["ok"] is True
        assert cbor2.loads(replies["get"].content)["meta"] == worst_meta(0)
        assert replies["info"].json()["count"] == STORED
        assert [c["collection"] for c in replies["list"].json()["collections"]] == [COLLECTION]


async def test_collections_past_the_cap_are_refused_and_nothing_is_written(make_api):
    async with make_api(max_vector_collections=3) as api:
        for name in ("a", "b", "c"):
            assert (await api.post(f"/v1/vector/{name}", json={"dim": 2, "metric": "dot"})).status_code == 200
        offset = await api.metric("kissvdb_wal_durable_offset")
        reply = await api.post("/v1/vector/d", json={"dim": 2, "metric": "dot"})
        body = assert_error(reply, 400, "invalid_argument", field="collection")
        assert "MAX_VECTOR_COLLECTIONS" in body["message"]
        assert await api.metric("kissvdb_wal_durable_offset") == offset
        assert (await api.get("/v1/vector/d")).status_code == 404
        assert (await api.delete("/v1/vector/a")).status_code == 200
        assert (await api.post("/v1/vector/d", json={"dim": 2, "metric": "dot"})).status_code == 200
        listed = [c["collection"] for c in (await api.get("/v1/vector")).json()["collections"]]
        assert listed == ["b", "c", "d"]


async def test_a_search_past_the_request_deadline_is_answered_408_and_stops(make_api):
    """A filter whose `$in` holds IN_VALUES_MAX objects is tested row by row (objects cannot be
    looked up): ~3 ms a row, about a minute over 20,000 rows in a worker thread. At
    REQUEST_TIMEOUT_SECS the request is answered 408, and the thread stops at its next look at
    the same deadline, freeing its search slot at once. It used to be answered when the search
    was done (trio waits for a thread it cannot cancel), and then the thread ran on."""
    rows = 20_000
    async with make_api(request_timeout_secs=1, max_vector_batch=rows) as api:
        with trio.fail_after(120):
            reply = await api.post("/v1/vector/f", json={"dim": 2, "metric": "cosine", "index": "FLAT"})
            assert reply.status_code == 200
            vectors = np.random.default_rng(7).standard_normal((rows, 2)).astype("<f4")
            items = [{"id": f"v{i:05d}", "vector": vectors[i].tobytes(), "meta": {"o": {"i": i}}}
                     for i in range(rows)]
            reply = await api.post("/v1/vector/f/upsert_batch", data=cbor2.dumps({"items": items}),
                                   headers=CBOR_HEADERS)
            assert reply.status_code == 200, reply.content[:200]
            limiter = api.engine.vectors.search_limiter
            slow = {"vector": [1, 0], "k": 3, "filters": {"o": {"$in": [{"i": -j} for j in range(1, 1001)]}}}
            assert_error(await api.post("/v1/vector/f/search", json=slow), 408, "timeout")
            await wait_until(lambda: limiter.borrowed_tokens == 0, timeout=10)
            reply = await api.post("/v1/vector/f/search", json={"vector": [1, 0], "k": 3,
                                                                 "filters": {"o": {"$in": [{"i": 5}]}}})
            assert [h["id"] for h in reply.json()["hits"]] == ["v00005"]


async def test_a_compaction_past_the_request_deadline_is_answered_408_and_carries_on(make_api):
    """Merging the HNSW segments of 20,480 vectors takes seconds in a worker thread. The request
    is answered 408 at REQUEST_TIMEOUT_SECS and the merge completes in the background: the
    collection ends with one segment. It used to be answered when the merge was built, past the
    deadline, and the merge was then thrown away (the cancellation hit before it was installed)."""
    rows, dim = 20_480, 64  # a multiple of MAX_VECTOR_BATCH
    async with make_api(request_timeout_secs=1, hnsw_segment_vectors=256) as api:
        with trio.fail_after(120):
            reply = await api.post("/v1/vector/h", json={"dim": dim, "metric": "cosine", "index": "HNSW"})
            assert reply.status_code == 200
            vectors = np.random.default_rng(8).standard_normal((rows, dim)).astype("<f4")
            for start in range(0, rows, DEFAULTS.max_vector_batch):
                items = [{"id": f"v{i:05d}", "vector": vectors[i].tobytes()}
                         for i in range(start, start + DEFAULTS.max_vector_batch)]
                reply = await api.post("/v1/vector/h/upsert_batch", data=cbor2.dumps({"items": items}),
                                       headers=CBOR_HEADERS)
                assert reply.status_code == 200, reply.content[:200]
            assert (await api.get("/v1/vector/h")).json()["segments"] > 1
            assert_error(await api.post("/v1/vector/h/compact"), 408, "timeout")

            async def merged() -> bool:
                return (await api.get("/v1/vector/h")).json()["segments"] == 1

            await wait_until(merged, timeout=60)
            reply = await api.post("/v1/vector/h/search", json={"vector": vectors[7].tolist(), "k": 1})
            assert reply.json()["hits"][0]["id"] == "v00007"


async def test_filters_past_their_caps_are_refused_naming_the_field(api):
    assert (await api.post("/v1/vector/c", json={"dim": 2, "metric": "cosine"})).status_code == 200
    too_many_values = {"vector": [1, 0], "k": 1, "filters": {"o": {"$in": [{"i": j} for j in range(1001)]}}}
    body = assert_error(await api.post("/v1/vector/c/search", json=too_many_values), 400, "invalid_argument",
                        field="filters.o.$in")
    assert "1000" in body["message"]
    too_many_terms = {"vector": [1, 0], "k": 1, "filters": {f"f{j}": j for j in range(257)}}
    assert_error(await api.post("/v1/vector/c/search", json=too_many_terms), 400, "invalid_argument",
                 field="filters")
    batch = {"queries": [{"vector": [1, 0], "k": 1}, too_many_terms]}
    assert_error(await api.post("/v1/vector/c/search_batch", json=batch), 400, "invalid_argument",
                 field="queries[1].filters")
    at_caps = [{f"f{j}": j for j in range(256)}, {"o": {"$nin": [{"i": j} for j in range(1000)]}}]
    for filters in at_caps:
        reply = await api.post("/v1/vector/c/search", json={"vector": [1, 0], "k": 1, "filters": filters})
        assert reply.status_code == 200, reply.content

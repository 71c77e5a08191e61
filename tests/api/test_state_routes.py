"""`/v1/state*` over the real app and a real Engine: every route and every row of §3.3.

Each bad input is checked for its status, code, message and field, and then read back to prove
nothing was written (the key is still absent, or still at its old revision and value).
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import assert_error

MAX_KEY_LEN = 512  # Settings default; the tests below rely on it


async def put(api, key: str, body: dict):
    return await api.put(f"/v1/state/{key}", json=body)


async def assert_absent(api, key: str) -> None:
    assert_error(await api.get(f"/v1/state/{key}"), 404, "not_found", message="key not found")


async def assert_item(api, key: str, value, revision: int) -> dict:
    reply = await api.get(f"/v1/state/{key}")
    assert reply.status_code == 200, reply.content
    item = reply.json()
    assert (item["key"], item["value"], item["revision"]) == (key.replace("%2F", "/"), value, revision)
    return item


# ---- PUT ------------------------------------------------------------------------------------


async def test_put_then_get_returns_the_contract_shapes(api):
    reply = await put(api, "job:1", {"value": {"progress": 1, "b": [1, 2.5, None]}})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"key": "job:1", "revision": 1, "expires_at_ms": None}
    assert list(reply.json()) == ["key", "revision", "expires_at_ms"]

    reply = await api.get("/v1/state/job:1")
    assert reply.status_code == 200
    item = reply.json()
    assert list(item) == ["key", "value", "revision", "expires_at_ms", "mod_offset"]
    assert item["value"] == {"b": [1, 2.5, None], "progress": 1}
    assert item["revision"] == 1 and item["expires_at_ms"] is None
    assert isinstance(item["mod_offset"], int) and item["mod_offset"] >= 1
    # User objects come back with keys sorted, as the original's BTreeMap did.
    assert reply.content.index(b'"b"') < reply.content.index(b'"progress"')


async def test_put_increments_revision_and_mod_offset(api):
    first = (await put(api, "k", {"value": 1})).json()
    second = (await put(api, "k", {"value": 2})).json()
    assert (first["revision"], second["revision"]) == (1, 2)
    item = await assert_item(api, "k", 2, 2)
    other = (await put(api, "other", {"value": 0})).json()
    assert other["revision"] == 1
    assert (await api.get("/v1/state/other")).json()["mod_offset"] > item["mod_offset"]


@pytest.mark.parametrize("value", [None, 0, -1.5, "text", [], {}, [1, {"z": 1, "a": 2}], True])
async def test_any_json_value_round_trips(api, value):
    reply = await put(api, "v", {"value": value})
    assert reply.status_code == 200, reply.content
    await assert_item(api, "v", value, 1)


async def test_unknown_body_fields_are_ignored(api):
    reply = await put(api, "k", {"value": 1, "something": "else"})
    assert reply.status_code == 200
    await assert_item(api, "k", 1, 1)


async def test_key_may_contain_slash_via_percent_2f(api):
    reply = await put(api, "a%2Fb%2F", {"value": "slash"})
    assert reply.status_code == 200
    assert reply.json()["key"] == "a/b/"
    await assert_item(api, "a%2Fb%2F", "slash", 1)
    listed = (await api.get("/v1/state?prefix=a%2F")).json()
    assert [item["key"] for item in listed] == ["a/b/"]
    assert (await api.delete("/v1/state/a%2Fb%2F")).json() == {"deleted": True}


async def test_key_with_unicode_and_spaces(api):
    reply = await put(api, "cl%C3%A9%20x", {"value": 1})
    assert reply.status_code == 200
    assert reply.json()["key"] == "clé x"
    assert (await api.get("/v1/state/cl%C3%A9%20x")).json()["key"] == "clé x"


async def test_put_missing_value_is_422_naming_value(api):
    assert_error(await put(api, "k", {"ttl_ms": 5}), 422, "invalid_argument", field="value")
    await assert_absent(api, "k")


@pytest.mark.parametrize("field", ["ttl_ms", "if_revision"])
@pytest.mark.parametrize("bad", ["-1", "1.5", "1.0", '"10"', "true", "[1]", '{"a":1}', str(1 << 64)])
async def test_put_bad_unsigned_field_is_422_naming_it(api, field, bad):
    body = f'{{"value": 1, "{field}": {bad}}}'.encode()
    reply = await api.put("/v1/state/k", data=body, headers={"Content-Type": "application/json"})
    assert_error(reply, 422, "invalid_argument", field=field)
    await assert_absent(api, "k")


async def test_put_bad_field_on_existing_key_leaves_it_unchanged(api):
    await put(api, "k", {"value": "old"})
    assert_error(await put(api, "k", {"value": "new", "ttl_ms": -5}), 422, field="ttl_ms")
    item = await assert_item(api, "k", "old", 1)
    assert item["expires_at_ms"] is None


async def test_put_null_ttl_and_if_revision_mean_absent(api):
    reply = await put(api, "k", {"value": 1, "ttl_ms": None, "if_revision": None})
    assert reply.status_code == 200
    assert reply.json() == {"key": "k", "revision": 1, "expires_at_ms": None}


async def test_put_key_too_long_is_400(api):
    key = "k" * (MAX_KEY_LEN + 1)
    assert_error(await put(api, key, {"value": 1}), 400, "invalid_argument", "key", "key too long")
    assert (await api.get("/v1/state")).json() == []


async def test_key_length_is_measured_in_bytes(api):
    key = "é" * (MAX_KEY_LEN // 2)  # exactly MAX_KEY_LEN bytes
    assert (await put(api, key, {"value": 1})).status_code == 200
    too_long = key + "x"
    assert_error(await put(api, too_long, {"value": 1}), 400, message="key too long")
    assert_error(await api.get(f"/v1/state/{too_long}"), 400, message="key too long")


async def test_put_value_too_large_is_413(make_api):
    async with make_api(max_json_bytes=64) as api:
        big = "x" * 100
        assert_error(
            await put(api, "k", {"value": big}), 413, "payload_too_large", "value", "value too large"
        )
        await assert_absent(api, "k")
        # The limit applies to the canonical serialized value: exactly 64 bytes is accepted.
        exact = "y" * 62  # '"' + 62 + '"'
        assert (await put(api, "k", {"value": exact})).status_code == 200


async def test_put_key_too_long_is_checked_before_value_too_large(make_api):
    async with make_api(max_json_bytes=8) as api:
        key = "k" * (MAX_KEY_LEN + 1)
        assert_error(await put(api, key, {"value": "x" * 100}), 400, message="key too long")


async def test_if_revision_matching_writes(api):
    await put(api, "k", {"value": 1})
    reply = await put(api, "k", {"value": 2, "if_revision": 1})
    assert reply.status_code == 200 and reply.json()["revision"] == 2
    await assert_item(api, "k", 2, 2)


async def test_if_revision_mismatch_is_409_and_writes_nothing(api):
    await put(api, "k", {"value": 1})
    await put(api, "k", {"value": 2})
    reply = await put(api, "k", {"value": 3, "if_revision": 1})
    assert_error(reply, 409, "revision_mismatch", message="if_revision mismatch")
    await assert_item(api, "k", 2, 2)


@pytest.mark.parametrize("revision", [0, 1])
async def test_if_revision_on_absent_key_is_409(api, revision):
    reply = await put(api, "k", {"value": 1, "if_revision": revision})
    assert_error(reply, 409, "revision_mismatch", message="if_revision mismatch")
    await assert_absent(api, "k")


async def test_ttl_sets_expires_at_and_put_without_ttl_clears_it(api):
    before = int(time.time() * 1000)
    reply = await put(api, "k", {"value": 1, "ttl_ms": 60_000})
    after = int(time.time() * 1000)
    expires = reply.json()["expires_at_ms"]
    assert before + 60_000 <= expires <= after + 60_000
    assert (await api.get("/v1/state/k")).json()["expires_at_ms"] == expires
    reply = await put(api, "k", {"value": 2})
    assert reply.json()["expires_at_ms"] is None
    assert (await api.get("/v1/state/k")).json()["expires_at_ms"] is None


async def test_ttl_zero_answers_200_with_expiry_now_and_the_key_is_gone(api):
    before = int(time.time() * 1000)
    reply = await put(api, "k", {"value": 1, "ttl_ms": 0})
    after = int(time.time() * 1000)
    assert reply.status_code == 200, reply.content  # the original answered 500 here (QUIRK)
    body = reply.json()
    assert body["revision"] == 1 and before <= body["expires_at_ms"] <= after
    await assert_absent(api, "k")
    assert (await api.get("/v1/state")).json() == []
    assert (await api.delete("/v1/state/k")).json() == {"deleted": False}


# ---- GET ------------------------------------------------------------------------------------


async def test_get_absent_key_is_404(api):
    assert_error(await api.get("/v1/state/nope"), 404, "not_found", message="key not found")


async def test_get_key_too_long_is_400(api):
    reply = await api.get("/v1/state/" + "k" * (MAX_KEY_LEN + 1))
    assert_error(reply, 400, "invalid_argument", "key", "key too long")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_batch_put_path_is_405_for_other_methods(api, method):
    reply = await api.request(method, "/v1/state/batch_put", json={"value": 1})
    assert_error(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == "OPTIONS, POST"  # as OPTIONS says, and as /v1/sql/query
    assert (await api.get("/v1/state")).json() == []


# ---- DELETE ---------------------------------------------------------------------------------


async def test_delete_live_key_then_absent(api):
    await put(api, "k", {"value": 1})
    deletes = await api.metric("state_delete_total")
    reply = await api.delete("/v1/state/k")
    assert reply.status_code == 200 and reply.json() == {"deleted": True}
    await assert_absent(api, "k")
    assert await api.metric("state_delete_total") == deletes + 1
    reply = await api.delete("/v1/state/k")
    assert reply.status_code == 200 and reply.json() == {"deleted": False}
    assert await api.metric("state_delete_total") == deletes + 1


async def test_delete_then_put_restarts_revision_at_1(api):
    await put(api, "k", {"value": 1})
    await put(api, "k", {"value": 2})
    await api.delete("/v1/state/k")
    assert (await put(api, "k", {"value": 3})).json()["revision"] == 1


async def test_delete_never_404s(api):
    assert (await api.delete("/v1/state/never")).json() == {"deleted": False}


async def test_delete_key_too_long_is_400(api):
    reply = await api.delete("/v1/state/" + "k" * (MAX_KEY_LEN + 1))
    assert_error(reply, 400, "invalid_argument", "key", "key too long")


async def test_delete_if_revision_matching_deletes(api):
    await put(api, "k", {"value": 1})
    await put(api, "k", {"value": 2})
    reply = await api.delete("/v1/state/k?if_revision=2")
    assert reply.status_code == 200 and reply.json() == {"deleted": True}
    await assert_absent(api, "k")


async def test_delete_if_revision_stale_is_409_and_deletes_nothing(api):
    await put(api, "k", {"value": 1})
    await put(api, "k", {"value": 2})
    reply = await api.delete("/v1/state/k?if_revision=1")
    assert_error(reply, 409, "revision_mismatch", "if_revision", "if_revision mismatch")
    await assert_item(api, "k", 2, 2)


async def test_delete_if_revision_on_absent_key_is_409(api):
    reply = await api.delete("/v1/state/never?if_revision=1")
    assert_error(reply, 409, "revision_mismatch", "if_revision", "if_revision mismatch")


@pytest.mark.parametrize("bad", ["x", "-1", "1.5", str(1 << 64)])
async def test_delete_if_revision_not_a_u64_is_400_naming_it(api, bad):
    await put(api, "k", {"value": 1})
    reply = await api.delete(f"/v1/state/k?if_revision={bad}")
    assert_error(reply, 400, "invalid_argument", "if_revision")
    await assert_item(api, "k", 1, 1)


# ---- GET /v1/state (list) -------------------------------------------------------------------


async def test_list_start_after_pages_in_key_byte_order(api):
    keys = ["B", "a", "ab", "b", "é", "z"]
    for key in keys:
        await put(api, key.replace("é", "%C3%A9"), {"value": key})
    seen, cursor = [], None
    while True:
        query = "limit=2" + (f"&start_after={cursor.replace('é', '%C3%A9')}" if cursor else "")
        page = [i["key"] for i in (await api.get(f"/v1/state?{query}")).json()]
        if not page:
            break
        seen += page
        cursor = page[-1]
    assert seen == ["B", "a", "ab", "b", "z", "é"]  # each key once, in UTF-8 byte order (é is 0xC3)


async def test_list_start_after_combines_with_prefix(api):
    for key in ["user:1", "user:2", "user:3", "vip:1"]:
        await put(api, key, {"value": 0})
    page = (await api.get("/v1/state?prefix=user:&start_after=user:1")).json()
    assert [i["key"] for i in page] == ["user:2", "user:3"]
    # A cursor before the prefix starts at the prefix; one past it finds nothing.
    assert [i["key"] for i in (await api.get("/v1/state?prefix=user:&start_after=a")).json()] == [
        "user:1", "user:2", "user:3"]
    assert (await api.get("/v1/state?prefix=user:&start_after=user:9")).json() == []
    assert (await api.get("/v1/state?start_after=")).json()[0]["key"] == "user:1"  # "" is before all


async def test_list_start_after_too_long_is_400(api):
    reply = await api.get("/v1/state?start_after=" + "k" * (MAX_KEY_LEN + 1))
    assert_error(reply, 400, "invalid_argument", "start_after", "start_after too long")



async def test_list_is_a_bare_array_ordered_by_key_bytes(api):
    for key in ["b", "a", "ab", "B", "é"]:
        await put(api, key.replace("é", "%C3%A9"), {"value": key})
    reply = await api.get("/v1/state")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    items = reply.json()
    assert [i["key"] for i in items] == ["B", "a", "ab", "b", "é"]
    assert all(list(i) == ["key", "value", "revision", "expires_at_ms", "mod_offset"] for i in items)
    assert items[1]["value"] == "a"


async def test_list_prefix_and_limit(api):
    for i in range(5):
        await put(api, f"user:{i}", {"value": i})
    await put(api, "order:1", {"value": 1})
    keys = [i["key"] for i in (await api.get("/v1/state?prefix=user:&limit=3")).json()]
    assert keys == ["user:0", "user:1", "user:2"]
    assert len((await api.get("/v1/state?prefix=user:")).json()) == 5
    assert (await api.get("/v1/state?prefix=zzz")).json() == []


async def test_list_limit_zero_is_empty(api):
    await put(api, "k", {"value": 1})
    reply = await api.get("/v1/state?limit=0")
    assert reply.status_code == 200 and reply.json() == []  # the original returned one (QUIRK)


async def test_list_default_limit_100_and_cap_1000(api):
    for start in range(0, 1100, 256):
        ops = [{"key": f"k{i:05d}", "value": i} for i in range(start, min(start + 256, 1100))]
        reply = await api.post("/v1/state/batch_put", json={"operations": ops})
        assert reply.status_code == 200
    assert len((await api.get("/v1/state")).json()) == 100
    assert len((await api.get("/v1/state?limit=5000")).json()) == 1000


async def test_list_skips_expired_keys(api):
    await put(api, "gone", {"value": 1, "ttl_ms": 0})
    await put(api, "live", {"value": 1, "ttl_ms": 60_000})
    assert [i["key"] for i in (await api.get("/v1/state")).json()] == ["live"]


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "", "%201", "1e3"])
async def test_list_bad_limit_is_400_naming_limit(api, bad):
    assert_error(await api.get(f"/v1/state?limit={bad}"), 400, "invalid_argument", field="limit")


async def test_list_limit_beyond_u64_is_400(api):
    assert_error(await api.get(f"/v1/state?limit={1 << 64}"), 400, field="limit")


async def test_list_prefix_too_long_is_400(api):
    reply = await api.get("/v1/state?prefix=" + "p" * (MAX_KEY_LEN + 1))
    assert_error(reply, 400, "invalid_argument", "prefix", "prefix too long")
    reply = await api.get("/v1/state?limit=0&prefix=" + "p" * (MAX_KEY_LEN + 1))
    assert_error(reply, 400, message="prefix too long")


# ---- POST /v1/state/batch_put ---------------------------------------------------------------


async def test_batch_put_results_in_input_order(api):
    await put(api, "b", {"value": "old"})
    ops = [
        {"key": "a", "value": 1},
        {"key": "b", "value": 2, "if_revision": 7},
        {"key": "c", "value": {"y": 1, "x": 2}, "ttl_ms": 60_000},
        {"key": "a", "value": 3, "if_revision": 1},
    ]
    reply = await api.post("/v1/state/batch_put", json={"operations": ops})
    assert reply.status_code == 200, reply.content
    results = reply.json()["results"]
    assert results[0] == {"status": "ok", "key": "a", "revision": 1, "expires_at_ms": None}
    assert results[1] == {
        "status": "error",
        "key": "b",
        "error": {
            "error": "revision_mismatch",
            "message": "if_revision mismatch",
            "field": "operations[1].if_revision",
        },
    }
    assert results[2]["status"] == "ok" and results[2]["expires_at_ms"] > 0
    assert list(results[2]) == ["status", "key", "revision", "expires_at_ms"]
    assert results[3] == {"status": "ok", "key": "a", "revision": 2, "expires_at_ms": None}
    await assert_item(api, "a", 3, 2)
    await assert_item(api, "b", "old", 1)
    await assert_item(api, "c", {"x": 2, "y": 1}, 1)


async def test_batch_put_inline_errors_for_length_and_size(make_api):
    async with make_api(max_json_bytes=16) as api:
        ops = [
            {"key": "k" * (MAX_KEY_LEN + 1), "value": 1},
            {"key": "big", "value": "x" * 50},
            {"key": "ok", "value": 1},
        ]
        results = (await api.post("/v1/state/batch_put", json={"operations": ops})).json()["results"]
        assert results[0]["status"] == "error"
        assert results[0]["error"]["error"] == "invalid_argument"
        assert results[0]["error"]["message"] == "key too long"
        assert results[0]["error"]["field"] == "operations[0].key"
        assert results[1]["error"]["error"] == "payload_too_large"
        assert results[1]["error"]["message"] == "value too large"
        assert results[1]["error"]["field"] == "operations[1].value"
        assert results[2]["status"] == "ok"
        await assert_absent(api, "big")
        assert [i["key"] for i in (await api.get("/v1/state")).json()] == ["ok"]


@pytest.mark.parametrize(
    "op, field",
    [
        ({"key": "x"}, "operations[1].value"),
        ({"key": "x", "value": 1, "ttl_ms": -1}, "operations[1].ttl_ms"),
        ({"key": "x", "value": 1, "ttl_ms": "5"}, "operations[1].ttl_ms"),
        ({"key": "x", "value": 1, "if_revision": 1.5}, "operations[1].if_revision"),
    ],
)
async def test_batch_put_per_op_shape_error_is_inline(api, op, field):
    ops = [{"key": "a", "value": 1}, op, {"key": "c", "value": 3}]
    reply = await api.post("/v1/state/batch_put", json={"operations": ops})
    assert reply.status_code == 200, reply.content
    results = reply.json()["results"]
    assert [r["status"] for r in results] == ["ok", "error", "ok"]
    assert results[1]["key"] == "x"
    assert results[1]["error"]["error"] == "invalid_argument"
    assert results[1]["error"]["field"] == field
    await assert_absent(api, "x")
    await assert_item(api, "c", 3, 1)


async def test_batch_put_empty_operations_is_400(api):
    reply = await api.post("/v1/state/batch_put", json={"operations": []})
    assert_error(reply, 400, "invalid_argument", "operations", "operations required")


async def test_batch_put_missing_operations_is_422(api):
    reply = await api.post("/v1/state/batch_put", json={"ops": [{"key": "a", "value": 1}]})
    assert_error(reply, 422, "invalid_argument", field="operations")
    await assert_absent(api, "a")


@pytest.mark.parametrize("bad", [None, {"key": "a"}, "a", 3])
async def test_batch_put_operations_not_a_list_is_422(api, bad):
    reply = await api.post("/v1/state/batch_put", json={"operations": bad})
    assert_error(reply, 422, "invalid_argument", field="operations")


async def test_batch_put_too_many_operations_is_400_and_writes_nothing(make_api):
    async with make_api(max_state_batch=2) as api:
        ops = [{"key": f"k{i}", "value": i} for i in range(3)]
        reply = await api.post("/v1/state/batch_put", json={"operations": ops})
        assert_error(reply, 400, "invalid_argument", "operations", "too many operations")
        assert (await api.get("/v1/state")).json() == []
        reply = await api.post("/v1/state/batch_put", json={"operations": ops[:2]})
        assert reply.status_code == 200


@pytest.mark.parametrize(
    "bad_op, field",
    [
        ("not an object", "operations[1]"),
        (None, "operations[1]"),
        ({"value": 1}, "operations[1].key"),
        ({"key": 5, "value": 1}, "operations[1].key"),
    ],
)
async def test_batch_put_op_without_string_key_fails_whole_request(api, bad_op, field):
    ops = [{"key": "first", "value": 1}, bad_op]
    reply = await api.post("/v1/state/batch_put", json={"operations": ops})
    assert_error(reply, 422, "invalid_argument", field=field)
    await assert_absent(api, "first")


async def test_batch_put_each_op_is_its_own_event(api):
    events = await api.metric("events_total")
    puts = await api.metric("state_put_total")
    ops = [{"key": f"k{i}", "value": i} for i in range(4)]
    await api.post("/v1/state/batch_put", json={"operations": ops})
    assert await api.metric("events_total") == events + 4
    assert await api.metric("state_put_total") == puts + 4

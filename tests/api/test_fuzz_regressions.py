"""Inputs found by fuzzing a running server (schemathesis + hand-written nasty inputs).

Each test is one input that once answered 500, a non-JSON body, or an error that did not name
the bad field; it now gets a 4xx JSON error naming the field, writes nothing, and the server
keeps serving (and, where the input used to poison the WAL, boots again on the same DATA_DIR).
"""

from __future__ import annotations

import pytest

from tests.api.conftest import open_api
from tests.helpers import assert_error

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
TTL_MS_MAX = (1 << 53) - 1  # documented maximum (JavaScript's Number.MAX_SAFE_INTEGER)


# ---- ttl_ms whose expiry does not fit a SQLite INTEGER --------------------------------------
# Found: PUT /v1/state/k {"value":1,"ttl_ms":18446744073709551615} passed the u64 shape check,
# was logged, and then state.sqlite refused `now + ttl_ms` (OverflowError): the KV actor died,
# its restart replayed the same event and died again, the server exited, and it could never
# boot on that DATA_DIR again.


@pytest.mark.parametrize("ttl_ms", [U64_MAX, I64_MAX, I64_MAX - 1000, TTL_MS_MAX + 1])
async def test_kv_put_ttl_past_the_integer_range_is_400_and_the_server_lives(tmp_path, ttl_ms):
    data = tmp_path / "data"
    async with open_api(data) as api:
        reply = await api.put("/v1/state/k", json={"value": 1, "ttl_ms": ttl_ms})
        assert_error(reply, 400, "invalid_argument", field="ttl_ms")
        assert_error(await api.get("/v1/state/k"), 404)
        assert (await api.put("/v1/state/k", json={"value": 2})).status_code == 200
    async with open_api(data) as api:  # boots again on the same data dir
        assert (await api.get("/v1/state/k")).json()["value"] == 2


async def test_kv_batch_ttl_past_the_integer_range_is_an_inline_error(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        ops = [{"key": "a", "value": 1, "ttl_ms": U64_MAX}, {"key": "b", "value": 2}]
        reply = await api.post("/v1/state/batch_put", json={"operations": ops})
        assert reply.status_code == 200, reply.content
        first, second = reply.json()["results"]
        assert first["status"] == "error" and first["error"]["field"] == "operations[0].ttl_ms"
        assert second["status"] == "ok"
    async with open_api(data) as api:
        assert [item["key"] for item in (await api.get("/v1/state")).json()] == ["b"]


async def test_doc_put_ttl_past_the_integer_range_is_400_and_the_server_lives(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        reply = await api.put(f"/v1/doc/c/d?ttl_ms={U64_MAX}", json={"v": 1})
        assert_error(reply, 400, "invalid_argument", field="ttl_ms")
        assert_error(await api.get("/v1/doc/c/d"), 404)
        assert (await api.put("/v1/doc/c/d", json={"v": 2})).status_code == 200
    async with open_api(data) as api:
        assert (await api.get("/v1/doc/c/d")).json()["doc"] == {"v": 2}


async def test_the_largest_accepted_ttl_round_trips(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        reply = await api.put("/v1/state/k", json={"value": 1, "ttl_ms": TTL_MS_MAX})
        assert reply.status_code == 200, reply.content
        expires = reply.json()["expires_at_ms"]
        reply = await api.put(f"/v1/doc/c/d?ttl_ms={TTL_MS_MAX}", json={"v": 1})
        assert reply.status_code == 200, reply.content
    async with open_api(data) as api:
        assert (await api.get("/v1/state/k")).json()["expires_at_ms"] == expires
        assert (await api.get("/v1/doc/c/d")).json()["doc"] == {"v": 1}

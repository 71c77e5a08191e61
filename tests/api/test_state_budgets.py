"""The KV routes (`/v1/state*`) at their largest legal inputs, against the worst legal stored data,
keep the event loop free and `/v1/health` answering (issue 9, "Budgets"; tests/loop_hold.py,
tests/kv_workload.py).

Stored: 1,000 keys of MAX_KEY_LEN bytes, each holding a value of exactly MAX_JSON_BYTES. Then, at
once: the largest list (limit 1000: every one of them, ~66 MB of JSON, which used to be encoded
in one call on the loop), the largest batch_put (MAX_STATE_BATCH objects of many keys, which
are sorted when stored, in a body of MAX_BODY_BYTES), a body of MAX_BODY_BYTES refused as a
value over MAX_JSON_BYTES, and single reads and writes of the largest value.
"""

from __future__ import annotations

import orjson
import trio

from tests.helpers import assert_error
from tests.kv_workload import DEFAULTS, STORED, key, largest_batch, largest_value, oversized_value_body, seed_batches
from tests.loop_hold import run_within_budget


async def seed(api) -> None:
    for body in seed_batches():
        reply = await api.post("/v1/state/batch_put", data=body, headers={"Content-Type": "application/json"})
        assert reply.status_code == 200, reply.content[:300]
        assert all(r["status"] == "ok" for r in reply.json()["results"])


async def test_kv_routes_largest_legal_requests_keep_the_loop_free(make_api):
    async with make_api() as api:
        with trio.fail_after(180):
            await seed(api)
            batch, oversized = largest_batch(), oversized_value_body()
            json_body = {"Content-Type": "application/json"}

            async def largest_requests() -> dict:
                replies: dict = {}

                async def listing() -> None:
                    replies["list"] = await api.pieces("GET", "/v1/state?limit=1000&prefix=budget/")

                async def writes() -> None:
                    replies["batch"] = await api.post("/v1/state/batch_put", data=batch, headers=json_body)
                    replies["oversized"] = await api.put("/v1/state/too-big", data=oversized, headers=json_body)
                    replies["put"] = await api.put(f"/v1/state/{key(0)}", json={"value": largest_value(0)})
                    replies["get"] = await api.get(f"/v1/state/{key(STORED - 1)}")

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(listing)
                    nursery.start_soon(writes)
                return replies

            replies = await run_within_budget(lambda: api.get("/v1/health", auth=False), largest_requests)

        reply, pieces = replies["list"]
        assert reply.status_code == 200
        items = orjson.loads(b"".join(pieces))
        assert [item["key"] for item in items] == [key(i) for i in range(STORED)]
        assert all(item["value"] == largest_value(i) for i, item in enumerate(items))
        assert len(b"".join(pieces)) > STORED * (DEFAULTS.max_json_bytes + DEFAULTS.max_key_len)
        results = replies["batch"].json()["results"]
        assert len(results) == DEFAULTS.max_state_batch and all(r["status"] == "ok" for r in results)
        assert_error(replies["oversized"], 413, "payload_too_large", field="value")
        assert (await api.get("/v1/state/too-big")).status_code == 404
        assert replies["put"].status_code == 200
        assert replies["get"].json()["value"] == largest_value(STORED - 1)

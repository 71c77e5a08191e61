"""The KV routes (`/v1/state*`) at their largest legal inputs, against the worst legal stored data,
keep the event loop free and `/v1/health` answering (issue 9, "Budgets"; tests/loop_hold.py).

Stored: 1,000 keys of MAX_KEY_LEN bytes, each holding a value of exactly MAX_JSON_BYTES. Then, at
once: the largest list (limit 1000: every one of them, ~66 MB of JSON, which used to be encoded
in one call on the loop), the largest batch_put (MAX_STATE_BATCH objects of many keys, which
are sorted when stored, in a body of MAX_BODY_BYTES), a body of MAX_BODY_BYTES refused as a
value over MAX_JSON_BYTES, and single reads and writes of the largest value.
"""

from __future__ import annotations

import orjson
import trio

from kissvdb.config import Settings
from tests.helpers import assert_error
from tests.loop_hold import run_within_budget

DEFAULTS = Settings()
STORED = 1000  # LIST_LIMIT_MAX: the most one list answers
PER_BATCH = 15  # values of MAX_JSON_BYTES per batch_put body of MAX_BODY_BYTES


def key(i: int) -> str:
    """A key of MAX_KEY_LEN bytes, in list order."""
    head = f"budget/{i:04d}/"
    return head + "k" * (DEFAULTS.max_key_len - len(head))


def largest_value(i: int) -> dict:
    """A value whose canonical JSON is exactly MAX_JSON_BYTES."""
    value = {"i": i, "pad": ""}
    value["pad"] = "p" * (DEFAULTS.max_json_bytes - len(orjson.dumps(value)))
    assert len(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)) == DEFAULTS.max_json_bytes
    return value


def largest_batch() -> bytes:
    """MAX_STATE_BATCH operations in a body of about MAX_BODY_BYTES, each value an object with
    as many keys as fit (reversed, so storing them sorts every one)."""
    per_op = DEFAULTS.max_body_bytes // DEFAULTS.max_state_batch - 64
    fields = per_op // len('"f0000":0,')
    value = {f"f{j:04d}": 0 for j in reversed(range(fields))}
    ops = [{"key": f"batch/{i:03d}", "value": value} for i in range(DEFAULTS.max_state_batch)]
    body = orjson.dumps({"operations": ops})
    assert DEFAULTS.max_body_bytes * 0.9 < len(body) <= DEFAULTS.max_body_bytes
    return body


def oversized_value_body() -> bytes:
    """MAX_BODY_BYTES of small numbers: parsed and made canonical, then refused (413 `value`)."""
    n = (DEFAULTS.max_body_bytes - len('{"value":[]}')) // 2
    body = b'{"value":[' + b",".join([b"0"] * n) + b"]}"
    assert len(body) <= DEFAULTS.max_body_bytes
    return body


async def seed(api) -> None:
    for start in range(0, STORED, PER_BATCH):
        ops = [{"key": key(i), "value": largest_value(i)} for i in range(start, min(start + PER_BATCH, STORED))]
        reply = await api.post("/v1/state/batch_put", json={"operations": ops})
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

"""The API-key routes (`/v1/auth/keys`) at their largest legal inputs, against the worst legal
stored data, keep the event loop free and `/v1/health` answering (issue 9, "Budgets";
tests/loop_hold.py).

Stored: MAX_API_KEYS keys (the bootstrap key and 999 more), each with a name of
KEY_NAME_BYTES_MAX control characters (JSON escapes each to six bytes) and permissions of
KEY_PERMISSIONS_BYTES_MAX. Then the list of all of them (~5.7 MB), the largest create refused
past the cap, and a delete. Names, permissions and the number of keys had no cap: one list
could be as large as every body ever sent to POST /v1/auth/keys.
"""

from __future__ import annotations

import orjson
import trio

from kissvdb.config import Settings
from kissvdb.keys.store import KEY_NAME_BYTES_MAX, KEY_PERMISSIONS_BYTES_MAX
from tests.helpers import assert_error
from tests.loop_hold import run_within_budget

DEFAULTS = Settings()


def largest_permissions() -> dict:
    permissions = {"allow": ""}
    permissions["allow"] = "p" * (KEY_PERMISSIONS_BYTES_MAX - len(orjson.dumps(permissions)))
    return permissions


def largest_name(i: int) -> str:
    head = f"{i:04d}"
    return head + "\x01" * (KEY_NAME_BYTES_MAX - len(head))


async def test_key_caps_are_refused_naming_the_field_and_nothing_is_stored(make_api):
    async with make_api(max_api_keys=3) as api:  # the bootstrap key is one of them
        listed = len((await api.get("/v1/auth/keys")).json())
        reply = await api.post("/v1/auth/keys", json={"name": "n" * (KEY_NAME_BYTES_MAX + 1)})
        assert_error(reply, 400, "invalid_argument", field="name")
        too_large = {"allow": "p" * KEY_PERMISSIONS_BYTES_MAX}
        reply = await api.post("/v1/auth/keys", json={"name": "p", "permissions": too_large})
        assert_error(reply, 413, "payload_too_large", field="permissions")
        assert len((await api.get("/v1/auth/keys")).json()) == listed == 1
        ids = []
        for name in ("a", "b"):
            reply = await api.post("/v1/auth/keys", json={"name": name, "permissions": largest_permissions()})
            assert reply.status_code == 200, reply.content
            ids.append(reply.json()["id"])
        body = assert_error(await api.post("/v1/auth/keys", json={"name": "c"}), 400, "invalid_argument")
        assert "MAX_API_KEYS" in body["message"]
        assert [k["name"] for k in (await api.get("/v1/auth/keys")).json()].count("c") == 0
        assert (await api.delete(f"/v1/auth/keys/{ids[0]}")).status_code == 204
        assert (await api.post("/v1/auth/keys", json={"name": "c"})).status_code == 200


async def test_key_routes_largest_legal_requests_keep_the_loop_free(make_api):
    async with make_api() as api:
        with trio.fail_after(180):
            permissions = largest_permissions()
            stored = len((await api.get("/v1/auth/keys")).json())

            async def create(start: int) -> None:
                for i in range(start, DEFAULTS.max_api_keys - stored, 4):
                    reply = await api.post("/v1/auth/keys", json={"name": largest_name(i), "role": "read",
                                                                  "permissions": permissions})
                    assert reply.status_code == 200, reply.content

            async with trio.open_nursery() as nursery:
                for start in range(4):
                    nursery.start_soon(create, start)

            async def largest_requests() -> dict:
                return {
                    "list": await api.pieces("GET", "/v1/auth/keys"),
                    "refused": await api.post("/v1/auth/keys", json={"name": largest_name(9999),
                                                                     "permissions": permissions}),
                }

            replies = await run_within_budget(lambda: api.get("/v1/health", auth=False), largest_requests)

        reply, pieces = replies["list"]
        assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
        keys = orjson.loads(b"".join(pieces))
        assert len(keys) == DEFAULTS.max_api_keys
        ours = sorted((k for k in keys if k["role"] == "read"), key=lambda k: k["name"])
        assert [k["name"] for k in ours] == [largest_name(i) for i in range(DEFAULTS.max_api_keys - stored)]
        assert all(k["permissions"] == permissions for k in ours)
        assert_error(replies["refused"], 400, "invalid_argument")
        assert (await api.delete(f"/v1/auth/keys/{ours[0]['id']}")).status_code == 204
        assert len((await api.get("/v1/auth/keys")).json()) == DEFAULTS.max_api_keys - 1

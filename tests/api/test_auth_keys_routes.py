"""`/v1/auth/keys` (contract §3.2) and role enforcement on every route.

Keys are stored hashed in DATA_DIR/keys.sqlite, never in the user SQL database and never as WAL
events (so never on the change stream). Roles: admin > write (= the original's `user`) > read.
"""

from __future__ import annotations

import re
import stat
import uuid

import pytest

from tests.api.conftest import open_api
from tests.helpers import assert_error

KEY_RE = re.compile(r"rk_live_[A-Za-z0-9_-]{43}")
LEVEL = {"read": 1, "write": 2, "user": 2, "admin": 3}


async def create(api, **body) -> dict:
    reply = await api.post("/v1/auth/keys", json=body)
    assert reply.status_code == 200, reply.content
    return reply.json()


def as_key(key: str) -> dict:
    return {"headers": {"Authorization": f"Bearer {key}"}, "auth": False}


async def test_create_list_delete(api):
    listed = (await api.get("/v1/auth/keys")).json()
    assert [k["name"] for k in listed] == ["Admin"]  # the bootstrap key; the static key is not listed
    assert listed[0]["role"] == "admin" and listed[0]["permissions"] == {"allow": "*"}

    made = await create(api, name="ci", role="read", permissions={"cols": ["a"]})
    assert list(made) == ["id", "key"]
    assert KEY_RE.fullmatch(made["key"]), made
    assert str(uuid.UUID(made["id"])) == made["id"]
    default = await create(api, name="svc")

    listed = (await api.get("/v1/auth/keys")).json()
    by_name = {k["name"]: k for k in listed}
    assert by_name["svc"]["role"] == "user" and by_name["svc"]["permissions"] == {}
    assert by_name["ci"]["permissions"] == {"cols": ["a"]}
    assert list(by_name["ci"]) == ["id", "name", "role", "permissions", "created_at_ms"]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    times = [k["created_at_ms"] for k in listed]
    assert times == sorted(times, reverse=True)  # newest first

    reply = await api.delete(f"/v1/auth/keys/{default['id']}")
    assert (reply.status_code, reply.content) == (204, b"")
    assert_error(await api.delete(f"/v1/auth/keys/{default['id']}"), 404, "not_found", message="key id not found")
    assert "svc" not in {k["name"] for k in (await api.get("/v1/auth/keys")).json()}


async def test_a_new_key_works_and_revocation_is_immediate(api):
    made = await create(api, name="w", role="write")
    assert (await api.put("/v1/state/k", json={"value": 1}, **as_key(made["key"]))).status_code == 200
    assert (await api.delete(f"/v1/auth/keys/{made['id']}")).status_code == 204
    reply = await api.get("/v1/state/k", **as_key(made["key"]))
    assert_error(reply, 401, "unauthorized", message="invalid api key")


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({}, 422, "name"),
        ({"name": 5}, 422, "name"),
        ({"name": "x", "role": 5}, 422, "role"),
        ({"name": "x", "role": "superuser"}, 400, "role"),
    ],
)
async def test_create_errors_write_nothing(api, body, status, field):
    assert_error(await api.post("/v1/auth/keys", json=body), status, field=field)
    assert len((await api.get("/v1/auth/keys")).json()) == 1


async def test_keys_are_not_events_and_not_in_user_sql(api):
    before = api.engine.durable_offset
    made = await create(api, name="x", role="read")
    await api.delete(f"/v1/auth/keys/{made['id']}")
    assert api.engine.durable_offset == before
    tables = (await api.post("/v1/sql/query", json={"sql": "SELECT name FROM sqlite_master"})).json()["rows"]
    assert tables == []


async def test_keys_survive_restart_and_bootstrap_happens_once(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        made = await create(api, name="keep", role="read")
        first = {k["id"] for k in (await api.get("/v1/auth/keys")).json()}
    async with open_api(data) as api:
        assert {k["id"] for k in (await api.get("/v1/auth/keys")).json()} == first
        assert (await api.get("/v1/state", **as_key(made["key"]))).status_code == 200


async def test_bootstrap_key_goes_to_a_private_file_never_the_log(tmp_path, caplog):
    """Regression: the bootstrap admin key was printed in the log on every fresh data dir."""
    data = tmp_path / "data"
    caplog.set_level("DEBUG")
    async with open_api(data) as api:
        key_file = data / "bootstrap-admin.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert KEY_RE.fullmatch(key)
        assert (await api.get("/v1/auth/keys", **as_key(key))).status_code == 200
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert key not in logged
        assert str(key_file) in logged
    caplog.clear()
    key_file.unlink()  # as the log line asks, once the key is stored elsewhere
    async with open_api(data) as api:
        assert not [r for r in caplog.records if "bootstrap admin API key" in r.getMessage()]
        assert not key_file.exists()
        assert (await api.get("/v1/auth/keys", **as_key(key))).status_code == 200


async def test_key_routes_work_without_sqlite(make_api):
    async with make_api(sqlite_enabled=False) as api:
        made = await create(api, name="x", role="read")
        assert (await api.get("/v1/state", **as_key(made["key"]))).status_code == 200


async def test_static_key_stays_admin(api):
    assert (await api.get("/v1/auth/keys")).status_code == 200


# ---- roles (every route x every role: tests/api/test_route_roles.py) --------------------------


async def test_declared_roles_match_the_issue(api):
    table = {(r.method, r.path): r.role for r in api.app.routes}
    assert table[("POST", "/v1/doc/{collection}/find")] == "read"
    assert table[("POST", "/v1/sql/query")] == "read"
    assert table[("GET", "/v1/stream")] == "read"
    assert table[("GET", "/v1/doc/{collection}/{id:path}")] == "read"
    assert table[("PUT", "/v1/doc/{collection}/{id:path}")] == "write"
    assert table[("POST", "/v1/doc/{collection}/_index")] == "write"
    assert table[("POST", "/v1/sql/exec")] == "write"
    assert table[("POST", "/v1/state/batch_put")] == "write"
    assert table[("POST", "/v1/vector/{collection}/search")] == "read"
    assert table[("POST", "/v1/vector/{collection}/search_batch")] == "read"
    for method in ("GET", "POST"):
        assert table[(method, "/v1/auth/keys")] == "admin"
    assert table[("DELETE", "/v1/auth/keys/{id}")] == "admin"
    assert table[("GET", "/v1/auth/whoami")] == "read"
    assert table[("GET", "/v1/doc")] == "read"


async def test_whoami_names_the_presented_key_and_its_role(api):
    assert (await api.get("/v1/auth/whoami")).json() == {"name": "static", "role": "admin", "key_id": None}
    for role in ("read", "write", "user", "admin"):
        made = await create(api, name=f"{role} key", role=role)
        reply = await api.get("/v1/auth/whoami", **as_key(made["key"]))
        assert reply.status_code == 200
        assert reply.headers["cache-control"] == "no-store"
        assert reply.json() == {"name": f"{role} key", "role": role, "key_id": made["id"]}
    assert_error(await api.get("/v1/auth/whoami", auth=False), 401, "unauthorized")
    assert_error(await api.get("/v1/auth/whoami", **as_key("rk_live_nope")), 401, "unauthorized", message="invalid api key")


async def test_read_role_on_data_routes_writes_nothing(api):
    key = (await create(api, name="r", role="read"))["key"]
    before = api.engine.durable_offset
    assert_error(await api.put("/v1/doc/c/d", json={"a": 1}, **as_key(key)), 403, "forbidden")
    assert_error(await api.post("/v1/sql/exec", json={"sql": "CREATE TABLE t(x)"}, **as_key(key)), 403)
    assert_error(await api.put("/v1/state/k", json={"value": 1}, **as_key(key)), 403)
    assert api.engine.durable_offset == before
    assert (await api.post("/v1/doc/c/find", json={}, **as_key(key))).status_code == 200
    assert (await api.post("/v1/sql/query", json={"sql": "SELECT 1"}, **as_key(key))).status_code == 200

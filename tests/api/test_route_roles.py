"""Every route x every kind of caller, generated from the route table (never a hand list).

For each route the app serves (bench routes included), with no key, a wrong key, a revoked key,
and read, write and admin keys: a public route answers without a credential; any other route
answers 401 without a valid one, 403 below its declared role, and is served at or above it.
Nothing refused writes anything. A non-public handler never runs without a principal, and a
route cannot be declared without a role.
"""

from __future__ import annotations

import re

import pytest

from kissvdb.api.routing import ROLES, Route, Router
from tests.api.conftest import open_api
from tests.helpers import assert_error

LEVEL = {"read": 1, "write": 2, "admin": 3}
# A value for each path parameter: a path the router sends to the route (not to a static one).
PARAMS = {"collection": "c", "id": "nope", "key": "k", "file": "app.js"}
STREAM_ROUTES = ("/v1/stream", "/v1/events")


def concrete(route: Route) -> str:
    return re.sub(r"\{([^:{}]+)(?::[a-z]+)?\}", lambda m: PARAMS[m.group(1)], route.path)


def request_for(route: Route) -> tuple[str, str]:
    # A stream never ends; HEAD on it goes through every check and subscribes nothing.
    method = "HEAD" if route.path in STREAM_ROUTES else route.method
    return method, concrete(route)


async def keys_by_role(api) -> dict[str, str]:
    keys = {}
    for role in ("read", "write", "admin"):
        reply = await api.post("/v1/auth/keys", json={"name": role, "role": role})
        keys[role] = reply.json()["key"]
    return keys


async def revoked_key(api) -> str:
    made = (await api.post("/v1/auth/keys", json={"name": "gone", "role": "admin"})).json()
    assert (await api.delete(f"/v1/auth/keys/{made['id']}")).status_code == 204
    return made["key"]


def assert_refused(reply, method: str, status: int, code: str, message: str | None = None) -> None:
    if method == "HEAD":  # no body to read the error from
        assert reply.status_code == status, (reply.status_code, status)
    else:
        assert_error(reply, status, code, message=message)


def bearer(key: str) -> dict:
    return {"headers": {"Authorization": f"Bearer {key}"}, "auth": False}


@pytest.fixture
async def bench_api(tmp_path):
    async with open_api(tmp_path / "data", bench_routes=True) as api:
        yield api


def test_a_route_cannot_be_declared_without_a_role():
    async def handler(request):
        raise AssertionError

    with pytest.raises(TypeError):
        Route("GET", "/x", handler, name="x")  # type: ignore[call-arg]
    for role in ("", "user", "owner", None):
        with pytest.raises(ValueError):
            Route("GET", "/x", handler, role, "x")  # type: ignore[arg-type]
    assert set(ROLES) == {"public", "read", "write", "admin"}


async def test_every_route_answers_each_caller_per_its_role(bench_api):
    api = bench_api
    routes = api.app.routes
    assert len(routes) >= 40 and {r.role for r in routes} == set(ROLES)
    keys = await keys_by_role(api)
    revoked = await revoked_key(api)
    for route in routes:
        method, path = request_for(route)
        where = f"{route.name}: {method} {path}"
        before = api.engine.durable_offset
        # No credential, a wrong one, a revoked one.
        for kw, message in (({"auth": False}, "missing authorization header"),
                            (bearer("not-a-key"), "invalid api key"),
                            (bearer(revoked), "invalid api key")):
            reply = await api.request(method, path, json={}, **kw)
            if route.public:
                assert reply.status_code == 200, where
            else:
                assert_refused(reply, method, 401, "unauthorized", message)
        assert api.engine.durable_offset == before, f"{where}: a refused request wrote"
        # Each role.
        for role, key in keys.items():
            reply = await api.request(method, path, json={}, **bearer(key))
            if route.public or LEVEL[role] >= LEVEL[route.role]:
                assert reply.status_code not in (401, 403), (where, role, reply.content)
            else:
                assert_refused(reply, method, 403, "forbidden")
                if method != "HEAD":
                    assert f"needs `{route.role}`" in reply.json()["message"], where


async def test_no_protected_handler_runs_without_a_principal(bench_api):
    api = bench_api
    seen: list[tuple[str, object]] = []

    def spy(route: Route) -> Route:
        async def handler(request, **params):
            seen.append((route.name, request.principal))
            return await route.handler(request, **params)

        return Route(route.method, route.path, handler, route.role, route.name, route.exclude, route.query_key)

    api.app.router = Router([spy(r) for r in api.app.routes])
    for route in api.app.routes:
        method, path = request_for(route)
        await api.request(method, path, json={}, auth=False)
        await api.request(method, path + "?api_key=" + "test-key-0123", json={}, auth=False)
    ran = {name for name, _ in seen}
    assert ran, "no handler ran at all"
    protected = {r.name for r in api.app.routes if not r.public}
    for name, principal in seen:
        if name in protected:
            # Only the stream routes take ?api_key=, and then they have a principal.
            assert principal is not None, name
    assert ran & protected <= {"stream", "events_legacy"}


@pytest.mark.parametrize("method, path", [
    ("PUT", "/v1/state/xopenapi.yaml"),
    ("PUT", "/v1/doc/users/adminopenapi.yaml"),
    ("POST", "/v1/vector/x.openapi.yaml"),
    ("GET", "/v1/vector/x.openapi.yaml"),
    ("DELETE", "/v1/vector/x.openapi.yaml"),
    ("DELETE", "/v1/auth/keys/openapi.yaml"),
    ("PUT", "/v1/state/docs"),
    ("PUT", "/v1/doc/docs/openapi.yaml"),
    ("GET", "/docs/../v1/state"),
    ("GET", "/docsx"),
    ("GET", "/assets/../v1/metrics"),
])
async def test_a_path_that_looks_public_is_not(api, method, path):
    """Regression: any path ending in `openapi.yaml` (or starting with /docs) used to skip auth,
    so a stranger could write (`PUT /v1/state/xopenapi.yaml` answered 200)."""
    before = api.engine.durable_offset
    body = {"value": 1} if path.startswith("/v1/state") else {"dim": 3, "metric": "cosine"}
    assert_error(await api.request(method, path, json=body, auth=False), 401, "unauthorized")
    assert api.engine.durable_offset == before
    assert_error(await api.get("/v1/state/xopenapi.yaml"), 404)
    assert_error(await api.get("/v1/vector/x.openapi.yaml"), 404)

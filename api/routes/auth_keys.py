"""API-key management, `/v1/auth/keys` (contract §3.2), admin role only; and who-am-I.

| route                      | answer                                                        |
|----------------------------|---------------------------------------------------------------|
| GET    /v1/auth/keys       | JSON array of {id, name, role, permissions, created_at_ms}, newest first |
| POST   /v1/auth/keys       | {"id", "key"}: the plain key, shown only here                 |
| DELETE /v1/auth/keys/<id>  | 204 empty; unknown id -> 404 "key id not found"               |
| GET    /v1/auth/whoami     | {"name", "role", "key_id"} of the presented key (any role)    |

POST body: `{"name": string (required), "role": "admin"|"write"|"user"|"read" ["user"],
"permissions": any JSON [{}]}`. Unlike the original, the role is enforced (so an unknown role
is refused with 400) and keys live in our own store (DATA_DIR/keys.sqlite, hashed), not in the
user's SQL database, so these routes work whether or not SQLITE_ENABLED is on (the original
answered 501 "auth store not enabled" without SQLite). The static API_KEY is an admin key that
is not listed and cannot be deleted here. Caps (kissvdb/keys/store.py, MAX_API_KEYS), so the list
stays a few MB: a name of at most 256 bytes (400 `name`), permissions of at most 4 KiB of JSON
(413 `permissions`), at most MAX_API_KEYS stored keys (400).
"""

from __future__ import annotations

import orjson

from kissvdb.errors import UnprocessableEntity

from ..codec import JSON, canonical_json, read_json_object, require_str
from ..http.messages import Response
from ..pieces import json_array_body
from ..routing import Route

# A key list or a freshly minted key must not linger in a browser or proxy cache.
NO_STORE = ("Cache-Control", "no-store")


def _private_json(body: bytes | list[bytes]) -> Response:
    return Response(body, 200, [("Content-Type", JSON), NO_STORE])


_dumps = orjson.dumps
KEY_JSON_BYTES = 128  # a listed key's JSON beside its name and permissions


def _key_json(k) -> dict:
    return {"id": k.id, "name": k.name, "role": k.role, "permissions": orjson.Fragment(k.permissions),
            "created_at_ms": k.created_at_ms}


def _key_weight(k) -> int:
    return len(k.name) + len(k.permissions) + KEY_JSON_BYTES


def routes(app) -> list[Route]:
    engine = app.engine

    async def auth_keys_list(request):
        keys = await engine.auth_key_list()
        # MAX_API_KEYS keys (older data directories may hold more): in pieces when large.
        return _private_json(await json_array_body(keys, _key_json, _key_weight))

    async def auth_keys_create(request):
        body = await read_json_object(request)
        name = require_str(body, "name")
        role = body.get("role")
        if role is None:
            role = "user"
        elif type(role) is not str:
            raise UnprocessableEntity("`role` must be a string", field="role")
        permissions = body.get("permissions")
        permissions = canonical_json({} if permissions is None else permissions, "permissions")
        item, key = await engine.auth_key_create(name, role, bytes(permissions))
        return _private_json(_dumps({"id": item.id, "key": key}))

    async def auth_keys_delete(request, id: str):
        await engine.auth_key_delete(id)
        return Response(b"", 204)

    async def auth_whoami(request):
        # What the dashboard needs to hide the controls a key may not use. The static key is
        # an admin with no id (it is not stored); a stored key's role is as created.
        p = request.principal
        return _private_json(_dumps({"name": p.name, "role": p.role, "key_id": p.key_id}))

    return [
        Route("GET", "/v1/auth/whoami", auth_whoami, "read", "auth_whoami"),
        Route("GET", "/v1/auth/keys", auth_keys_list, "admin", "auth_keys_list"),
        Route("POST", "/v1/auth/keys", auth_keys_create, "admin", "auth_keys_create"),
        Route("DELETE", "/v1/auth/keys/{id}", auth_keys_delete, "admin", "auth_keys_delete"),
    ]

"""Who is calling: where the credential is read from, how it is checked, and what a role may do.

Owns the contract's §1.2 rules, with public-ness moved onto the route (routing.Route.role):
- A public route needs nothing. Which routes are public is decided by the route table, never by
  a pattern of the path (a suffix rule once let `PUT /v1/state/xopenapi.yaml` write unauthenticated).
- The credential is read from the first source present, with no fallback when it is wrong:
  `Authorization: Bearer <key>` (exact, case-sensitive prefix; rest trimmed; any other scheme
  is 401 "invalid authorization header format"), then `x-api-key`, then `?api_key=` — the last
  only on the routes that allow it (the GET stream routes: EventSource cannot set headers).
  None present -> 401 "missing authorization header"; not accepted -> 401 "invalid api key".
- `authorize` refuses a missing principal (401) and a role too weak for the route (403).

Checking a token is a `KeyChecker`'s single method. `StaticKeyChecker` compares against the
configured key with `hmac.compare_digest`; `StoredKeyChecker` adds the stored API keys with roles.
Never does: routing, CORS or anything with the body.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from kissvdb.errors import Forbidden, Unauthorized

BEARER = "Bearer "


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid credential belongs to, and its role (enforced by `authorize`)."""

    name: str
    role: str
    key_id: str | None = None  # the stored key's id; None for the static API_KEY


ADMIN = Principal("static", "admin")


class KeyChecker(Protocol):
    def check(self, token: str) -> Principal | None:
        """The principal `token` authenticates, or None if it is not an accepted key."""
        ...


class StaticKeyChecker:
    """Accepts exactly the configured key (API_KEY / RUSTKISS_API_KEY), in constant time."""

    __slots__ = ("_key",)

    def __init__(self, api_key: str):
        self._key = api_key.encode()

    def check(self, token: str) -> Principal | None:
        if hmac.compare_digest(token.encode(), self._key):
            return ADMIN
        return None


class StoredKeyChecker:
    """The static key (admin, as before) or a stored API key, with its role (issue 4).

    Stored keys are looked up by SHA-256 in the key actor's in-memory map (actors/auth_keys.py),
    which is updated only after a change is durable, so a revoked key fails on the next request.
    """

    __slots__ = ("_static", "_keys")

    def __init__(self, api_key: str, keys):
        self._static = StaticKeyChecker(api_key)
        self._keys = keys

    def check(self, token: str) -> Principal | None:
        principal = self._static.check(token)
        if principal is not None:
            return principal
        found = self._keys.lookup(token)
        if found is None:
            return None
        key_id, name, role = found
        return Principal(name, role, key_id)


# Roles, weakest first. `user` (the original's default role) means write.
ROLE_LEVEL = {"read": 1, "write": 2, "user": 2, "admin": 3}


def authorize(principal: Principal | None, route) -> None:
    """Raise unless `principal` may call `route`: 401 without a principal, 403 when its role is
    weaker than the route's. A public route needs nothing."""
    need = route.role
    if need == "public":
        return
    if principal is None:
        raise Unauthorized("missing authorization header")
    if ROLE_LEVEL.get(principal.role, 0) < ROLE_LEVEL[need]:
        raise Forbidden(f"api key role `{principal.role}` may not use this route (needs `{need}`)")


def credential(request, query_key: bool) -> str:
    """The token the request presents, from the first source present. Raises Unauthorized.

    `query_key`: whether `?api_key=` is accepted (only the routes that allow it)."""
    headers = request.headers
    authorization = headers.get("Authorization")
    if authorization is not None:
        if not authorization.startswith(BEARER):
            raise Unauthorized("invalid authorization header format")
        return authorization[len(BEARER):].strip()
    api_key = headers.get("X-Api-Key")
    if api_key is not None:
        return api_key
    # Only now parse the query string: most clients send a header.
    if query_key and request.query_string:
        api_key = request.args.get("api_key")
        if api_key is not None:
            return api_key
    raise Unauthorized("missing authorization header")


def authenticate(request, checker: KeyChecker, query_key: bool = False) -> Principal:
    """The caller's principal. Raises Unauthorized (401)."""
    principal = checker.check(credential(request, query_key))
    if principal is None:
        raise Unauthorized("invalid api key")
    return principal

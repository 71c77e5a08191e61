"""Who may call the API: public paths, where the credential is read from, and how it is checked.

Owns the contract's §1.2 rules:
- Public paths need nothing: `/`, `/index.html`, `/assets/*`, `/v1/health`, `/docs*`, and
  anything ending in `openapi.yaml`.
- The credential is read from the first source present, with no fallback when it is wrong:
  `Authorization: Bearer <key>` (exact, case-sensitive prefix; rest trimmed; any other scheme
  is 401 "invalid authorization header format"), then `x-api-key`, then `?api_key=`.
  None present -> 401 "missing authorization header"; not accepted -> 401 "invalid api key".
- Auth runs before routing, so an unauthenticated request to an unknown path gets 401.

Checking a token is a `KeyChecker`'s single method. `StaticKeyChecker` compares against the
configured key with `hmac.compare_digest`; a stored-keys checker (API keys with roles, a later
issue) slots in beside it by implementing the same method.
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
        _id, name, role = found
        return Principal(name, role)


# Roles, weakest first. `user` (the original's default role) means write.
ROLE_LEVEL = {"read": 1, "write": 2, "user": 2, "admin": 3}
READ_METHODS = frozenset({"GET", "HEAD"})


def required_role(method: str, endpoint: str, endpoint_roles: dict[str, str]) -> str:
    """The weakest role a route needs: its entry in `endpoint_roles` (routes register read-only
    POSTs such as find and sql/query as "read", key management as "admin"), else "read" for
    GET/HEAD and "write" for everything else."""
    role = endpoint_roles.get(endpoint)
    if role is not None:
        return role
    return "read" if method in READ_METHODS else "write"


def authorize(principal: Principal | None, method: str, endpoint: str, endpoint_roles: dict[str, str]) -> None:
    """Raise Forbidden (403) if `principal`'s role is too weak for the route. Public: no check."""
    if principal is None:
        return
    need = required_role(method, endpoint, endpoint_roles)
    if ROLE_LEVEL.get(principal.role, 0) < ROLE_LEVEL[need]:
        raise Forbidden(f"api key role `{principal.role}` may not use this route (needs `{need}`)")


def is_public(path: str) -> bool:
    """Paths served without a credential (contract §1.2)."""
    return (
        path == "/v1/health"
        or path == "/"
        or path == "/index.html"
        or path.startswith("/docs")
        or path.startswith("/assets/")
        or path.endswith("openapi.yaml")
    )


def credential(request) -> str:
    """The token the request presents, from the first source present. Raises Unauthorized."""
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
    if request.query_string:
        api_key = request.args.get("api_key")
        if api_key is not None:
            return api_key
    raise Unauthorized("missing authorization header")


def authenticate(request, checker: KeyChecker) -> Principal | None:
    """The caller's principal; None for a public path. Raises Unauthorized (401)."""
    if is_public(request.path):
        return None
    principal = checker.check(credential(request))
    if principal is None:
        raise Unauthorized("invalid api key")
    return principal

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

from kissvdb.errors import Unauthorized

BEARER = "Bearer "


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid credential belongs to. Roles are carried, not yet enforced (as the original)."""

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

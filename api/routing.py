"""The route table: every route's method, path, handler and role, and matching a request to one.

What this module owns: `Route` (one method on one path template, with the role it needs: public
is an attribute of the route, never a pattern of the path) and `Router`, which answers "which
route serves METHOD PATH" or says why none does (404, or 405 with the Allow list).

Path templates are OpenAPI-style, so docs/openapi.yaml and the table compare directly:
- `{name}` matches one segment: one or more characters, none of them `/`;
- `{name:path}` matches the rest of the path, `/` and newlines included, at least one character,
  except the static segments the route lists in `exclude` (other routes own them, so
  `/v1/state/batch_put` is only the POST route, and its 405 lists the same methods as OPTIONS).
Matching runs on the percent-decoded path, as before the table existed, so `%2F` inside a
`{name:path}` parameter is a `/` of the value, and inside a `{name}` it ends the segment.
Leading slashes collapse into one (`//v1/health` is `/v1/health`); later ones are data
(`/v1/state//x` is the key `/x`). tests/api/test_routing_equivalence.py holds both routers to
these rules, path by path.

Guarantees: HEAD is served by a GET route (the body is dropped by the app); OPTIONS is answered
for every path that has a route; the Allow list is the union of the methods of every template the
path matches, plus HEAD (with GET) and OPTIONS. Never does: auth, bodies, or I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from kissvdb.errors import NotFound

from .errors import method_not_allowed

ROLES = ("public", "read", "write", "admin")
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")

Handler = Callable[..., Awaitable[object]]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one path template.

    `role` is required (no default), so a route added without deciding who may call it cannot be
    built: "public" (no credential at all), "read", "write" or "admin". `query_key` allows the
    credential in `?api_key=` (EventSource cannot set headers); every other route refuses it, so
    a cross-site page cannot send the well-known key in a "simple" request that needs no preflight.
    """

    method: str
    path: str
    handler: Handler
    role: str
    name: str
    exclude: tuple[str, ...] = ()
    query_key: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"route {self.name}: unknown method {self.method!r}")
        if self.role not in ROLES:
            raise ValueError(f"route {self.name}: role must be one of {ROLES}, not {self.role!r}")
        if self.query_key and (self.method != "GET" or self.role == "public"):
            raise ValueError(f"route {self.name}: ?api_key= is only for GET routes that need a key")

    @property
    def public(self) -> bool:
        return self.role == "public"


@dataclass(slots=True)
class _Template:
    """Every route on one path template, by method."""

    path: str
    regex: re.Pattern | None  # None: a static path, looked up in a dict
    methods: dict[str, Route] = field(default_factory=dict)

    def allow(self) -> set[str]:
        allowed = set(self.methods) | {"OPTIONS"}
        if "GET" in allowed:
            allowed.add("HEAD")
        return allowed


def _compile(path: str, exclude: tuple[str, ...]) -> re.Pattern | None:
    if "{" not in path:
        return None
    out, pos = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[pos:m.start()]))
        name, kind = m.group(1), m.group(2)
        if kind == "path":
            not_static = f"(?!(?:{'|'.join(map(re.escape, exclude))})\\Z)" if exclude else ""
            out.append(f"(?P<{name}>{not_static}[\\s\\S]+)")
        else:
            out.append(f"(?P<{name}>[^/]+)")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out))


def _literal_prefix(path: str) -> str:
    return path.split("{", 1)[0]


class Router:
    """Matches (method, decoded path) to a route and its parameters."""

    def __init__(self, routes: list[Route]):
        self.routes: tuple[Route, ...] = tuple(routes)
        self._static: dict[str, _Template] = {}
        # Templates with parameters, bucketed by their literal prefix (e.g. "/v1/state/"), so a
        # request only tries the few templates that can match.
        self._dynamic: list[tuple[str, list[_Template]]] = []
        templates: dict[str, _Template] = {}
        names: set[str] = set()
        for route in routes:
            if route.name in names:
                raise ValueError(f"two routes are named {route.name!r}")
            names.add(route.name)
            template = templates.get(route.path)
            if template is None:
                template = templates[route.path] = _Template(route.path, _compile(route.path, route.exclude))
                if template.regex is None:
                    self._static[route.path] = template
                else:
                    self._bucket(_literal_prefix(route.path)).append(template)
            if route.method in template.methods:
                raise ValueError(f"{route.method} {route.path} is routed twice")
            template.methods[route.method] = route
        # Longest prefixes first: a path is tried against the most specific buckets.
        self._dynamic.sort(key=lambda item: -len(item[0]))

    def _bucket(self, prefix: str) -> list[_Template]:
        for known, templates in self._dynamic:
            if known == prefix:
                return templates
        templates: list[_Template] = []
        self._dynamic.append((prefix, templates))
        return templates

    def _templates(self, path: str) -> list[tuple[_Template, dict[str, str]]]:
        static = self._static.get(path)
        found = [(static, {})] if static is not None else []
        for prefix, templates in self._dynamic:
            if path.startswith(prefix):
                for template in templates:
                    m = template.regex.fullmatch(path)  # type: ignore[union-attr]
                    if m is not None:
                        found.append((template, m.groupdict()))
        return found

    def match(self, method: str, path: str) -> "Match":
        """The route for `method` on `path`, or why there is none. Raises NotFound when no
        template matches the path at all (the app answers that after authentication)."""
        if path.startswith("//"):
            path = "/" + path.lstrip("/")  # leading slashes collapse, as werkzeug did; inner ones are data
        found = self._templates(path)
        if not found:
            raise NotFound("route not found")
        lookup = "GET" if method == "HEAD" else method
        allowed: set[str] = set()
        public = True
        for template, params in found:
            route = template.methods.get(lookup)
            if route is not None and method != "OPTIONS":
                return Match(route, params, allowed, route.public)
            allowed |= template.allow()
            public = public and all(r.public for r in template.methods.values())
        return Match(None, found[0][1], allowed, public)


@dataclass(frozen=True, slots=True)
class Match:
    """What the router found: the route (None for OPTIONS, or when the method is not routed on
    this path: a 405 with `allowed`), its decoded parameters, and whether the path is public."""

    route: Route | None
    params: dict[str, str]
    allowed: set[str]
    public: bool

    def method_not_allowed(self):
        return method_not_allowed(sorted(self.allowed))

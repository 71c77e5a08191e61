"""The route table's router against the werkzeug map kissvdb routed with before it (table-driven).

`werkzeug_router` rebuilds the old routing from the same route table, exactly as the old
Quart app configured it: `<name:key>`-style converters that match `/` and newlines for the
`{name:path}` parameters, minus the static segments other routes own; werkzeug's automatic
HEAD and OPTIONS; `merge_slashes` off. Both routers then see the same percent-decoded paths
(`%2F`, `%0A`, `%FF`, `//`, trailing slashes, static segments) and must agree on the route, its
parameters, and every 404 and 405 Allow list.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from werkzeug.exceptions import MethodNotAllowed as WzMethodNotAllowed
from werkzeug.exceptions import NotFound as WzNotFound
from werkzeug.routing import BaseConverter, Map, Rule

from kissvdb.api.app import create_app
from kissvdb.config import Settings
from kissvdb.errors import MethodNotAllowed, NotFound

PATHS = [
    "/", "/index.html", "/docs", "/docs/", "/openapi.yaml", "/docs/openapi.yaml", "/v1/health",
    "/v1/health/", "/v1/metrics", "/v1/state", "/v1/state/", "/v1/state/k", "/v1/state/k/",
    "/v1/state/a%2Fb", "/v1/state/%2Fa%2F", "/v1/state//x", "/v1/state/a%0Ab", "/v1/state/%FF",
    "/v1/state/%C3%A9", "/v1/state/batch_put", "/v1/state/batch_put/x", "/v1/state/batch_putx",
    "/v1/stream", "/v1/events", "/v1/doc/c/d", "/v1/doc/c/find", "/v1/doc/c/_index",
    "/v1/doc/c/find/x", "/v1/doc/c/a%2Fb", "/v1/doc/a%2Fb/x", "/v1/doc/c/", "/v1/doc/c",
    "/v1/doc/c/%0A", "/v1/doc//d", "/v1/sql/query", "/v1/sql/exec", "/v1/auth/keys",
    "/v1/auth/keys/abc", "/v1/auth/keys/a%2Fb", "/v1/vector", "/v1/vector/", "/v1/vector/c",
    "/v1/vector/c/", "/v1/vector/c/search", "/v1/vector/c/search/", "/v1/vector/c/get",
    "/v1/vector/a%2Fb", "/v1/vector/c/upsert_batch", "/v1/vector/c/nope", "/v1/vector/search",
    "/v1/vector/c/add", "/v1/vector/c/upsert", "/v1/vector/c/update", "/v1/vector/c/delete",
    "/v1/vector/c/delete_batch", "/v1/vector/c/search_batch", "/v1/vector/c/compact",
    "/v1/vector/c/diskann/build", "/v1/vector/c/diskann/tune", "/v1/vector/c/diskann/status",
    "/v1/vector/c/diskann", "/v1/vector/c/diskann/",
    "///v1/health", "//v1/state/k", "/v1/doc", "/v1/doc/", "/v1/auth/whoami", "/v1/auth/whoami/",
    "/static/app.js", "/static/panels/keys.js", "/static/", "/static", "/static/a%2Fb", "/static/../x",
    "/v1/_bench/ping", "/v1/_bench/echo", "/nope", "//v1/health", "/v1//state",
    "/search", "/search/", "/search/ingest", "/search/delete", "/search/ingest/x", "/searchx",
]
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]


class _Rest(BaseConverter):
    """The old KeyConverter: any characters, `/` and newlines included."""

    regex = r"[\s\S]+"
    part_isolating = False


def _rest_except(static: tuple[str, ...]) -> type[BaseConverter]:
    names = "|".join(re.escape(name) for name in static)
    regex = rf"(?!(?:{names})\Z)[\s\S]+" if static else r"[\s\S]+"
    return type("RestExcept", (_Rest,), {"regex": regex, "part_isolating": False})


def werkzeug_router(routes):
    """The old werkzeug map, built from the route table the way the Quart app built it."""
    url_map = Map(merge_slashes=False)
    for i, route in enumerate(routes):
        path = route.path
        for m in re.finditer(r"\{([^:{}]+):path\}", route.path):
            converter = f"rest{i}"
            url_map.converters[converter] = _rest_except(route.exclude)
            path = path.replace(m.group(0), f"<{converter}:{m.group(1)}>")
        path = re.sub(r"\{([^:{}]+)\}", r"<\1>", path)
        # Quart added OPTIONS to every rule; werkzeug adds HEAD to GET rules.
        url_map.add(Rule(path, methods=[route.method, "OPTIONS"], endpoint=route.name))
    return url_map.bind("localhost")


def outcome_new(router, method: str, path: str):
    try:
        match = router.match(method, path)
    except NotFound:
        return ("404",)
    if match.route is None:
        if method == "OPTIONS":
            return ("options", tuple(sorted(match.allowed)))
        return ("405", tuple(sorted(match.allowed)))
    return ("route", match.route.name, match.params)


def outcome_old(adapter, method: str, path: str):
    if method == "OPTIONS":
        try:
            return ("options", tuple(sorted(adapter.allowed_methods(path)))) if adapter.allowed_methods(path) else ("404",)
        except WzNotFound:
            return ("404",)
    try:
        endpoint, params = adapter.match(path, method)
    except WzNotFound:
        return ("404",)
    except WzMethodNotAllowed as exc:
        return ("405", tuple(sorted(exc.valid_methods)))
    return ("route", endpoint, params)


@pytest.fixture(scope="module")
def routers():
    class NoEngine:  # route modules only read attributes when a request comes
        docs = sql = keys = None

    app = create_app(NoEngine(), Settings(api_key="k", bench_routes=True))
    return app.router, werkzeug_router(app.routes)


@pytest.mark.parametrize("path", PATHS)
def test_both_routers_agree(routers, path):
    new, old = routers
    decoded = unquote(path, errors="surrogateescape")
    for method in METHODS:
        assert outcome_new(new, method, decoded) == outcome_old(old, method, decoded), (method, path)


def test_the_corpus_exercises_every_outcome(routers):
    new, _ = routers
    seen = {outcome_new(new, m, unquote(p, errors="surrogateescape"))[0] for p in PATHS for m in METHODS}
    assert seen == {"route", "404", "405", "options"}
    names = {outcome_new(new, m, unquote(p, errors="surrogateescape"))[1]
             for p in PATHS for m in METHODS if outcome_new(new, m, unquote(p, errors="surrogateescape"))[0] == "route"}
    assert names == {r.name for r in new.routes}, "every route is reached by some path in the corpus"


def test_a_405_from_the_router_lists_the_allow_header(routers):
    new, _ = routers
    error = new.match("GET", "/v1/state/batch_put").method_not_allowed()
    assert isinstance(error, MethodNotAllowed) and error.allow == ["OPTIONS", "POST"]

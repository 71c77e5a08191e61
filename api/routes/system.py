"""System routes: health, metrics, the OpenAPI spec, the docs page, the dashboard, bench ceilings.

| route                         | auth | answer                                              |
|-------------------------------|------|-----------------------------------------------------|
| GET /v1/health                | open | 200 text/plain `ok` (no checks, as the original)    |
| GET /v1/metrics               | key  | Prometheus text: engine series + the original's five|
| GET /openapi.yaml             | open | the spec, `text/yaml; charset=utf-8`                |
| GET /docs/openapi.yaml        | open | same                                                |
| GET /docs                     | open | the interactive API page (api/static/docs.html)     |
| GET / and /index.html         | open | the dashboard (api/static/index.html, no CDN)       |
| GET /static/<file>            | open | the pages' scripts, styles, the viewer (assets.py)  |
| GET /v1/_bench/ping           | read | {"ok":true}: the GET ceiling for bench/ (BENCH_ROUTES only) |
| POST /v1/_bench/echo          | read | parses the JSON body, {"ok":true}: the POST ceiling (BENCH_ROUTES only) |

Static files ship as package data (`kissvdb.api/static/**`) and are read once, at start.
The canonical spec is api/static/openapi.yaml; docs/openapi.yaml is a link to it.
The HTML pages carry a Content-Security-Policy that forbids framing (clickjacking), inline
script and style, and anything not served by this server.
"""

from __future__ import annotations

from importlib import resources

from ..codec import raw_json_response, read_json_object
from ..http.messages import Response
from ..metrics import render_prometheus
from ..routing import Route

TEXT = "text/plain; charset=utf-8"
YAML = "text/yaml; charset=utf-8"
HTML = "text/html; charset=utf-8"
PROMETHEUS = TEXT  # as the original; Prometheus reads plain text
OK_JSON = b'{"ok":true}'
# The pages load only what this server serves (scripts and styles from files, never inline, so
# an injected value cannot run), talk only to it, and nothing may frame them. `data:` images:
# the API viewer's stylesheet draws its icons with them.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
            "object-src 'none'")

def static_file(name: str) -> bytes:
    """A file shipped in kissvdb.api's `static/` package data."""
    return resources.files("kissvdb.api").joinpath("static", name).read_bytes()


def _page(body: bytes) -> Response:
    return Response(body, 200, [("Content-Type", HTML), ("Content-Security-Policy", PAGE_CSP),
                                ("X-Frame-Options", "DENY")])


def routes(app) -> list[Route]:
    engine = app.engine
    api_metrics = app.api_metrics
    spec = static_file("openapi.yaml")
    dashboard = static_file("index.html")
    docs_page = static_file("docs.html")

    async def health(request):
        return Response(b"ok", 200, [("Content-Type", TEXT)])

    async def metrics(request):
        text = render_prometheus(engine.metrics(), api_metrics.series(), api_metrics.histogram_lines())
        return Response(text.encode(), 200, [("Content-Type", PROMETHEUS)])

    async def openapi(request):
        return Response(spec, 200, [("Content-Type", YAML)])

    async def docs(request):
        return _page(docs_page)

    async def index(request):
        return _page(dashboard)

    async def bench_ping(request):
        return raw_json_response(OK_JSON)

    async def bench_echo(request):
        await read_json_object(request)
        return raw_json_response(OK_JSON)

    table = [
        Route("GET", "/v1/health", health, "public", "health"),
        Route("GET", "/v1/metrics", metrics, "read", "metrics"),
        Route("GET", "/openapi.yaml", openapi, "public", "openapi"),
        Route("GET", "/docs/openapi.yaml", openapi, "public", "docs_openapi"),
        Route("GET", "/docs", docs, "public", "docs"),
        Route("GET", "/", index, "public", "dashboard"),
        Route("GET", "/index.html", index, "public", "dashboard_index"),
    ]
    if app.settings.bench_routes:
        # The ceilings bench/ compares against; off unless asked for (BENCH_ROUTES=1).
        table += [
            Route("GET", "/v1/_bench/ping", bench_ping, "read", "bench_ping"),
            Route("POST", "/v1/_bench/echo", bench_echo, "read", "bench_echo"),
        ]
    return table

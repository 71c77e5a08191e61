"""System routes: health, metrics, the OpenAPI spec, the docs page, the dashboard, bench ceilings.

| route                         | auth | answer                                              |
|-------------------------------|------|-----------------------------------------------------|
| GET /v1/health                | open | 200 text/plain `ok` (no checks, as the original)    |
| GET /v1/metrics               | key  | Prometheus text: engine series + the original's five|
| GET /openapi.yaml             | open | the spec, `text/yaml; charset=utf-8`                |
| GET /docs/openapi.yaml        | open | same                                                |
| GET /docs                     | open | a small HTML page pointing at the spec              |
| GET / and /index.html         | open | the dashboard (api/static/index.html, no CDN)       |
| GET /v1/_bench/ping           | read | {"ok":true}: the GET ceiling for bench/ (BENCH_ROUTES only) |
| POST /v1/_bench/echo          | read | parses the JSON body, {"ok":true}: the POST ceiling (BENCH_ROUTES only) |

Static files ship as package data (`kissvdb.api/static/*`) and are read once, at start.
The canonical spec is api/static/openapi.yaml; docs/openapi.yaml is a link to it.
The HTML pages carry a Content-Security-Policy that forbids framing (clickjacking) and
anything not served by this server.
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
# The pages load only what this server serves; nothing may frame them.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'")

DOCS_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kissvdb API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
pre{background:#f4f4f4;padding:1rem;overflow:auto;font-size:.85rem}</style></head>
<body><h1>kissvdb HTTP API</h1>
<p>The OpenAPI 3.1 specification: <a href="/docs/openapi.yaml">/docs/openapi.yaml</a>
(also at <a href="/openapi.yaml">/openapi.yaml</a>). Load it into any OpenAPI viewer.</p>
<pre id="spec">loading...</pre>
<script>fetch('/docs/openapi.yaml').then(r => r.text())
.then(t => { document.getElementById('spec').textContent = t; });</script>
</body></html>
"""


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

    async def health(request):
        return Response(b"ok", 200, [("Content-Type", TEXT)])

    async def metrics(request):
        text = render_prometheus(engine.metrics(), api_metrics.series())
        return Response(text.encode(), 200, [("Content-Type", PROMETHEUS)])

    async def openapi(request):
        return Response(spec, 200, [("Content-Type", YAML)])

    async def docs(request):
        return _page(DOCS_PAGE)

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

"""System routes: health, metrics, the OpenAPI spec, the docs page, the dashboard, bench ceilings.

| route                         | auth | answer                                              |
|-------------------------------|------|-----------------------------------------------------|
| GET /v1/health                | open | 200 text/plain `ok` (no checks, as the original)    |
| GET /v1/metrics               | key  | Prometheus text: engine series + the original's five|
| GET /openapi.yaml             | open | the spec, `text/yaml; charset=utf-8`                |
| GET /docs/openapi.yaml        | open | same                                                |
| GET /docs                     | open | a small HTML page pointing at the spec              |
| GET / and /index.html         | open | the dashboard (api/static/index.html, no CDN)       |
| GET /v1/_bench/ping           | key  | {"ok":true}: the GET ceiling for bench/             |
| POST /v1/_bench/echo          | key  | parses the JSON body, {"ok":true}: the POST ceiling |

Static files ship as package data (`kissvdb.api/static/*`) and are read once, at start.
The canonical spec is api/static/openapi.yaml; docs/openapi.yaml is a link to it.
"""

from __future__ import annotations

from importlib import resources

from ..codec import raw_json_response, read_json_object
from ..metrics import render_prometheus

TEXT = "text/plain; charset=utf-8"
YAML = "text/yaml; charset=utf-8"
HTML = "text/html; charset=utf-8"
PROMETHEUS = TEXT  # as the original; Prometheus reads plain text
OK_JSON = b'{"ok":true}'

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


def register(app) -> None:
    engine = app.engine
    api_metrics = app.api_metrics
    response_class = app.response_class
    spec = static_file("openapi.yaml")
    dashboard = static_file("index.html")

    @app.route("/v1/health", methods=["GET"], endpoint="health")
    async def health(request):
        return response_class(b"ok", 200, content_type=TEXT)

    @app.route("/v1/metrics", methods=["GET"], endpoint="metrics")
    async def metrics(request):
        text = render_prometheus(engine.metrics(), api_metrics.series())
        return response_class(text.encode(), 200, content_type=PROMETHEUS)

    @app.route("/openapi.yaml", methods=["GET"], endpoint="openapi")
    @app.route("/docs/openapi.yaml", methods=["GET"], endpoint="docs_openapi")
    async def openapi(request):
        return response_class(spec, 200, content_type=YAML)

    @app.route("/docs", methods=["GET"], endpoint="docs")
    async def docs(request):
        return response_class(DOCS_PAGE, 200, content_type=HTML)

    @app.route("/", methods=["GET"], endpoint="dashboard")
    @app.route("/index.html", methods=["GET"], endpoint="dashboard_index")
    async def index(request):
        return response_class(dashboard, 200, content_type=HTML)

    @app.route("/v1/_bench/ping", methods=["GET"], endpoint="bench_ping")
    async def bench_ping(request):
        return raw_json_response(OK_JSON)

    @app.route("/v1/_bench/echo", methods=["POST"], endpoint="bench_echo")
    async def bench_echo(request):
        await read_json_object(request)
        return raw_json_response(OK_JSON)

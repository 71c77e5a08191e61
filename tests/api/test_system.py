"""System routes: health, metrics, the spec, the docs page, the dashboard, the bench ceilings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kissvdb.api.metrics import ApiMetrics, HELP, HTTP_LATENCY, LATENCY_BUCKETS_S, REQUIRED_SERIES, render_prometheus
from tests.helpers import assert_error

REPO = Path(__file__).resolve().parents[2]


async def test_health_is_plain_ok(api):
    reply = await api.get("/v1/health", auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.content == b"ok"


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABELS = r'(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*'
SAMPLE = re.compile(rf'({NAME})(?:\{{({LABELS})\}})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def parse_exposition(text: str) -> dict[str, dict]:
    """Prometheus text -> {family: {"help", "type", "samples": [(name, labels, value)]}}.

    Asserts the format the page and Prometheus rely on: every family opens with `# HELP` then
    `# TYPE`, every sample belongs to the family just opened (a histogram's `_bucket`, `_sum`
    and `_count` included), and the text ends with a newline."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    current = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# HELP "):
            name, help_ = line[7:].split(" ", 1)
            assert re.fullmatch(NAME, name) and help_.strip(), line
            assert name not in families, f"{name} twice"
            type_line = lines[i + 1]
            assert re.fullmatch(rf"# TYPE {re.escape(name)} (counter|gauge|histogram)", type_line), type_line
            current = families[name] = {"help": help_, "type": type_line.split()[-1], "samples": []}
            current["name"] = name
            continue
        if line.startswith("# TYPE "):
            assert current is not None and line.split()[2] == current["name"], line
            continue
        m = SAMPLE.fullmatch(line)
        assert m, line
        name, labels, value = m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))
        assert current is not None, line
        base = current["name"]
        if current["type"] == "histogram":
            assert name in {base + s for s in HISTOGRAM_SUFFIXES}, (base, line)
        else:
            assert name == base and not labels, (base, line)
        current["samples"].append((name, labels, value))
    return families


def parse_metrics(text: str) -> dict[str, tuple[str, float]]:
    """name -> (type, value) of the unlabelled series, after checking the whole text."""
    return {name: (f["type"], f["samples"][0][2])
            for name, f in parse_exposition(text).items() if f["type"] != "histogram"}


async def test_metrics_have_the_original_five_series_and_count(api):
    reply = await api.get("/v1/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    series = parse_metrics(reply.text)
    for name, kind in REQUIRED_SERIES:
        assert series[name][0] == kind, name
    assert "http_internal_errors_total" in series
    assert series["state_put_total"][1] == 0

    await api.put("/v1/state/a", json={"value": 1})
    await api.put("/v1/state/b", json={"value": 2})
    await api.delete("/v1/state/a")
    series = parse_metrics((await api.get("/v1/metrics")).text)
    assert series["state_put_total"][1] == 2
    assert series["state_delete_total"][1] == 1
    assert series["events_total"][1] == 3
    assert series["sse_clients"][1] == 0


async def test_every_series_has_its_own_help_line(make_api):
    async with make_api(sqlite_enabled=True) as api:
        await api.post("/v1/vector/v", json={"dim": 2, "metric": "cosine"})
        families = parse_exposition((await api.get("/v1/metrics")).text)
    missing = sorted(name for name in families if name not in HELP)
    assert missing == [], "add a HELP sentence to api/metrics.py for these"
    assert {"kissvdb_vector_live", "kissvdb_doc_find_total", "kissvdb_sql_queries_total",
            "kissvdb_wal_retained_bytes", HTTP_LATENCY} <= set(families)


async def test_wal_retained_bytes_grows_with_writes(api):
    before = await api.metric("kissvdb_wal_retained_bytes")
    await api.put("/v1/state/k", json={"value": "x" * 1000})
    assert await api.metric("kissvdb_wal_retained_bytes") >= before + 1000


async def test_request_latency_histogram_by_route_and_method(api):
    for _ in range(3):
        await api.put("/v1/state/a%2Fb", json={"value": 1})
    await api.get("/v1/state/a")
    await api.get("/nowhere")
    families = parse_exposition((await api.get("/v1/metrics")).text)
    latency = families[HTTP_LATENCY]
    assert latency["type"] == "histogram"
    by_labels: dict[tuple, dict] = {}
    for name, labels, value in latency["samples"]:
        key = (labels["route"], labels["method"])
        if name.endswith("_bucket"):
            by_labels.setdefault(key, {}).setdefault("buckets", []).append((labels["le"], value))
        else:
            by_labels.setdefault(key, {})[name.rsplit("_", 1)[1]] = value
    put = by_labels[("/v1/state/{key}", "PUT")]
    assert put["count"] == 3 and put["sum"] > 0
    bounds = [le for le, _ in put["buckets"]]
    assert bounds[-1] == "+Inf" and [float(b) for b in bounds[:-1]] == list(LATENCY_BUCKETS_S)
    counts = [v for _, v in put["buckets"]]
    assert counts == sorted(counts) and counts[-1] == 3  # cumulative, ending with every request
    assert by_labels[("/v1/state/{key}", "GET")]["count"] == 1
    assert by_labels[("unmatched", "GET")]["count"] == 1


def test_latency_labels_stay_a_bounded_set():
    metrics = ApiMetrics()
    metrics.observe("/v1/state/{key}", "BREW", 0.001)
    metrics.observe("/v1/state/{key}", "GET", 10.0)  # on a bound: that bound's bucket
    metrics.observe("/v1/state/{key}", "GET", 60.0)  # past the last bound: +Inf only
    lines = metrics.histogram_lines()
    assert 'kissvdb_http_request_seconds_count{route="/v1/state/{key}",method="other"} 1' in lines
    assert not any("BREW" in line for line in lines)
    assert 'kissvdb_http_request_seconds_bucket{route="/v1/state/{key}",method="GET",le="5"} 0' in lines
    assert 'kissvdb_http_request_seconds_bucket{route="/v1/state/{key}",method="GET",le="10"} 1' in lines
    assert 'kissvdb_http_request_seconds_bucket{route="/v1/state/{key}",method="GET",le="+Inf"} 2' in lines


def test_render_fills_missing_required_series_and_engine_wins():
    text = render_prometheus(
        [("state_put_total", "counter", 7), ("x_seconds", "counter", 0.25)],
        [("state_put_total", "counter", 99), ("api_only", "gauge", 3.0)],
    )
    series = parse_metrics(text)
    assert series["state_put_total"] == ("counter", 7)
    assert series["x_seconds"] == ("counter", 0.25)
    assert series["api_only"] == ("gauge", 3)
    assert series["sse_clients"] == ("gauge", 0)
    assert "api_only 3\n" in text


@pytest.mark.parametrize("path", ["/openapi.yaml", "/docs/openapi.yaml"])
async def test_spec_is_served_as_yaml(api, path):
    reply = await api.get(path, auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/yaml; charset=utf-8"
    assert reply.content == (REPO / "api" / "static" / "openapi.yaml").read_bytes()
    assert reply.content.startswith(b"openapi: 3.1")


def test_docs_copy_of_the_spec_is_the_packaged_one():
    docs = REPO / "docs" / "openapi.yaml"
    packaged = REPO / "api" / "static" / "openapi.yaml"
    assert docs.read_bytes() == packaged.read_bytes()


async def test_docs_page_is_the_viewer_over_our_own_spec(api):
    reply = await api.get("/docs", auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    page = reply.content
    assert b'src="/static/vendor/swagger-ui/swagger-ui-bundle.js"' in page
    assert b'src="/static/docs.js"' in page and b'href="/docs/openapi.yaml"' in page
    script = (REPO / "api" / "static" / "docs.js").read_text()
    assert "url: SPEC" in script and "const SPEC = '/docs/openapi.yaml'" in script
    assert "queryConfigEnabled: false" in script  # ?url= cannot load a foreign spec
    assert_page_loads_only_our_files(page)


def assert_page_loads_only_our_files(page: bytes) -> None:
    """No inline script or style (the CSP forbids both), nothing from another host."""
    assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script"
    assert b"<style" not in page and b" style=" not in page, "inline style"
    assert not re.search(rb"\bon[a-z]+=", page), "inline handler"
    assert not re.search(rb"(src|href)=\"(https?:)?//", page), "a file from another host"


@pytest.mark.parametrize("path", ["/", "/index.html"])
async def test_dashboard_is_served_without_cdn(api, path):
    reply = await api.get(path, auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    page = reply.content
    assert b'<script type="module" src="/static/app.js">' in page
    assert b'href="/static/style.css"' in page
    assert_page_loads_only_our_files(page)


@pytest.fixture
async def bench_api(make_api):
    async with make_api(bench_routes=True) as api:
        yield api


async def test_bench_routes_are_off_unless_asked_for(api):
    assert_error(await api.get("/v1/_bench/ping"), 404)
    assert_error(await api.post("/v1/_bench/echo", json={}), 404)


async def test_bench_ping(bench_api):
    api = bench_api
    reply = await api.get("/v1/_bench/ping")
    assert reply.status_code == 200 and reply.json() == {"ok": True}
    assert reply.headers["content-type"] == "application/json"
    assert_error(await api.get("/v1/_bench/ping", auth=False), 401)


async def test_bench_echo_parses_the_body(bench_api):
    api = bench_api
    reply = await api.post("/v1/_bench/echo", json={"value": {"a": 1}, "ttl_ms": 5})
    assert reply.status_code == 200 and reply.json() == {"ok": True}
    reply = await api.post("/v1/_bench/echo", data=b"{", headers={"Content-Type": "application/json"})
    assert_error(reply, 400, "invalid_argument", field="body")
    assert_error(await api.post("/v1/_bench/echo", data=b"{}"), 415)
    assert_error(await api.post("/v1/_bench/echo", json={}, auth=False), 401)
    assert_error(await api.get("/v1/_bench/echo"), 405)
    assert await api.metric("events_total") == 0

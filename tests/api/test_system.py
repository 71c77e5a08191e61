"""System routes: health, metrics, the spec, the docs page, the dashboard, the bench ceilings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kissvdb.api.metrics import REQUIRED_SERIES, render_prometheus
from tests.helpers import assert_error

REPO = Path(__file__).resolve().parents[2]


async def test_health_is_plain_ok(api):
    reply = await api.get("/v1/health", auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.content == b"ok"


def parse_metrics(text: str) -> dict[str, tuple[str, float]]:
    """name -> (type, value); asserts every sample is preceded by its `# TYPE` line."""
    series: dict[str, tuple[str, float]] = {}
    lines = text.splitlines()
    assert text.endswith("\n")
    for i, line in enumerate(lines):
        if line.startswith("#"):
            assert re.fullmatch(r"# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge)", line), line
            continue
        name, value = line.split(" ")
        assert lines[i - 1].startswith(f"# TYPE {name} "), (lines[i - 1], line)
        series[name] = (lines[i - 1].split()[-1], float(value))
    return series


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


async def test_docs_page_points_at_the_spec(api):
    reply = await api.get("/docs", auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert b'href="/docs/openapi.yaml"' in reply.content


@pytest.mark.parametrize("path", ["/", "/index.html"])
async def test_dashboard_is_served_without_cdn(api, path):
    reply = await api.get(path, auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    page = reply.content
    assert b"/v1/stream?api_key=" in page and b"/v1/state?limit=100" in page
    assert b"/v1/health" in page
    assert b"addEventListener" in page  # named events, not the original's unnamed 'message'
    assert not re.search(rb"<script[^>]+src=|<link[^>]+href=\"http", page)


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

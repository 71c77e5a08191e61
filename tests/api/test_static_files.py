"""`GET /static/{file}`: the dashboard's packaged files, and nothing else.

Served from a table fixed at start (api/routes/assets.py): each file with its content type and
an ETag that revalidates to a 304; any other name, `..` and encoded separators included, is a
404 that never reads the file system. The HTML pages carry the strict page CSP.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from kissvdb.api.routes.assets import CONTENT_TYPES, AssetTable
from kissvdb.api.routes.system import PAGE_CSP
from tests.helpers import assert_error, raw_request

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "api" / "static"
SHIPPED = sorted(
    p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*")
    if p.is_file() and not p.name.endswith(".html") and (p.suffix if "." in p.name else "") in CONTENT_TYPES
)


def test_the_table_is_every_packaged_file_but_the_pages():
    table = AssetTable.packaged()
    assert sorted(table.files) == SHIPPED
    assert {"app.js", "api.js", "dom.js", "sse.js", "stream.js", "prometheus.js", "style.css",
            "docs.js", "panels/keys.js", "vendor/swagger-ui/swagger-ui-bundle.js",
            "vendor/swagger-ui/LICENSE", "vendor/swagger-ui/NOTICE"} <= set(table.files)
    assert not any(name.endswith(".html") for name in table.files)


def test_package_data_ships_the_subdirectories():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["kissvdb.api"]
    assert "static/**/*" in globs  # panels/ and vendor/ go into the wheel


@pytest.mark.parametrize("name, content_type", [
    ("app.js", "text/javascript; charset=utf-8"),
    ("panels/stream.js", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("vendor/swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    ("vendor/swagger-ui/LICENSE", "text/plain; charset=utf-8"),
    ("openapi.yaml", "text/yaml; charset=utf-8"),
])
async def test_a_file_is_served_with_its_type_and_revalidates_to_304(api, name, content_type):
    reply = await api.get(f"/static/{name}", auth=False)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == content_type
    assert reply.content == (STATIC / name).read_bytes()
    assert reply.headers["cache-control"] == "no-cache"
    etag = reply.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = await api.get(f"/static/{name}", auth=False, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    weak = await api.get(f"/static/{name}", auth=False, headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    stale = await api.get(f"/static/{name}", auth=False, headers={"If-None-Match": '"0000"'})
    assert stale.status_code == 200 and stale.content == reply.content


@pytest.mark.parametrize("path", [
    "/static/nope.js", "/static/index.html", "/static/docs.html", "/static/panels",
    "/static/panels/", "/static/../pyproject.toml", "/static/..%2Fapp.py", "/static/%2e%2e/app.py",
    "/static/panels/../app.js", "/static/./app.js", "/static//etc/passwd", "/static/%2Fetc%2Fpasswd",
    "/static/app.js/", "/static/APP.JS", "/static/app.js%00", "/static/vendor/swagger-ui/../../app.js",
])
async def test_any_other_name_is_404_without_a_key(api, path):
    reply = await raw_request(api.url, "GET", path, [])  # sent as written: no client normalises it
    assert_error(reply, 404, "not_found", message="static file not found")


async def test_static_files_need_no_key_and_take_only_get(api):
    assert (await api.get("/static/app.js", auth=False)).status_code == 200
    for method in ("PUT", "POST", "DELETE"):
        reply = await api.request(method, "/static/app.js", auth=False, data=b"x")
        assert_error(reply, 405, "method_not_allowed")
        assert reply.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert (await api.get("/static/app.js", auth=False)).content == (STATIC / "app.js").read_bytes()


@pytest.mark.parametrize("path", ["/", "/index.html", "/docs"])
async def test_pages_forbid_inline_script_and_framing(api, path):
    reply = await api.get(path, auth=False)
    csp = reply.headers["content-security-policy"]
    assert csp == PAGE_CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["connect-src"] == "'self'"
    assert reply.headers["x-frame-options"] == "DENY"


def test_our_scripts_never_parse_values_as_html():
    for path in STATIC.rglob("*.js"):
        if "vendor" in path.parts:
            continue
        text = path.read_text()
        for banned in (r"\.innerHTML\b", r"\.outerHTML\b", r"insertAdjacentHTML\s*\(", r"document\.write\s*\(",
                       r"\beval\s*\(", r"\bnew Function\s*\(", r"\.setHTML"):
            assert not re.search(banned, text), f"{path.relative_to(REPO)} uses {banned}"


def test_the_viewer_ships_with_its_licence():
    vendor = STATIC / "vendor" / "swagger-ui"
    assert "Apache License" in (vendor / "LICENSE").read_text()
    assert "swagger-ui" in (vendor / "NOTICE").read_text()
    assert not list(vendor.glob("*.map")) and not (vendor / "swagger-ui-standalone-preset.js").exists()

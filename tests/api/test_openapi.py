"""docs/openapi.yaml against the app: every route is documented, and nothing else is.

The spec is read with a small line reader (the project does not depend on a YAML library): under
`paths:`, a path is a key at two spaces, a method a key at four, and `security: []` at six marks
an open route. When PyYAML happens to be installed the whole file is also parsed and its
`$ref`s resolved.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kissvdb.api.app import create_app
from kissvdb.config import Settings

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # answered for every route by the app itself


def spec_operations(text: str) -> dict[tuple[str, str], bool]:
    """(path, METHOD) -> open (security: []) for every operation under `paths:`."""
    ops: dict[tuple[str, str], bool] = {}
    in_paths = False
    path = method = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            in_paths = line.rstrip() == "paths:"
            continue
        if not in_paths:
            continue
        if m := re.fullmatch(r"  (/\S*):\s*", line):
            path, method = m.group(1), None
        elif m := re.fullmatch(r"    ([a-z]+):\s*", line):
            method = m.group(1) if m.group(1) in METHODS else None
            if method is not None:
                ops[(path, method.upper())] = False
        elif method is not None and re.fullmatch(r"      security: \[\]\s*", line):
            ops[(path, method.upper())] = True
    return ops


def spec_path(route) -> str:
    """The route's template as the spec writes it: `{key:path}` -> `{key}`."""
    return re.sub(r"\{([^:{}]+):[a-z]+\}", r"{\1}", route.path)


def app_operations(app) -> set[tuple[str, str]]:
    return {(spec_path(route), route.method) for route in app.routes}


@pytest.fixture
async def app(tmp_path):
    from kissvdb.actors.boot import open_engine

    settings = Settings(data_dir=str(tmp_path / "data"), api_key="k", bench_routes=True)
    async with open_engine(settings) as engine:
        yield create_app(engine, settings)


def test_spec_reader_sees_paths_methods_and_open_routes():
    ops = spec_operations(SPEC.read_text())
    assert ops[("/v1/state/{key}", "PUT")] is False
    assert ops[("/v1/health", "GET")] is True
    assert len(ops) >= 14


async def test_every_route_is_in_the_spec_and_nothing_else(app):
    documented = set(spec_operations(SPEC.read_text()))
    served = app_operations(app)
    assert served - documented == set(), "routes missing from docs/openapi.yaml"
    assert documented - served == set(), "docs/openapi.yaml documents routes the app lacks"


async def test_open_routes_in_the_spec_are_exactly_the_public_routes(app):
    public = {(spec_path(r), r.method): r.public for r in app.routes}
    for (path, method), open_ in spec_operations(SPEC.read_text()).items():
        assert open_ is public[(path, method)], f"{method} {path}: spec says open={open_}"


def test_spec_is_valid_yaml_with_resolvable_refs():
    import yaml
    text = SPEC.read_text()
    spec = yaml.safe_load(text)
    assert spec["openapi"].startswith("3.1")
    for ref in set(re.findall(r'\$ref: "#/([^"]+)"', text)):
        node = spec
        for part in ref.split("/"):
            node = node[part]
    ops = {(p, m.upper()) for p, item in spec["paths"].items() for m in item if m in METHODS}
    assert ops == set(spec_operations(text))


def test_the_event_types_in_the_spec_are_exactly_those_of_kissvdb_events():
    """kissvdb/events.py is the one list of event types: the spec names each of them (in
    backquotes) and no other `*_updated`/`*_deleted`-shaped event name."""
    from kissvdb.events import EVENT_TYPES

    text = SPEC.read_text()
    for name in EVENT_TYPES:
        assert f"`{name}`" in text, f"docs/openapi.yaml never names the event type {name}"
    shaped = set(re.findall(r"`((?:state|doc|vector|vector_collection|sql)_[a-z]+)`", text))
    assert shaped <= set(EVENT_TYPES), sorted(shaped - set(EVENT_TYPES))

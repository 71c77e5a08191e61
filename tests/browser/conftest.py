"""Fixtures for the browser tests: one `kissvdb serve` and one Chromium for the module, a fresh
browser context (own sessionStorage) per test, and an httpx client for seeding.

Skipped, with the reason printed, when Playwright or Chromium is missing (see harness.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.server import ServerProcess

from .harness import CHROMIUM_ARGS, VIEWPORT, BrowserPage, find_chromium

CHROMIUM, WHY_NOT = find_chromium()
API_KEY = "browser-test-key"

def pytest_collection_modifyitems(config, items):
    if CHROMIUM is None:
        skip = pytest.mark.skip(reason=f"browser tests skipped: {WHY_NOT}")
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("browser") / "data", api_key=API_KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium, server):
    context = chromium.new_context(viewport=VIEWPORT)
    try:
        page = BrowserPage(context, server.base_url)
        yield page
        page.assert_clean()
    finally:
        context.close()

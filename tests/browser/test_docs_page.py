"""/docs in a real browser, offline: the viewer renders our spec from our own files, try-it-out
sends the dashboard's key, and `?url=` cannot load another spec."""

from __future__ import annotations

import json

from .conftest import API_KEY
from .test_panels import wait_text


def test_try_it_out_uses_the_dashboards_key_offline(browser_page):
    page = browser_page.connect(API_KEY, "admin")  # the key goes to sessionStorage
    page = browser_page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "kissvdb HTTP API" in page.text_content(".swagger-ui .info .title")
    wait_text(page, "#docs-key", "sends the key you connected with")
    op = page.locator("#operations-auth-get_v1_auth_whoami")
    op.locator(".opblock-summary").click()
    op.locator("button.execute").click()
    body = op.locator(".live-responses-table .response-col_description pre.microlight").first
    body.wait_for()
    assert json.loads(body.text_content()) == {"name": "static", "role": "admin", "key_id": None}


def test_the_viewer_ignores_a_foreign_spec_in_the_url(browser_page):
    page = browser_page.goto("/docs?url=https://attacker.example/spec.yaml&configUrl=https://attacker.example/c.json")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "kissvdb HTTP API" in page.text_content(".swagger-ui .info .title")
    assert browser_page.foreign == []  # nothing was even asked of another host

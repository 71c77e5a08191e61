"""Screenshots of every dashboard panel and /docs, for docs/screenshots/ (README shows them).

    .venv/bin/python -m tests.browser.screenshots [OUT_DIR]

Starts a `kissvdb serve` on a temporary data directory, writes a little of everything through
the API (keys with and without TTL, documents, a vector collection, a SQL table, a read key),
then opens each panel in the system's Chromium (tests/browser/harness.py) and saves it as
OUT_DIR/<panel>.png (default docs/screenshots). Needs what the browser tests need.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from tests.e2e.server import ServerProcess

from .harness import CHROMIUM_ARGS, BrowserPage, find_chromium

KEY = "screenshot-key"
SIZE = {"width": 1280, "height": 760}
REPO = Path(__file__).resolve().parents[2]


def seed(c: httpx.Client) -> None:
    ok = lambda reply: reply.raise_for_status()  # noqa: E731
    for i, (name, plan) in enumerate([("ada", "pro"), ("grace", "free"), ("linus", "pro"), ("margaret", "team")]):
        ok(c.put(f"/v1/state/user:{i + 1}", json={"value": {"name": name, "plan": plan, "logins": 3 * i + 1}}))
    ok(c.put("/v1/state/session:7f3a", json={"value": {"user": 1, "ip": "10.0.0.7"}, "ttl_ms": 1_800_000}))
    ok(c.put("/v1/state/session:91bc", json={"value": {"user": 3, "ip": "10.0.0.9"}, "ttl_ms": 420_000}))
    ok(c.put("/v1/state/config:flags", json={"value": {"dark_mode": True, "beta": ["search", "export"]}}))
    for i, (title, year, tags) in enumerate([("Dune", 1965, ["sf"]), ("Neuromancer", 1984, ["sf", "cyber"]),
                                             ("Snow Crash", 1992, ["cyber"]), ("Hyperion", 1989, ["sf"]),
                                             ("The Left Hand of Darkness", 1969, ["sf"])]):
        ok(c.put(f"/v1/doc/books/b{i + 1}", json={"title": title, "year": year, "tags": tags}))
    ok(c.put("/v1/doc/authors/herbert", json={"name": "Frank Herbert", "born": 1920}))
    ok(c.post("/v1/vector/articles", json={"dim": 4, "metric": "cosine"}))
    items = [{"id": f"a{i}", "vector": [1.0, i / 10, (i % 3) / 3, 0.5], "meta": {"lang": "en" if i % 2 else "de", "year": 2018 + i}}
             for i in range(8)]
    ok(c.post("/v1/vector/articles/upsert_batch", json={"items": items}))
    ok(c.post("/v1/vector/papers", json={"dim": 4, "metric": "cosine", "index": "DISKANN"}))
    ok(c.post("/v1/vector/papers/upsert_batch", json={"items": [
        {"id": f"p{i}", "vector": [(i % 5) / 5, 1.0, i / 50, 0.25]} for i in range(50)]}))
    ok(c.post("/v1/vector/papers/diskann/build", json={"wait": True}))
    ok(c.post("/v1/sql/exec", json={"sql": "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, total REAL)"}))
    ok(c.post("/v1/sql/exec", json={"sql": "INSERT INTO orders(customer, total) VALUES ('ada', 42.5), ('grace', 17.0), ('linus', 99.9)"}))
    ok(c.post("/v1/auth/keys", json={"name": "reporting", "role": "read"}))


def main(argv: list[str]) -> int:
    chromium, why_not = find_chromium()
    if chromium is None:
        print(f"cannot take screenshots: {why_not}", file=sys.stderr)
        return 1
    out = Path(argv[0]) if argv else REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "data", api_key=KEY) as server:
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as c:
            seed(c)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport=SIZE, device_scale_factor=1)
                bp = BrowserPage(context, server.base_url)
                page = bp.connect(KEY, "admin")
                page.wait_for_selector("#keys-rows tr")
                page.click('#keys-rows tr[data-key="config:flags"]')
                shots = {"keys": page.screenshot()}

                bp.tab("documents")
                page.click("#docs-collections button:text('books')")
                page.fill("#docs-find [name=filter]", '{"year": {"$lt": 1990}}')
                page.fill("#docs-find [name=sort]", "-year")
                page.click("#docs-find button[type=submit]")
                page.wait_for_selector("#docs-rows tr")
                page.click("#docs-rows tr")
                page.wait_for_selector("#docs-detail pre")
                shots["documents"] = page.screenshot()

                bp.tab("vectors")
                page.click("#vec-collections tr:has-text('articles')")
                page.fill("#vec-search [name=id]", "a3")
                page.fill("#vec-search [name=filters]", '{"year": {"$gte": 2019}}')
                page.click("#vec-search button[type=submit]")
                page.wait_for_selector("#vec-hits tr")
                shots["vectors"] = page.screenshot()

                bp.tab("sql")
                page.fill("#sql-form [name=sql]", "SELECT customer, total FROM orders WHERE total > ? ORDER BY total DESC")
                page.fill("#sql-form [name=params]", "[20]")
                page.click("#sql-form button[value=query]")
                page.wait_for_selector("#sql-result tbody tr")
                shots["sql"] = page.screenshot()

                bp.tab("stream")
                page.wait_for_selector("#stream-msg.ok")
                c.put("/v1/state/user:2", json={"value": {"name": "grace", "plan": "pro"}})
                c.put("/v1/doc/books/b6", json={"title": "Solaris", "year": 1961})
                c.delete("/v1/state/session:91bc")
                c.post("/v1/vector/articles/upsert", json={"id": "a9", "vector": [0.2, 0.1, 0.9, 0.3], "meta": {"lang": "en"}})
                c.post("/v1/sql/exec", json={"sql": "UPDATE orders SET total = total * 1.1 WHERE customer = 'ada'"})
                page.wait_for_function("() => document.querySelectorAll('#stream-rows tr').length >= 5")
                page.click("#stream-rows tr:has-text('doc_upserted')")
                shots["stream"] = page.screenshot()

                bp.tab("metrics")
                for i in range(50):
                    c.put(f"/v1/state/load:{i}", json={"value": i})
                page.wait_for_function("() => document.querySelector('[data-metric=\"writes/s\"] .value').textContent !== '–'", timeout=15_000)
                shots["metrics"] = page.screenshot()

                bp.tab("apikeys")
                page.wait_for_selector("#apikeys-rows tr")
                shots["apikeys"] = page.screenshot()

                page = bp.goto("/docs")
                page.wait_for_selector(".swagger-ui .info .title")
                op = page.locator("#operations-auth-get_v1_auth_whoami")
                op.locator(".opblock-summary").click()
                op.locator("button.execute").click()
                op.locator(".live-responses-table").wait_for()
                page.evaluate("() => document.querySelector('#operations-auth-get_v1_auth_whoami').scrollIntoView()")
                shots["docs"] = page.screenshot()
                bp.assert_clean()
                browser.close()
    for name, png in shots.items():
        (out / f"{name}.png").write_bytes(png)
        print(f"wrote {out / name}.png ({len(png) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""A real browser on the dashboard: Debian's Chromium driven by Playwright, and a real server.

`find_chromium()` says where the system's Chromium is, or why the browser tests cannot run
(they are then skipped with that reason; README says how to install it). Playwright never
downloads a browser here: it launches the system one by `executable_path`, with the flags
below (no sandbox: CI runs as root; nothing that calls home). `BrowserPage` wraps one page
and records what must never happen on it: a script error, a console error, a request to
another host, a Content-Security-Policy violation. `seed` writes through the HTTP API.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
WAIT_MS = 10_000  # a bounded wait for anything the page should show
VIEWPORT = {"width": 1360, "height": 900}


def find_chromium() -> tuple[str | None, str]:
    """(path, "") or (None, why not)."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return None, "the `playwright` package is not installed (pip install -e '.[test]')"
    configured = os.environ.get("KISSVDB_CHROMIUM")
    candidates = [configured] if configured else [shutil.which("chromium"), *CHROMIUM_PATHS]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate, ""
    if configured:
        return None, f"KISSVDB_CHROMIUM={configured} is not an executable file"
    return None, "no Chromium found (Debian/Ubuntu: apt-get install -y chromium; or set KISSVDB_CHROMIUM)"


class BrowserPage:
    """One page of the dashboard on `base_url`, with its problems recorded."""

    def __init__(self, context, base_url: str):
        self.base_url = base_url
        self.page = page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"script error: {error}"))
        page.on("console", self._console)
        origin = base_url.rstrip("/")
        page.route("**/*", lambda route: self._route(route, origin))

    def _console(self, message) -> None:
        text = message.text
        if message.type == "error" and "Failed to load resource" not in text:
            self.errors.append(f"console error: {text}")
        if "Content Security Policy" in text:
            self.errors.append(f"CSP violation: {text}")

    def _route(self, route, origin: str) -> None:
        url = route.request.url
        if url.startswith(origin + "/") or url.startswith("data:"):
            route.continue_()
        else:  # offline: nothing but this server
            self.foreign.append(url)
            route.abort()

    def goto(self, path: str = "/"):
        self.page.goto(self.base_url + path)
        return self.page

    def connect(self, key: str, role: str | None = None):
        """Open the dashboard and connect with `key`; waits for the role badge."""
        page = self.goto("/")
        page.fill("#key", key)
        page.click("#connect")
        if role is not None:
            page.wait_for_function(f"() => document.querySelector('#whoami').textContent.endsWith('· {role}')")
        return page

    def tab(self, name: str):
        self.page.click(f"#tab-{name}")
        self.page.wait_for_selector(f"#panel-{name}:not([hidden])")
        return self.page

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"

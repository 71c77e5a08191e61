"""The Stream panel in a real browser: every event type shows, filters and pause work, and a
replay of 300,000 retained events leaves the page responsive with a bounded number of rows."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from kissvdb.events import EVENT_TYPES
from tests.e2e.server import ServerProcess, parse_metrics

from .conftest import API_KEY
from .harness import BrowserPage, VIEWPORT, WAIT_MS
from .test_panels import rows, wait_text

REPLAY_EVENTS = 300_000
REPLAY_BATCH = 1000
REPLAY_WAIT_S = 240  # the whole replay, on a loaded 2-core box
LONG_TASK_MAX_MS = 200
CLICK_ANSWER_MS = 3000
MAX_ROWS = 200  # api/static/panels/stream.js


def every_event_type(client) -> None:
    """One event of each type, through the API (EVENT_TYPES lists them)."""
    ok = lambda reply: reply.raise_for_status()  # noqa: E731
    ok(client.put("/v1/state/ev:1", json={"value": 1}))
    ok(client.delete("/v1/state/ev:1"))
    ok(client.put("/v1/doc/evdocs/d1", json={"a": 1}))
    ok(client.delete("/v1/doc/evdocs/d1"))
    ok(client.post("/v1/vector/evvec", json={"dim": 2, "metric": "cosine"}))
    ok(client.post("/v1/vector/evvec/add", json={"id": "v1", "vector": [1, 0]}))
    ok(client.post("/v1/vector/evvec/upsert", json={"id": "v2", "vector": [0, 1]}))
    ok(client.post("/v1/vector/evvec/update", json={"id": "v2", "vector": [1, 1]}))
    ok(client.post("/v1/vector/evvec/delete", json={"id": "v1"}))
    ok(client.delete("/v1/vector/evvec"))
    ok(client.post("/v1/sql/exec", json={"sql": "CREATE TABLE IF NOT EXISTS evt(x)"}))


SSE_PARSE = """
async (text) => {
  const { SseParser } = await import('/static/sse.js');
  const results = [];
  for (let cut = 0; cut <= text.length; cut += 1) {  // every split of the text into two chunks
    const frames = [];
    const parser = new SseParser((f) => frames.push(f));
    parser.push(text.slice(0, cut));
    parser.push(text.slice(cut));
    results.push(JSON.stringify(frames));
  }
  return results;
}
"""


def test_the_stream_parser_gives_the_same_frames_however_the_bytes_are_cut(browser_page):
    page = browser_page.goto("/")
    text = (":keepalive\n\n"
            "event:state_updated\nid:7\ndata:{\"a\":\"x:y\"}\n\n"
            "event: gap\ndata:{\"dropped\":2}\n\n"
            "data:line one\ndata:line two\n\n"
            "event:vector_added\nid:9\ndata:{}\n\n"
            "event:half")  # an unfinished frame is held back
    results = page.evaluate(SSE_PARSE, text)
    expected = [{"event": "state_updated", "id": "7", "data": '{"a":"x:y"}'},
                {"event": "gap", "id": None, "data": '{"dropped":2}'},
                {"event": "message", "id": None, "data": "line one\nline two"},
                {"event": "vector_added", "id": "9", "data": "{}"}]
    assert {r for r in results} == {json.dumps(expected, separators=(",", ":"))}


def test_every_event_type_shows_live(browser_page, client):
    page = browser_page.connect(API_KEY, "admin")
    browser_page.tab("stream")
    wait_text(page, "#stream-msg", "streaming from now")
    every_event_type(client)
    page.wait_for_selector("#stream-rows tr.ev-sql_exec", timeout=WAIT_MS)  # the last one written
    shown = [r[2] for r in rows(page, "#stream-rows")]
    assert sorted(set(shown)) == sorted(EVENT_TYPES)
    assert shown[0] == "sql_exec"  # newest on top
    page.click("#stream-rows tr:has-text('doc_upserted')")
    wait_text(page, "#stream-detail pre", '"collection": "evdocs"')


def test_filters_pause_and_clear(browser_page, client):
    page = browser_page.connect(API_KEY, "admin")
    browser_page.tab("stream")
    page.uncheck("#stream-types input[value=state_updated]")
    page.uncheck("#stream-types input[value=state_deleted]")
    page.fill("#stream-form [name=collection]", "only")
    page.click("#stream-form button[type=submit]")
    wait_text(page, "#stream-msg", "streaming from now")
    client.put("/v1/state/f:1", json={"value": 1})
    client.put("/v1/doc/other/x", json={})
    client.put("/v1/doc/only/x", json={})
    page.wait_for_selector("#stream-rows tr")
    assert [(r[2], r[3]) for r in rows(page, "#stream-rows")] == [("doc_upserted", "only / x")]

    page.click("#stream-pause")
    assert page.text_content("#stream-pause") == "Resume"
    client.put("/v1/doc/only/y", json={})
    wait_text(page, "#stream-count", "2 events received")
    assert len(rows(page, "#stream-rows")) == 1  # paused: counted, not drawn
    page.click("#stream-pause")
    page.wait_for_function("() => document.querySelectorAll('#stream-rows tr').length === 2")
    page.click("#stream-clear")
    assert rows(page, "#stream-rows") == [] and "0 events received" in page.text_content("#stream-count")

    # Replay from an offset: the earlier events come back.
    page.check("#stream-form [name=from][value=offset]")
    page.fill("#stream-form [name=offset]", "0")
    page.click("#stream-form button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#stream-rows tr').length === 2")
    assert [(r[2], r[3]) for r in rows(page, "#stream-rows")] == [("doc_upserted", "only / y"), ("doc_upserted", "only / x")]


LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({ type: 'longtask', buffered: true });
"""


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory):
    env = {"MAX_STATE_BATCH": str(REPLAY_BATCH)}
    with ServerProcess(tmp_path_factory.mktemp("replay") / "data", api_key=API_KEY, env=env) as proc:
        with httpx.Client(base_url=proc.base_url, headers=proc.headers, timeout=60) as c:
            value = {"v": "x" * 40}
            for start in range(0, REPLAY_EVENTS, REPLAY_BATCH):
                ops = [{"key": f"r:{i:07d}", "value": value} for i in range(start, start + REPLAY_BATCH)]
                c.post("/v1/state/batch_put", json={"operations": ops}).raise_for_status()
            metrics = parse_metrics(c.get("/v1/metrics").text)
            assert metrics["kissvdb_wal_first_offset"] <= 1, "retention dropped events: the replay would be shorter"
            assert metrics["kissvdb_wal_durable_offset"] == REPLAY_EVENTS
        yield proc


@pytest.mark.slow
def test_replaying_300k_events_keeps_the_page_responsive(chromium, replay_server):
    context = chromium.new_context(viewport=VIEWPORT)
    try:
        context.add_init_script(LONG_TASKS)
        browser_page = BrowserPage(context, replay_server.base_url)
        page = browser_page.connect(API_KEY, "admin")
        browser_page.tab("stream")
        page.check("#stream-form [name=from][value=offset]")
        page.fill("#stream-form [name=offset]", "0")
        page.click("#stream-form button[type=submit]")
        page.wait_for_function("() => parseInt(document.querySelector('#stream-count').textContent) > 20000", timeout=60_000)

        # Mid-replay, a click is answered within 3 s.
        started = time.monotonic()
        page.click("#stream-pause", timeout=CLICK_ANSWER_MS)
        page.wait_for_function("() => document.querySelector('#stream-pause').textContent === 'Resume'", timeout=CLICK_ANSWER_MS)
        assert time.monotonic() - started < CLICK_ANSWER_MS / 1000
        page.click("#stream-pause", timeout=CLICK_ANSWER_MS)

        page.wait_for_function(f"() => parseInt(document.querySelector('#stream-count').textContent) >= {REPLAY_EVENTS}",
                               timeout=REPLAY_WAIT_S * 1000, polling=500)
        page.wait_for_function(f"() => document.querySelectorAll('#stream-rows tr').length === {MAX_ROWS}")
        newest = rows(page, "#stream-rows")[0]
        assert newest[0] == str(REPLAY_EVENTS) and newest[3] == f"r:{REPLAY_EVENTS - 1:07d}"
        long_tasks = page.evaluate("window.__longTasks")
        assert max(long_tasks, default=0) <= LONG_TASK_MAX_MS, sorted(long_tasks)[-10:]
        browser_page.assert_clean()
    finally:
        context.close()

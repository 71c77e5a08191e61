"""Test helpers shared by every layer: one error-shape assertion and one bounded wait.

`assert_error` checks the contract's error body (`{"error", "message"}` + `field`) on anything
shaped like an httpx response (`status_code`, `headers`, `json()`), which includes the API
tests' `Reply`. `wait_until` polls a condition until a deadline, never sleeping blindly.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any, Awaitable, Callable

import trio


def _body(resp) -> Any:
    try:
        return resp.json()
    except (ValueError, json.JSONDecodeError) as exc:  # orjson's error subclasses ValueError
        raise AssertionError(f"error body is not JSON: {getattr(resp, 'content', b'')!r}") from exc


def assert_error(
    resp,
    status: int,
    code: str | None = None,
    field: str | None = None,
    message: str | None = None,
) -> dict:
    """Assert `resp` is the contract's JSON error with this status (and code/field/message).

    `field=None` does not check the field; pass the expected name to require it.
    Returns the body for further checks.
    """
    content = getattr(resp, "content", b"")
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {content!r}"
    content_type = resp.headers.get("content-type", "")
    assert content_type.startswith("application/json"), f"not JSON ({content_type}): {content!r}"
    body = _body(resp)
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert set(body) <= {"error", "message", "field"}, body
    if code is not None:
        assert body["error"] == code, body
    if message is not None:
        assert body["message"] == message, body
    if field is not None:
        assert body.get("field") == field, body
    return body


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    *,
    interval: float = 0.01,
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll `predicate` (sync or async) until it is true; fail after `timeout` seconds.

    On timeout, `describe()` (if given) is called for a message saying what was seen, e.g. a
    server log, so a failure explains itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            detail = describe() if describe is not None else ""
            raise AssertionError(f"condition not met within {timeout}s {detail}".rstrip())
        await trio.sleep(interval)

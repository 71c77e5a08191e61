"""Test helpers shared by every layer: one error-shape assertion and one bounded wait.

`assert_error` checks the contract's error body (`{"error", "message"}` + `field`) on anything
shaped like an httpx response (`status_code`, `headers`, `json()`). `wait_until` polls a
condition until a deadline, never sleeping blindly. `raw_request` sends bytes a well-behaved
client library refuses to send (headers with trailing spaces, non-ASCII, odd framing) and
parses the answer with h11.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any, Awaitable, Callable

import h11
import httpx
import orjson
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


class RawReply:
    """An answer read off a raw socket, shaped like an httpx response for `assert_error`."""

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], content: bytes):
        self.status_code = status_code
        self.headers = httpx.Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])
        self.content = content

    def json(self) -> Any:
        return orjson.loads(self.content)


async def raw_request(url: str, method: str, target: str, headers: list[tuple[str, bytes | str]],
                      body: bytes = b"", *, timeout: float = 10.0) -> RawReply:
    """One HTTP/1.1 request written byte for byte (headers as given, plus Host unless given,
    and Content-Length), on a fresh connection to `url` (`http://host:port`)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Connection: close",
             f"Content-Length: {len(body)}".encode()]
    if not any(name.lower() == "host" for name, _ in headers):
        lines.insert(1, f"Host: {host}:{port}".encode())
    for name, value in headers:
        lines.append(name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    conn = h11.Connection(h11.CLIENT)
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
        async with stream:
            await stream.send_all(data)
            conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))  # client state only
            conn.send(h11.EndOfMessage())
            response, parts = None, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    parts.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
    assert response is not None
    return RawReply(response.status_code, list(response.headers), b"".join(parts))

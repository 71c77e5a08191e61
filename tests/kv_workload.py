"""The worst legal KV data and the largest legal KV requests (issue 9, "Budgets").

Shared by the in-process budget test (tests/api/test_state_budgets.py) and the end-to-end ones
(tests/e2e/test_route_budgets.py), so both measure the same thing. Legal at the default limits:
1,000 keys (the most one list answers) of MAX_KEY_LEN bytes holding values of exactly
MAX_JSON_BYTES, written MAX_BODY_BYTES at a time; the largest batch_put (MAX_STATE_BATCH objects
of many keys, sorted when stored); a body of MAX_BODY_BYTES refused as a value over
MAX_JSON_BYTES.
"""

from __future__ import annotations

import orjson

from kissvdb.config import Settings

DEFAULTS = Settings()
STORED = 1000  # LIST_LIMIT_MAX: the most one list answers
PER_BATCH = 15  # values of MAX_JSON_BYTES per batch_put body of MAX_BODY_BYTES


def key(i: int) -> str:
    """A key of MAX_KEY_LEN bytes, in list order."""
    head = f"budget/{i:04d}/"
    return head + "k" * (DEFAULTS.max_key_len - len(head))


def largest_value(i: int) -> dict:
    """A value whose canonical JSON is exactly MAX_JSON_BYTES."""
    value = {"i": i, "pad": ""}
    value["pad"] = "p" * (DEFAULTS.max_json_bytes - len(orjson.dumps(value)))
    assert len(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)) == DEFAULTS.max_json_bytes
    return value


def largest_batch() -> bytes:
    """MAX_STATE_BATCH operations in a body of about MAX_BODY_BYTES, each value an object with
    as many keys as fit (reversed, so storing them sorts every one)."""
    per_op = DEFAULTS.max_body_bytes // DEFAULTS.max_state_batch - 64
    fields = per_op // len('"f0000":0,')
    value = {f"f{j:04d}": 0 for j in reversed(range(fields))}
    ops = [{"key": f"batch/{i:03d}", "value": value} for i in range(DEFAULTS.max_state_batch)]
    body = orjson.dumps({"operations": ops})
    assert DEFAULTS.max_body_bytes * 0.9 < len(body) <= DEFAULTS.max_body_bytes
    return body


def oversized_value_body() -> bytes:
    """MAX_BODY_BYTES of small numbers: parsed and made canonical, then refused (413 `value`)."""
    n = (DEFAULTS.max_body_bytes - len('{"value":[]}')) // 2
    body = b'{"value":[' + b",".join([b"0"] * n) + b"]}"
    assert len(body) <= DEFAULTS.max_body_bytes
    return body


def seed_batches(count: int = STORED) -> list[bytes]:
    """batch_put bodies writing keys 0..count-1 with the largest values, PER_BATCH per body."""
    bodies = []
    for start in range(0, count, PER_BATCH):
        ops = [{"key": key(i), "value": largest_value(i)} for i in range(start, min(start + PER_BATCH, count))]
        bodies.append(orjson.dumps({"operations": ops}))
        assert len(bodies[-1]) <= DEFAULTS.max_body_bytes
    return bodies

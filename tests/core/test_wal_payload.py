"""The hand-built CBOR of event payloads is byte for byte cbor2's, and falls back to cbor2
for anything it does not build itself."""

import random

import pytest

from kissvdb.events import (
    Float32Array,
    RawJson,
    _TAG_HEADS,
    decode_payload,
    encode_payload,
    encode_payload_cbor2,
)
from kissvdb.wal.payload import encode_fast

# Every head-size boundary of CBOR's integer and length encodings, on both sides.
INT_EDGES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
             -1, -24, -25, -256, -257, -65536, -65537, -2**32, -2**32 - 1, -2**64]
LENGTH_EDGES = [0, 1, 23, 24, 255, 256, 65535, 65536]


def _value(rnd: random.Random):
    kind = rnd.randrange(8)
    if kind == 0:
        return rnd.choice(INT_EDGES) if rnd.random() < 0.5 else rnd.randrange(-2**70, 2**70) // rnd.choice([1, 2**40])
    if kind == 1:
        n = rnd.choice(LENGTH_EDGES)
        alphabet = "ab\u00e9\u20ac\U0001f600"  # 1-, 2-, 3- and 4-byte UTF-8
        start = rnd.randrange(5)
        return (alphabet * (n // 5 + 2))[start : start + n]
    if kind == 2:
        return None
    if kind == 3:
        return rnd.random() < 0.5
    if kind == 4:
        return rnd.randbytes(rnd.choice(LENGTH_EDGES))
    if kind == 5:
        return RawJson(b'{"a":' + str(rnd.randrange(10**6)).encode() + b"}")
    if kind == 6:
        return Float32Array(rnd.randbytes(4 * rnd.choice([1, 6, 384])))
    return rnd.choice([1.5, float("inf"), [1, "x"], {"nested": 1}, 2**64, -2**64 - 1])  # cbor2's


def _event(rnd: random.Random):
    data = {}
    for i in range(rnd.choice([0, 1, 4, 5, 23, 24, 30])):
        data[f"f{i}" if rnd.random() < 0.9 else "\u00e9" * rnd.choice(LENGTH_EDGES[1:4])] = _value(rnd)
    ts = rnd.choice([0, 1_700_000_000_000, 2**63 - 1])
    return ts, rnd.choice(["state_updated", "doc_upserted", "t" * 24]), data


def test_generated_events_encode_exactly_as_cbor2_does():
    seed = random.randrange(2**32)
    rnd = random.Random(seed)
    fast = 0
    for _ in range(2000):
        ts, type_, data = _event(rnd)
        expected = encode_payload_cbor2(ts, type_, data)
        assert encode_payload(ts, type_, data) == expected, f"seed {seed}: {ts!r} {type_!r} {data!r}"
        record = decode_payload(7, expected)
        assert (record.ts_ms, record.type, record.data) == (ts, type_, data), f"seed {seed}"
        fast += encode_fast(ts, type_, data, _TAG_HEADS) is not None
    assert 200 < fast < 2000, fast  # both paths were exercised


@pytest.mark.parametrize("data", [
    {"key": "k", "revision": 1, "value": RawJson(b'"v"'), "expires_at_ms": None},
    {"key": "k", "reason": "ttl"},
    {"collection": "c", "id": "i", "vector": Float32Array(b"\0" * 16), "meta": RawJson(b"{}")},
    {"statement": "insert into t values (1)", "rows_affected": 1},
])
def test_engine_events_take_the_hand_built_path(data):
    assert encode_fast(1, "x", data, _TAG_HEADS) == encode_payload_cbor2(1, "x", data)


@pytest.mark.parametrize("data", [{"f": 1.5}, {"f": [1]}, {"f": {"g": 1}}, {1: "x"}, {"f": 2**64}, {"f": -2**64 - 1}])
def test_values_it_does_not_build_go_through_cbor2(data):
    assert encode_fast(1, "x", data, _TAG_HEADS) is None
    assert encode_payload(1, "x", data) == encode_payload_cbor2(1, "x", data)

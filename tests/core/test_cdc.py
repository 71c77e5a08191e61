"""Change stream filters and wire encoding (kissvdb.cdc): no event loop, no files."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from kissvdb.cdc import (
    KEEPALIVE,
    EventFilter,
    event_json,
    float32_json,
    gap_frame,
    sse_frame,
)
from kissvdb.events import (
    EventRecord,
    Float32Array,
    RawJson,
    decode_payload,
    encode_payload,
)


def kv_put(offset: int, key: str) -> EventRecord:
    return EventRecord(
        offset,
        1767000000000,
        "state_updated",
        {"key": key, "revision": 1, "value": RawJson(b"{}"), "expires_at_ms": None},
    )


def vec_added(offset: int, collection: str) -> EventRecord:
    return EventRecord(
        offset,
        1767000000000,
        "vector_added",
        {
            "collection": collection,
            "id": "a",
            "vector": Float32Array(struct.pack("<2f", 0.5, 1.0)),
            "meta": None,
        },
    )


def f32(*values: float) -> Float32Array:
    return Float32Array(np.array(values, dtype="<f4").tobytes())


# --- filters ---------------------------------------------------------------------------------


def test_no_filter_matches_everything():
    flt = EventFilter.from_query(None, None, None)
    assert flt.is_open
    assert flt.matches(kv_put(1, "a")) and flt.matches(vec_added(2, "c"))


def test_types_is_exact_and_trimmed():
    flt = EventFilter.from_query(" state_updated , vector_added", None, None)
    assert flt.types == frozenset({"state_updated", "vector_added"})
    assert flt.matches(kv_put(1, "a"))
    assert flt.matches(vec_added(2, "c"))
    assert not flt.matches(EventRecord(3, 0, "state_deleted", {"key": "a", "reason": "explicit"}))
    # Exact match, not prefix.
    assert not EventFilter.from_query("state", None, None).matches(kv_put(1, "a"))


def test_empty_types_matches_nothing():
    flt = EventFilter.from_query("", None, None)
    assert flt.types == frozenset()
    assert not flt.is_open
    assert not flt.matches(kv_put(1, "a"))
    assert not flt.matches(vec_added(2, "c"))


def test_key_prefix_requires_a_string_key():
    flt = EventFilter.from_query(None, "job:", None)
    assert flt.matches(kv_put(1, "job:1"))
    assert not flt.matches(kv_put(2, "user:1"))
    assert not flt.matches(vec_added(3, "job:"))  # no key: vector events are excluded
    assert not flt.matches(EventRecord(4, 0, "state_updated", {"key": 7}))
    # An empty prefix is still a condition: it needs a string key.
    empty = EventFilter.from_query(None, "", None)
    assert empty.matches(kv_put(5, "x")) and not empty.matches(vec_added(6, "c"))


def test_collection_is_exact_and_excludes_kv():
    flt = EventFilter.from_query(None, None, "docs")
    assert flt.matches(vec_added(1, "docs"))
    assert not flt.matches(vec_added(2, "docs2"))
    assert not flt.matches(kv_put(3, "docs"))


def test_all_conditions_must_hold():
    flt = EventFilter.from_query("vector_added", None, "c")
    assert flt.matches(vec_added(1, "c"))
    assert not flt.matches(vec_added(2, "d"))
    assert not EventFilter.from_query("state_updated", None, "c").matches(vec_added(3, "c"))


# --- event JSON --------------------------------------------------------------------------------


def test_event_json_matches_the_contract_example():
    record = EventRecord(
        42,
        1767000000000,
        "state_updated",
        {
            "value": RawJson(b'{"progress":1}'),
            "key": "job:1",
            "revision": 3,
            "expires_at_ms": None,
        },
    )
    assert event_json(record) == (
        b'{"offset":42,"ts_ms":1767000000000,"type":"state_updated","data":'
        b'{"expires_at_ms":null,"key":"job:1","revision":3,"value":{"progress":1}}}'
    )


def test_raw_json_is_embedded_verbatim():
    # Not re-parsed: spacing, key order and number spelling survive as the bytes say.
    raw = RawJson(b'{"b":1.50,"a":[1e3]}')
    out = event_json(EventRecord(1, 2, "state_updated", {"key": "k", "value": raw}))
    assert out.endswith(b'"data":{"key":"k","value":{"b":1.50,"a":[1e3]}}}')


def test_nested_dicts_are_sorted_and_tagged_values_inside_them_encoded():
    record = EventRecord(
        1,
        2,
        "x",
        {"z": {"b": 1, "a": {"d": 2, "c": f32(0.25)}}, "a": [RawJson(b"true"), {"y": 1, "x": 0}]},
    )
    assert event_json(record).endswith(
        b'"data":{"a":[true,{"x":0,"y":1}],"z":{"a":{"c":[0.25],"d":2},"b":1}}}'
    )


def test_vectors_print_shortest_float32():
    assert float32_json(f32(0.1, 1.0, 0.3, -0.0, 16777216.0)) == (
        b"[0.1,1.0,0.3,-0.0,16777216.0]"
    )
    assert float32_json(Float32Array(b"")) == b"[]"
    record = vec_added(7, "c")
    assert event_json(record) == (
        b'{"offset":7,"ts_ms":1767000000000,"type":"vector_added","data":'
        b'{"collection":"c","id":"a","meta":null,"vector":[0.5,1.0]}}'
    )


def test_vectors_extremes_are_valid_json_and_round_trip():
    values = [3.4028235e38, -3.4028235e38, 1e-45, 1.1754944e-38, 1e20, 1e-7, 123456790.0]
    text = float32_json(f32(*values))
    assert np.array_equal(
        np.array(orjson.loads(text), dtype=np.float32), np.array(values, dtype=np.float32)
    )


def _significant_digits(text: bytes) -> int:
    mantissa = text.split(b"e")[0].lstrip(b"-").replace(b".", b"")
    return len(mantissa.strip(b"0")) or 1


def test_float32_printing_is_shortest_and_round_trips_for_random_bit_patterns():
    # Random bit patterns cover every exponent, subnormals and both signs. Two properties:
    # each printed number reads back (via float64, as JSON clients parse) to the same float32
    # bits, and it has as few significant digits as numpy's own shortest repr (Dragon4).
    seed = 20240601
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    text = float32_json(Float32Array(values.astype("<f4").tobytes()))

    back = np.array(orjson.loads(text), dtype=np.float64).astype(np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32)), f"seed {seed}"

    printed = text[1:-1].split(b",")
    reference = values.astype("S32")  # numpy's shortest unique repr, one element at a time
    longer = [
        (p, r)
        for p, r in zip(printed, reference.tolist())
        if _significant_digits(p) > _significant_digits(r)
    ]
    assert not longer, f"seed {seed}: {longer[:5]}"


def test_event_json_survives_the_wal_payload_round_trip():
    record = vec_added(9, "c")
    payload = encode_payload(record.ts_ms, record.type, record.data)
    assert event_json(decode_payload(9, payload)) == event_json(record)


# --- frames ------------------------------------------------------------------------------------


def test_sse_frame_has_no_space_after_colons():
    record = kv_put(42, "job:1")
    json_bytes = event_json(record)
    assert sse_frame(record, json_bytes) == (
        b"event:state_updated\nid:42\ndata:" + json_bytes + b"\n\n"
    )


def test_gap_frame_has_no_id_line():
    assert gap_frame(101, 250, 150) == (
        b'event:gap\ndata:{"dropped":150,"from_offset":101,"to_offset":250}\n\n'
    )
    body = gap_frame(1, 1, 1).split(b"data:")[1]
    assert orjson.loads(body) == {"dropped": 1, "from_offset": 1, "to_offset": 1}


def test_keepalive_is_a_comment():
    assert KEEPALIVE == b":keepalive\n\n"


@pytest.mark.parametrize("bad", [b"\x00", b"\x00\x00\x00\x00\x00"])
def test_a_vector_that_is_not_whole_float32s_is_refused(bad):
    with pytest.raises(ValueError):
        float32_json(Float32Array(bad))

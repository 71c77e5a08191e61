"""Change stream encoding: which events a subscriber wants, and the bytes it is sent.

This module owns the change stream's wire format (API-CONTRACT §4.2) and its filters (§4.1).
It is pure: records in, bytes out. It never reads the log, never waits and never imports
trio; `kissvdb.actors.cdc` decides *when* to send what.

Guarantees:
- `event_json` is deterministic: fields `offset, ts_ms, type, data` in that order, `data` keys
  (and keys of dicts nested in it) sorted, compact. `RawJson` values are embedded byte for byte
  (they are canonical already); `Float32Array` vectors become JSON lists in the shortest form
  that reads back as the same float32 (`0.1`, not `0.10000000149011612`), as the original did.
- Frames follow the original byte for byte: `event:`, `id:`, `data:` with no space after the
  colon; a `gap` frame has no `id:` line, so it never moves a browser's Last-Event-ID.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from kissvdb.events import EventRecord, Float32Array, RawJson

KEEPALIVE = b":keepalive\n\n"

# Vectors are little-endian on disk and in events; numpy needs the native byte order for orjson.
_FLOAT32_LE = np.dtype("<f4")
_DATA_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What one subscriber asked for. Every given condition must hold (§4.1).

    - `types`: the event type must be one of them, exactly. An empty set matches nothing
      (the contract's `types=`).
    - `key_prefix`: `data["key"]` must be a string starting with it; events without a key
      (all vector events) are excluded. An empty prefix still requires a string key.
    - `collection`: `data["collection"]` must equal it; KV events are excluded.
    `None` means "no condition". `gap` notices are not records and bypass filters.
    """

    types: frozenset[str] | None = None
    key_prefix: str | None = None
    collection: str | None = None

    @classmethod
    def from_query(
        cls, types: str | None, key_prefix: str | None, collection: str | None
    ) -> EventFilter:
        """Build a filter from the raw query parameters of `/v1/stream`.

        `types` is a comma list; each name is trimmed and empty names are dropped, so `types=`
        yields the empty set, which matches nothing.
        """
        parsed = None
        if types is not None:
            parsed = frozenset(name for name in (t.strip() for t in types.split(",")) if name)
        return cls(parsed, key_prefix, collection)

    @property
    def is_open(self) -> bool:
        """True when every event matches (the common case, checked without looking at data)."""
        return self.types is None and self.key_prefix is None and self.collection is None

    def matches(self, record: EventRecord) -> bool:
        if self.types is not None and record.type not in self.types:
            return False
        if self.key_prefix is not None:
            key = record.data.get("key")
            if not isinstance(key, str) or not key.startswith(self.key_prefix):
                return False
        if self.collection is not None:
            # A non-string never equals the (string) collection name.
            if record.data.get("collection") != self.collection:
                return False
        return True


def float32_array(value: Float32Array) -> np.ndarray:
    """The vector as a native-order float32 array (a view when the host is little-endian)."""
    return np.frombuffer(value, dtype=_FLOAT32_LE).astype(np.float32, copy=False)


def float32_json(value: Float32Array) -> bytes:
    """A vector as a JSON list, each element in its shortest float32 round-trip form.

    orjson formats numpy float32 arrays with the float32 variant of Ryu (the algorithm
    serde_json uses for the original's `f32`), in native code: about 30 ns per element, where
    formatting each element from Python costs ~0.5 µs. NaN and infinities become `null`, as
    orjson does for floats; the write path never lets them into an event.
    """
    return orjson.dumps(float32_array(value), option=orjson.OPT_SERIALIZE_NUMPY)


def _json_ready(value):
    # Converts the two tagged types to things orjson writes as we want; everything else
    # (str, int, float, bool, None, lists, dicts) orjson writes itself.
    if isinstance(value, RawJson):
        return orjson.Fragment(bytes(value))
    if isinstance(value, Float32Array):
        return float32_array(value)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def event_json(record: EventRecord) -> bytes:
    """Compact JSON of the whole record: `{"offset","ts_ms","type","data"}` in that order.

    The data object is encoded on its own with sorted keys (that option would also sort the
    outer fields, whose contract order is not alphabetical) and embedded as a fragment.
    """
    data = orjson.dumps(_json_ready(record.data), option=_DATA_OPTIONS)
    return orjson.dumps(
        {
            "offset": record.offset,
            "ts_ms": record.ts_ms,
            "type": record.type,
            "data": orjson.Fragment(data),
        }
    )


def sse_frame(record: EventRecord, json_bytes: bytes) -> bytes:
    """One SSE event for `record`, whose JSON is `json_bytes` (from `event_json`)."""
    return b"event:%s\nid:%d\ndata:%s\n\n" % (record.type.encode(), record.offset, json_bytes)


def gap_frame(from_offset: int, to_offset: int, dropped: int) -> bytes:
    """The notice that offsets `from_offset..to_offset` (inclusive) are no longer retained."""
    return b'event:gap\ndata:{"dropped":%d,"from_offset":%d,"to_offset":%d}\n\n' % (
        dropped,
        from_offset,
        to_offset,
    )

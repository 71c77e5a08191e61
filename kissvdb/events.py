"""Event records: what the WAL stores and the change stream carries.

An event is `EventRecord(offset, ts_ms, type, data)`. In the WAL the payload is CBOR
`[ts_ms, type, data]`; the offset is not stored in the payload because it follows from the
record's position (segment first offset + index), so it can never disagree with it.

Two values inside `data` get CBOR tags of their own so they cross the log without re-parsing:
- `RawJson`: JSON text the user sent, already canonical (keys sorted). Tag 262 ("embedded JSON").
  KV values and documents travel like this, so a put parses the user's JSON once and the
  change stream embeds the bytes as they are.
- `Float32Array`: a vector as packed little-endian float32. Tag 85 (RFC 8746, float32 LE).
"""

from __future__ import annotations

from typing import NamedTuple

import cbor2

from kissvdb.wal.payload import encode_fast

# Every event type, here and nowhere else (docs/openapi.yaml is tested against this list).
STATE_UPDATED = "state_updated"  # KV: {key, value, revision, expires_at_ms}
STATE_DELETED = "state_deleted"  # KV: {key, reason: explicit | ttl}
DOC_UPSERTED = "doc_upserted"  # documents: {collection, id, doc, revision, expires_at_ms}
DOC_DELETED = "doc_deleted"  # documents: {collection, id, reason}
SQL_EXEC = "sql_exec"  # user SQL, after SQLite committed: {statement, rows_affected}
VECTOR_COLLECTION_CREATED = "vector_collection_created"  # {collection, dim, metric, index}
VECTOR_COLLECTION_DELETED = "vector_collection_deleted"  # {collection}
VECTOR_ADDED = "vector_added"  # {collection, id, vector, meta}
VECTOR_UPSERTED = "vector_upserted"  # {collection, id, vector, meta}
VECTOR_UPDATED = "vector_updated"  # {collection, id, vector, meta}
VECTOR_DELETED = "vector_deleted"  # {collection, id}

KV_EVENTS = (STATE_UPDATED, STATE_DELETED)
DOC_EVENTS = (DOC_UPSERTED, DOC_DELETED)
VECTOR_MUTATIONS = (VECTOR_ADDED, VECTOR_UPSERTED, VECTOR_UPDATED)
VECTOR_EVENTS = VECTOR_MUTATIONS + (VECTOR_DELETED,)  # of one vector (not the collection's)
# Every event type the WAL holds: what the change stream can carry. The dashboard's list
# (api/static/stream.js) and docs/openapi.yaml are tested against it.
EVENT_TYPES = KV_EVENTS + DOC_EVENTS + (SQL_EXEC, VECTOR_COLLECTION_CREATED, VECTOR_COLLECTION_DELETED) + VECTOR_EVENTS


TAG_EMBEDDED_JSON = 262
TAG_FLOAT32_LE = 85


class RawJson(bytes):
    """Canonical JSON text of a user value (object keys sorted, compact)."""

    __slots__ = ()


class Float32Array(bytes):
    """A vector packed as little-endian float32."""

    __slots__ = ()


class EventRecord(NamedTuple):
    """Immutable; a NamedTuple because the WAL writer builds one per event (a frozen dataclass
    costs 4x as much to build)."""

    offset: int
    ts_ms: int
    type: str
    data: dict


def _tagged(value):
    # cbor2 encodes bytes subclasses as plain bytes, so the tags are applied here. Tagged values
    # only ever sit at the top level of an event's `data`.
    if isinstance(value, RawJson):
        return cbor2.CBORTag(TAG_EMBEDDED_JSON, bytes(value))
    if isinstance(value, Float32Array):
        return cbor2.CBORTag(TAG_FLOAT32_LE, bytes(value))
    return value


def _tag_hook(*args):
    # cbor2 5 calls hook(decoder, tag); cbor2 6 calls hook(tag, immutable).
    tag = args[0] if isinstance(args[0], cbor2.CBORTag) else args[1]
    if tag.tag == TAG_EMBEDDED_JSON:
        return RawJson(tag.value)
    if tag.tag == TAG_FLOAT32_LE:
        return Float32Array(tag.value)
    return tag


# The encoded tag heads that kissvdb/wal/payload.py writes before a tagged byte string.
_TAG_HEADS = {RawJson: b"\xd9\x01\x06", Float32Array: b"\xd8\x55"}
assert _TAG_HEADS[RawJson] == cbor2.dumps(cbor2.CBORTag(TAG_EMBEDDED_JSON, b""))[:-1]
assert _TAG_HEADS[Float32Array] == cbor2.dumps(cbor2.CBORTag(TAG_FLOAT32_LE, b""))[:-1]


def encode_payload(ts_ms: int, type_: str, data: dict) -> bytes:
    """The WAL payload of one event: by hand for the usual shapes (the same bytes, half the
    work; see kissvdb/wal/payload.py), else with cbor2."""
    payload = encode_fast(ts_ms, type_, data, _TAG_HEADS)
    if payload is None:
        payload = encode_payload_cbor2(ts_ms, type_, data)
    return payload


def encode_payload_cbor2(ts_ms: int, type_: str, data: dict) -> bytes:
    """The WAL payload of one event, all through cbor2: the reference `encode_payload` matches."""
    return cbor2.dumps([ts_ms, type_, {k: _tagged(v) for k, v in data.items()}])


def decode_payload(offset: int, payload: bytes) -> EventRecord:
    ts_ms, type_, data = cbor2.loads(payload, tag_hook=_tag_hook)
    return EventRecord(offset, ts_ms, type_, data)

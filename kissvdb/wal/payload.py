"""The CBOR bytes of an event payload `[ts_ms, type, data]`, built without cbor2 when it can be.

Every write encodes one payload per event on the event loop, and cbor2 spends about twice the
work of this module on the small maps events are (a few str keys, each mapped to an int, a
str, None, a bool, bytes or a tagged byte string). So `encode_fast` builds those by hand and
returns None for anything else (a float, a nested list or map, an int beyond 64 bits, a str
subclass...), which the caller encodes with cbor2 instead.

What it guarantees: its output is byte for byte what `cbor2.dumps` gives for the same event
(shortest-form heads, definite lengths, map items in insertion order, the two tags of
kissvdb/events.py), so the WAL format does not depend on which path wrote a record; a test
compares both on generated events. It never decodes: cbor2 reads every record.
"""

from __future__ import annotations

import struct

_ONE_BYTE = [bytes((i,)) for i in range(256)]
_HEAD_8 = struct.Struct(">BB").pack
_HEAD_16 = struct.Struct(">BH").pack
_HEAD_32 = struct.Struct(">BI").pack
_HEAD_64 = struct.Struct(">BQ").pack
_U64_LIMIT = 1 << 64

UNSIGNED, NEGATIVE, BYTES, TEXT, ARRAY, MAP = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
_NONE, _TRUE, _FALSE = b"\xf6", b"\xf5", b"\xf4"
_ARRAY_OF_3 = b"\x83"

# Text heads of the strings every event repeats (field names, event types), cached as they are
# met; bounded so that user-chosen strings passed as keys cannot grow it without limit.
_TEXT_CACHE: dict[str, bytes] = {}
_TEXT_CACHE_MAX = 1024


def _head(major: int, n: int) -> bytes:
    """The shortest CBOR head for major type `major` and argument 0 <= n < 2**64."""
    if n < 24:
        return _ONE_BYTE[major | n]
    if n < 0x100:
        return _HEAD_8(major | 24, n)
    if n < 0x10000:
        return _HEAD_16(major | 25, n)
    if n < 0x100000000:
        return _HEAD_32(major | 26, n)
    return _HEAD_64(major | 27, n)


def _text(s: str) -> bytes:
    encoded = _TEXT_CACHE.get(s)
    if encoded is None:
        raw = s.encode("utf-8")
        encoded = _head(TEXT, len(raw)) + raw
        if len(_TEXT_CACHE) < _TEXT_CACHE_MAX:
            _TEXT_CACHE[s] = encoded
    return encoded


def _int(n: int) -> bytes | None:
    if 0 <= n < 24:
        return _ONE_BYTE[n]
    if 0 <= n < _U64_LIMIT:
        return _head(UNSIGNED, n)
    if -_U64_LIMIT <= n < 0:
        return _head(NEGATIVE, -1 - n)
    return None  # a bignum: cbor2's business


def encode_fast(ts_ms: int, type_: str, data: dict, tags: dict[type, bytes]) -> bytes | None:
    """`[ts_ms, type_, data]` as CBOR, or None if some value needs cbor2.

    `tags` maps a bytes subclass to the encoded tag head written before its byte string.
    """
    if type(ts_ms) is not int or type(type_) is not str or type(data) is not dict:
        return None
    ts = _int(ts_ms)
    if ts is None:
        return None
    n = len(data)
    out = [_ARRAY_OF_3, ts, _text(type_), _ONE_BYTE[MAP | n] if n < 24 else _head(MAP, n)]
    append = out.append
    for key, value in data.items():
        if type(key) is not str:
            return None
        append(_text(key))
        t = type(value)
        if t is str:
            raw = value.encode("utf-8")
            size = len(raw)
            append(_ONE_BYTE[TEXT | size] if size < 24 else _head(TEXT, size))
            append(raw)
        elif t is int:
            encoded = _int(value)
            if encoded is None:
                return None
            append(encoded)
        elif value is None:
            append(_NONE)
        elif t is bool:
            append(_TRUE if value else _FALSE)
        elif t is bytes:
            append(_head(BYTES, len(value)))
            append(value)
        else:
            tag = tags.get(t)
            if tag is None:
                return None
            append(tag)
            append(_head(BYTES, len(value)))
            append(value)
    return b"".join(out)

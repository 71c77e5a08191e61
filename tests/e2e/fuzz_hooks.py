"""CBOR for schemathesis, loaded through schemathesis.toml's `hooks` (the test and the long run).

The vector routes accept `application/cbor` bodies and answer in CBOR when asked to. Without a
serializer schemathesis sends those routes no CBOR at all, and without a deserializer it cannot
check a CBOR answer against the spec; with these two it does both, as it does for JSON.
"""

from __future__ import annotations

from typing import Any

import cbor2
import schemathesis

CBOR = "application/cbor"


@schemathesis.serializer(CBOR)
def to_cbor(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return cbor2.dumps(value)


@schemathesis.deserializer(CBOR)
def from_cbor(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    return cbor2.loads(response.content)

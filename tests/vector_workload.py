"""The worst legal vector data and the largest legal vector requests (issue 9, "Budgets").

Shared by the in-process budget test (tests/api/test_vector_budgets.py) and the end-to-end one
(tests/e2e/test_route_budgets.py). Legal at the default limits, except that the largest
search_batch (MAX_VECTOR_BATCH queries of MAX_VECTOR_DIM float32s, 4.2 MB of CBOR) needs a
larger MAX_BODY_BYTES than the default 1 MiB: the tests run with BODY_BYTES_MAX.

- Stored: STORED vectors of MAX_VECTOR_DIM, each with a meta of exactly MAX_JSON_BYTES of small
  numbers (the slowest to parse, and to write again as CBOR) and a group field of its own, so a
  group_by returns MAX_K groups: 16 MB of metas per query, 4 GB for a batch.
- Searches: MAX_VECTOR_BATCH queries x MAX_K with include_meta and group_by (refused: past
  VECTOR_RESULT_BYTES_MAX), the same without metas (answered: 256 x 256 hits), and one search
  x MAX_K with metas (answered: 16 MB).
"""

from __future__ import annotations

import cbor2
import numpy as np
import orjson

from kissvdb.config import Settings

DEFAULTS = Settings()
COLLECTION = "worst"
DIM = DEFAULTS.max_vector_dim
STORED = 512
BODY_BYTES_MAX = 5 << 20  # lets the largest search_batch in (see the module docstring)
CBOR_HEADERS = {"Content-Type": "application/cbor"}


def worst_meta(i: int) -> dict:
    """A meta of exactly MAX_JSON_BYTES canonical bytes: group `g` = i, then small numbers."""
    meta = {"g": i, "pad": []}
    room = DEFAULTS.max_json_bytes - len(orjson.dumps(meta))
    meta["pad"] = [0] * ((room + 1) // 2)
    meta["pad"][0] = 10 ** (room - 2 * len(meta["pad"]) + 1) if room % 2 == 0 else 0
    assert len(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)) == DEFAULTS.max_json_bytes, len(orjson.dumps(meta))
    return meta


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype("<f4")


def seed_bodies() -> list[bytes]:
    """CBOR upsert_batch bodies of at most the default MAX_BODY_BYTES holding the STORED vectors."""
    per_body = DEFAULTS.max_body_bytes // (DIM * 4 + DEFAULTS.max_json_bytes + 256)
    rows = vectors(STORED, 1)
    bodies = []
    for start in range(0, STORED, per_body):
        items = [{"id": f"v{i:04d}", "vector": rows[i].tobytes(), "meta": worst_meta(i)}
                 for i in range(start, min(start + per_body, STORED))]
        bodies.append(cbor2.dumps({"items": items}))
        assert len(bodies[-1]) <= DEFAULTS.max_body_bytes
    return bodies


def search_batch(*, include_meta: bool) -> bytes:
    """MAX_VECTOR_BATCH queries of MAX_VECTOR_DIM, k = MAX_K, grouped on `g`, as CBOR."""
    queries = [{"vector": q.tobytes(), "k": DEFAULTS.max_k, "include_meta": include_meta, "group_by": "g"}
               for q in vectors(DEFAULTS.max_vector_batch, 2)]
    body = cbor2.dumps({"queries": queries})
    assert DEFAULTS.max_body_bytes < len(body) <= BODY_BYTES_MAX
    return body


def largest_search() -> bytes:
    """One query, k = MAX_K, with metas, grouped: 256 metas of MAX_JSON_BYTES come back."""
    return cbor2.dumps({"vector": vectors(1, 3)[0].tobytes(), "k": DEFAULTS.max_k, "include_meta": True,
                        "group_by": "g"})


def largest_json_upsert(body_bytes_max: int = DEFAULTS.max_body_bytes) -> bytes:
    """An upsert_batch of `body_bytes_max` of JSON: vectors of MAX_VECTOR_DIM numbers to parse.
    At the default MAX_BODY_BYTES: parsing a body is one call on the loop, which grows with the
    setting (~6 ms per MiB), and BODY_BYTES_MAX is raised for the search_batch alone."""
    rows = vectors(DEFAULTS.max_vector_batch, 4).round(6)
    items = []
    size = len(b'{"items":[]}')
    for i, row in enumerate(rows):
        item = orjson.dumps({"id": f"json{i:03d}", "vector": row.tolist(), "meta": {"g": -1 - i}})
        if size + len(item) + 1 > body_bytes_max:
            break
        items.append(item)
        size += len(item) + 1
    return b'{"items":[' + b",".join(items) + b"]}"

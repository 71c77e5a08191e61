"""The worst legal document data and the largest legal document requests (issue 9, "Budgets").

Shared by the in-process budget test (event-loop hold, tests/api/test_doc_budgets.py) and the
end-to-end one (`/v1/health` on another connection, tests/e2e/test_doc_budgets.py), so both
measure the same thing. Every body here is legal at the default limits (MAX_JSON_BYTES,
MAX_BODY_BYTES, MAX_DOC_FIND, 1,000 values per `$in`, 256 filter conditions, 4 sort fields)
or exactly one step past one of them.

- Stored: documents just under MAX_JSON_BYTES with ~1,280 fields each, so every path lookup in
  a find walks a long object.
- Finds: the largest answer (100 of those documents, sorted on 4 late fields), the slowest
  filter (255 `$ne` on late fields and one condition nothing matches: every field of every
  document is read until the time limit stops it), and `$in`/`$nin` at their maximum.
- Writes: a document of MAX_JSON_BYTES, and a body of MAX_BODY_BYTES that is refused (413)
  only after it was read and parsed.
"""

from __future__ import annotations

import orjson

from kissvdb.config import Settings
from kissvdb.documents.query import FILTER_TERMS_MAX, IN_VALUES_MAX, SORT_FIELDS_MAX

DEFAULTS = Settings()
FIELDS = 1280
COLLECTION = "worst"


def worst_doc(i: int) -> dict:
    """A document of ~MAX_JSON_BYTES canonical bytes with FIELDS fields."""
    doc = {f"f{j:04d}": f"{i:08d}" + "y" * 32 for j in range(FIELDS)}
    doc["n"] = i
    size = len(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    doc["pad"] = "p" * (DEFAULTS.max_json_bytes - size - len(',"pad":""'))
    assert len(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)) == DEFAULTS.max_json_bytes
    return doc


def late(j: int) -> str:
    return f"f{FIELDS - 1 - j:04d}"


def largest_answer_find() -> dict:
    """Every document matches; 100 come back (MAX_DOC_FIND), sorted on late fields."""
    sort = [late(0), "-" + late(1), late(2), "-n"][:SORT_FIELDS_MAX]
    return {"filter": {"n": {"$gte": 0}}, "sort": sort, "limit": DEFAULTS.max_doc_find}


def slowest_find() -> dict:
    """FILTER_TERMS_MAX conditions that read late fields of every document, matching nothing."""
    flt = {late(j): {"$ne": 1} for j in range(FILTER_TERMS_MAX - 1)}
    flt["n"] = {"$lt": -1}
    return {"filter": flt, "limit": DEFAULTS.max_doc_find}


def largest_in_find() -> dict:
    """`$in` and `$nin` with IN_VALUES_MAX objects each, on two fields."""
    objects = [{"o": j} for j in range(IN_VALUES_MAX)]
    numbers = list(range(IN_VALUES_MAX))
    return {"filter": {"k": {"$nin": objects}, "n": {"$in": numbers}}, "sort": "-n",
            "limit": DEFAULTS.max_doc_find}


def largest_body_find() -> bytes:
    """A find body of MAX_BODY_BYTES: the largest filter plus an ignored field filling the rest."""
    body = slowest_find()
    body["filler"] = ""
    size = len(orjson.dumps(body))
    body["filler"] = "z" * (DEFAULTS.max_body_bytes - size)
    raw = orjson.dumps(body)
    assert len(raw) == DEFAULTS.max_body_bytes
    return raw


def oversized_put_body() -> bytes:
    """MAX_BODY_BYTES of small numbers: parsed, then refused as a document over MAX_JSON_BYTES."""
    n = (DEFAULTS.max_body_bytes - 2) // 2
    raw = b"[" + b",".join([b"0"] * n) + b"]"
    assert len(raw) <= DEFAULTS.max_body_bytes
    return raw


FINDS = (largest_answer_find, slowest_find, largest_in_find)

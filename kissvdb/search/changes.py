"""Between `/search` documents and the vector collection that makes them durable.

Every `/search` document is stored in one regular vector collection (SEARCH_COLLECTION)
through the WAL: an ingest is an upsert batch, a delete a delete batch, so documents survive a
crash, show on the change stream as `vector_upserted` / `vector_deleted`, and get the
collection's checkpoints, compaction and indexes for free. This module is the two directions:
- `vector_items(docs)`: what an ingest upserts: id = the u32 as a decimal string, the vector,
  meta = canonical JSON `{"content": ..., "metadata": {...}}`;
- `changes(records, collection)`: what the FTS store (store.py) applies from durable events:
  a Put per upsert/add/update of the collection, a Remove per delete, a Clear when the
  collection is deleted.
Guarantees: `changes` never raises on event data (users cannot write the collection through
`/v1/vector`, but a data directory may hold one made before that rule): an id that is not a u32 is skipped,
content that is not a string is "", metadata fields of the wrong type are dropped.
Never does: I/O.
"""

from __future__ import annotations

from typing import Iterable

import orjson

from kissvdb.events import VECTOR_COLLECTION_DELETED as COLLECTION_DELETED
from kissvdb.events import VECTOR_DELETED as DELETED
from kissvdb.events import VECTOR_MUTATIONS as MUTATIONS
from kissvdb.events import EventRecord, RawJson

from .request import METADATA_FIELDS, U32_MAX, U64_MAX, SearchDocument
from .store import Clear, Put, Remove

SEARCH_COLLECTION = "_search"  # the vector collection holding /search documents


def document_meta(doc: SearchDocument) -> RawJson:
    """The meta stored beside a document's vector: its content and metadata, canonical JSON."""
    return RawJson(orjson.dumps({"content": doc.content, "metadata": doc.metadata}, option=orjson.OPT_SORT_KEYS))


def vector_items(docs: list[SearchDocument]) -> list[tuple[str, object, RawJson]]:
    """(id, float32 vector, meta) of each document, for the collection's upsert batch."""
    return [(str(doc.id), doc.vector, document_meta(doc)) for doc in docs]


def _doc_id(value) -> int | None:
    if type(value) is not str or not value.isdigit() or not value.isascii() or len(value) > 10:
        return None
    doc_id = int(value)
    return doc_id if doc_id <= U32_MAX else None


def lenient_metadata(value) -> dict:
    """The known metadata fields of the right type; anything else is dropped."""
    if type(value) is not dict:
        return {}
    out = {}
    for name, kind in METADATA_FIELDS:
        v = value.get(name)
        if kind == "str" and type(v) is str:
            out[name] = v
        elif kind != "str" and type(v) is int and 0 <= v <= (U32_MAX if kind == "u32" else U64_MAX):
            out[name] = v
    return out


def put_of(doc_id: int, meta: bytes | None, seq: int) -> Put:
    """The Put for a stored vector of the collection (also what a rebuild reads)."""
    try:
        parsed = orjson.loads(bytes(meta)) if meta is not None else None  # orjson refuses bytes subclasses
    except orjson.JSONDecodeError:
        parsed = None
    parsed = parsed if type(parsed) is dict else {}
    content = parsed.get("content")
    return Put(doc_id, content if type(content) is str else "", lenient_metadata(parsed.get("metadata")), seq)


def put_of_row(vid: str, meta: bytes | None, seq: int) -> Put | None:
    """The Put for a live row of the collection (a rebuild reads these); None for an id that is
    not a u32."""
    doc_id = _doc_id(vid)
    return None if doc_id is None else put_of(doc_id, meta, seq)


def changes(records: Iterable[EventRecord], collection: str = SEARCH_COLLECTION) -> list[Put | Remove | Clear]:
    """The store changes of the durable events that concern `collection`, in offset order."""
    out: list[Put | Remove | Clear] = []
    for record in records:
        data = record.data
        if type(data) is not dict or data.get("collection") != collection:
            continue
        if record.type == COLLECTION_DELETED:
            out.append(Clear())
            continue
        if record.type not in MUTATIONS and record.type != DELETED:
            continue
        doc_id = _doc_id(data.get("id"))
        if doc_id is None:
            continue
        if record.type == DELETED:
            out.append(Remove(doc_id))
        else:
            out.append(put_of(doc_id, data.get("meta"), record.offset))
    return out

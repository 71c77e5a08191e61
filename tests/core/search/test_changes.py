"""From /search documents to vector items and back from durable vector events to store changes,
including event data a user wrote through /v1/vector (which must never break the applier)."""

import numpy as np
import orjson

from kissvdb.events import EventRecord, RawJson
from kissvdb.search.changes import SEARCH_COLLECTION, changes, document_meta, vector_items
from kissvdb.search.request import parse_ingest
from kissvdb.search.store import Clear, Put, Remove, SearchStore


def rec(offset, type, **data):
    data.setdefault("collection", SEARCH_COLLECTION)
    return EventRecord(offset, 0, type, data)


def test_ingest_becomes_items_whose_events_become_puts():
    (doc,) = parse_ingest({"document": {"id": 42, "vector": [1, 2], "content": "héllo",
                                        "metadata": {"group_id": 3, "filename": "f"}}})
    ((vid, vec, meta),) = vector_items([doc])
    assert vid == "42" and vec.tolist() == [1.0, 2.0] and isinstance(meta, RawJson)
    assert orjson.loads(bytes(meta)) == {"content": "héllo", "metadata": {"filename": "f", "group_id": 3}}
    assert changes([rec(9, "vector_upserted", id=vid, vector=b"", meta=meta)]) == [
        Put(42, "héllo", {"filename": "f", "group_id": 3}, 9)]


def test_every_mutation_delete_and_collection_delete():
    meta = document_meta(parse_ingest({"document": {"id": 1, "vector": [1], "content": "c", "metadata": {}}})[0])
    got = changes([rec(1, "vector_added", id="1", meta=meta), rec(2, "vector_updated", id="1", meta=meta),
                   rec(3, "vector_deleted", id="1"), rec(4, "vector_collection_deleted"),
                   rec(5, "vector_collection_created", dim=1, metric="cosine")])
    assert got == [Put(1, "c", {}, 1), Put(1, "c", {}, 2), Remove(1), Clear()]


def test_other_collections_and_event_types_are_ignored():
    assert changes([rec(1, "vector_upserted", id="1", meta=None, collection="docs"),
                    EventRecord(2, 0, "state_updated", {"key": "k"})]) == []


def test_user_written_data_never_breaks_the_applier():
    got = changes([rec(1, "vector_upserted", id="abc", meta=None),  # not a u32: skipped
                   rec(2, "vector_upserted", id="4294967296", meta=None),
                   rec(3, "vector_upserted", id="7", meta=None),
                   rec(4, "vector_upserted", id="8", meta=RawJson(b'[1,2]')),
                   rec(5, "vector_upserted", id="9", meta=RawJson(b'{"content": 5, "metadata": {"group_id": -1,'
                                                                  b' "category": "ok", "status": 3}}')),
                   rec(6, "vector_upserted", id="10", meta=b'not json')])
    assert got == [Put(7, "", {}, 3), Put(8, "", {}, 4), Put(9, "", {"category": "ok"}, 5), Put(10, "", {}, 6)]


def test_clear_empties_the_store(tmp_path):
    s = SearchStore(str(tmp_path / "fts.sqlite"))
    s.apply(2, [Put(1, "a", {}, 1), Put(2, "b", {}, 2)])
    s.apply(3, [Clear(), Put(3, "c", {}, 3)])
    assert len(s) == 1 and s.query("a b c", 10) == [(3, s.query("c", 1)[0][1])]
    s.close()
    assert len(SearchStore(str(tmp_path / "fts.sqlite"))) == 1


def test_vectors_survive_as_float32():
    (doc,) = parse_ingest({"document": {"id": 1, "vector": [0.1], "content": "", "metadata": {}}})
    assert vector_items([doc])[0][1].dtype == np.float32

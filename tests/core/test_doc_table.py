"""DocStore (kissvdb/documents/table.py) stores a batch of puts exactly as given: what a GET,
a find and a restart read back."""

from __future__ import annotations

import orjson

from kissvdb.documents.state import PUT, DocItem
from kissvdb.documents.table import DocStore


def test_a_batch_is_stored_text_exact_and_the_newest_put_of_a_document_wins(tmp_path):
    path = str(tmp_path / "state.sqlite")
    store = DocStore(path)
    body = orjson.dumps({"name": "Zoë \"q\" \\ 🔑", "n": 2**53, "x": None}, option=orjson.OPT_SORT_KEYS)
    puts = [
        (PUT, "users", "a\x00b", body, 1, None, 10),
        (PUT, "ユーザー", "id/with/slashes", orjson.dumps([1.5e300, "ü"]), 4, 2**63 - 1, 11),
        (PUT, "users", "dup", b'{"v":1}', 1, None, 12),
        (PUT, "users", "dup", b'{"v":2}', 2, 99, 13),
    ]
    store.apply_docs(puts, 13)
    store.checkpoint()
    store.close()
    again = DocStore(path)
    got = again.get_many([("users", "a\x00b"), ("ユーザー", "id/with/slashes"), ("users", "dup")])
    assert got[("users", "a\x00b")] == DocItem("users", "a\x00b", body, 1, None, 10)
    assert got[("ユーザー", "id/with/slashes")] == DocItem(*puts[1][1:])
    assert got[("users", "dup")] == DocItem("users", "dup", b'{"v":2}', 2, 99, 13)
    # Stored as TEXT: SQLite's JSON functions (finds, indexes) read the document as JSON text.
    kind, name = again.conn.execute(
        "SELECT typeof(doc), json_extract(doc, '$.name') FROM docs WHERE id = 'a' || char(0) || 'b'").fetchone()
    assert (kind, name) == ("text", "Zoë \"q\" \\ 🔑")
    assert again.applied_offset() == 13
    again.close()

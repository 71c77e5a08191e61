"""The `/search` store's own SQLite file: documents' content in an FTS5 (BM25) index, their
metadata, and the WAL offset applied to both, in one file (DATA_DIR/search/fts.sqlite).

Why its own file: state.sqlite already has two writers (KV and documents); BM25 indexing is the
slow part of an ingest, and a separate file lets it be thrown away and rebuilt without touching
anything else.

Guarantees:
- `apply(offset, changes)` writes the changes and the new applied offset in ONE transaction, and
  skips a batch whose offset is not past the applied one: replaying the WAL from any earlier
  offset after a crash gives the same file (idempotent).
- Ids are unique: a `Put` of an existing id replaces its content and metadata; `Remove` deletes
  one, `Clear` all.
- `query()` never lets user text reach FTS5's query syntax (keywords.py quotes every word).
- `checkpoint()` makes everything applied durable (synchronous=NORMAL commits are made durable
  by the WAL checkpoint's fsync) and returns the offset it covers: WAL retention may drop
  segments up to `durable_offset`, never past it.
- `reset(offset, docs)` replaces the whole content (a rebuild from the vector collection when the
  file was lost or is behind what the WAL still holds).
Never does: threads. One owner calls it (apsw connections are used from one dedicated thread,
DESIGN "Threads"); it is not safe to share.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterable

import apsw
import orjson

from kissvdb.errors import RequestTimeout

from .keywords import match_expression, query_words
from .request import METADATA_FIELDS, Filters
from .ranking import allowed_ids, narrows

FORMAT_VERSION = 1
PROGRESS_STEPS = 1000  # SQLite VM steps between two looks at a query's deadline


@dataclass(frozen=True, slots=True)
class Put:
    """A document stored (or replaced) by the event at WAL offset `seq`."""

    id: int
    content: str
    metadata: dict
    seq: int


@dataclass(frozen=True, slots=True)
class Remove:
    id: int


@dataclass(frozen=True, slots=True)
class Clear:
    """Every document removed (the collection holding them was deleted)."""


def ordered_metadata(metadata: dict) -> dict:
    """Metadata in the original's field order, present fields only."""
    return {name: metadata[name] for name, _ in METADATA_FIELDS if name in metadata}


class SearchStore:
    """The FTS5 index, metadata table and applied offset of the `/search` documents."""

    def __init__(self, path: str):
        self.path = path
        self.db = apsw.Connection(path)
        self._init_schema()
        self.applied_offset = self._meta_int("applied_offset")
        self.durable_offset = self.applied_offset  # what a crash cannot take back
        self._docs: dict[int, tuple[int, dict]] = {  # id -> (seq, metadata): filters run in memory
            doc_id: (seq, orjson.loads(meta))
            for doc_id, seq, meta in self.db.execute("SELECT id, seq, metadata FROM docs")
        }

    # -- opening -------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        db = self.db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # the WAL is the truth: a lost commit is replayed
        db.execute("PRAGMA foreign_keys=OFF")
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL,"
                       " metadata TEXT NOT NULL)")
            db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(content, tokenize='unicode61')")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?), ('applied_offset', 0)",
                       (FORMAT_VERSION,))
        version = self._meta_int("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{self.path}: search index format {version}, expected {FORMAT_VERSION}")

    def _meta_int(self, key: str) -> int:
        return int(self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchall()[0][0])

    @staticmethod
    def discard(path: str) -> None:
        """Remove the file (and its -wal/-shm) so the next open starts empty: a rebuild."""
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass

    # -- writing -------------------------------------------------------------------------------

    def apply(self, offset: int, changes: Iterable[Put | Remove | Clear]) -> bool:
        """Apply the changes of the WAL up to `offset`, in order; False (nothing done) when
        `offset` is not past the applied one. An empty `changes` still advances the offset."""
        if offset <= self.applied_offset:
            return False
        changes = list(changes)
        with self.db:
            self._write(offset, changes)
        self._follow(offset, changes)
        return True

    def reset(self, offset: int, docs: Iterable[Put]) -> None:
        """Replace everything with `docs`, applied up to `offset` (a rebuild), in one transaction."""
        docs = list(docs)
        with self.db:
            self.db.execute("DELETE FROM fts")
            self.db.execute("DELETE FROM docs")
            self._write(offset, docs)
        self._docs.clear()
        self._follow(offset, docs)

    def _write(self, offset: int, changes: list) -> None:
        db = self.db
        for change in changes:
            if type(change) is Clear:
                db.execute("DELETE FROM fts")
                db.execute("DELETE FROM docs")
                continue
            db.execute("DELETE FROM fts WHERE rowid = ?", (change.id,))
            if type(change) is Remove:
                db.execute("DELETE FROM docs WHERE id = ?", (change.id,))
                continue
            db.execute("INSERT INTO fts(rowid, content) VALUES (?, ?)", (change.id, change.content))
            db.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)",
                       (change.id, change.seq, orjson.dumps(ordered_metadata(change.metadata)).decode()))
        db.execute("UPDATE meta SET v = ? WHERE k = 'applied_offset'", (offset,))

    def _follow(self, offset: int, changes: list) -> None:
        """The memory follows the file, once the file has committed."""
        self.applied_offset = offset
        for change in changes:
            if type(change) is Clear:
                self._docs.clear()
            elif type(change) is Remove:
                self._docs.pop(change.id, None)
            else:
                self._docs[change.id] = (change.seq, ordered_metadata(change.metadata))

    def checkpoint(self) -> int:
        """Make every applied change durable; returns the offset now safe from a crash."""
        offset = self.applied_offset
        busy, _log, _done = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
        if busy:  # only our own open statement could hold it: try again at the next checkpoint
            return self.durable_offset
        self.durable_offset = offset
        return offset

    def close(self) -> None:
        self.checkpoint()
        self.db.close()

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._docs)

    def metadata(self, doc_id: int) -> dict:
        return self._docs[doc_id][1]

    def allowed(self, filters: Filters) -> set[int] | None:
        """The ids a search with `filters` may return; None when every document may."""
        if not narrows(filters):
            return None
        return allowed_ids(((i, seq, meta) for i, (seq, meta) in self._docs.items()), filters)

    def documents(self, ids: list[int]) -> dict[int, dict]:
        """{id: {"id", "content", "metadata"}} of the ids still stored."""
        out = {}
        for doc_id in ids:
            rows = self.db.execute("SELECT content FROM fts WHERE rowid = ?", (doc_id,)).fetchall()
            if rows and doc_id in self._docs:
                out[doc_id] = {"id": doc_id, "content": rows[0][0], "metadata": self._docs[doc_id][1]}
        return out

    def query(self, text: str, limit: int, allowed: set[int] | None = None,
              deadline: float | None = None) -> list[tuple[int, float]]:
        """The best `limit` documents for the words of `text` by BM25, as (id, -bm25) best first
        (ties by id), among `allowed` ids (None: all). Past `deadline` (time.monotonic()) ->
        RequestTimeout."""
        assert limit >= 0, "query.py asks for at most as many hits as there are documents"
        match = match_expression(query_words(text))
        if match is None or limit == 0 or (allowed is not None and not allowed):
            return []
        sql = "SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ? ORDER BY bm25(fts), rowid"
        params: tuple = (match,)
        if allowed is None:
            sql += " LIMIT ?"
            params = (match, limit)
        return self._ranked(sql, params, limit, allowed, deadline)

    def _ranked(self, sql: str, params: tuple, limit: int, allowed, deadline) -> list[tuple[int, float]]:
        if deadline is not None:
            self.db.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
        cursor = self.db.cursor()
        out: list[tuple[int, float]] = []
        try:
            for rowid, score in cursor.execute(sql, params):
                if allowed is not None and rowid not in allowed:
                    continue
                out.append((rowid, -score))
                if len(out) >= limit:
                    break
        except apsw.InterruptError:
            raise RequestTimeout("keyword search ran past its request's deadline") from None
        finally:
            cursor.close(True)  # a statement left open would keep the WAL from being checkpointed
            if deadline is not None:
                self.db.set_progress_handler(None)
        return out

"""The materialized document store: table `docs` in state.sqlite, with the `docs` applied offset.

Guarantees (as statestore.py for KV):
- A batch of changes and the offset it brings the docs materializer to commit in ONE
  transaction, so what survives a crash is a consistent prefix of the WAL; boot replays the rest.
- Commits are not fsynced one by one (synchronous=NORMAL): the WAL is the durable record.
  `checkpoint()` makes everything committed so far durable by committing once with
  synchronous=FULL (in WAL journal mode that fsyncs the SQLite WAL, which holds every earlier
  commit too), then returns the offsets it covered. It does not depend on a TRUNCATE checkpoint
  getting past readers of the other connection.
- Index definitions (`create_index`) are committed with synchronous=FULL. They are not events:
  an index only changes speed, never results, so it is not replayed. A build past its time
  limit is rolled back (400), so one request holds the documents' writer for a bounded time.
- state.sqlite's WAL file does not keep its high-water mark: `reset_wal()` (a TRUNCATE
  checkpoint, run when no find holds a snapshot) empties it, and journal_size_limit trims it
  whenever SQLite restarts it.

This is its own apsw connection to state.sqlite (the KV store has another; `find` runs on
read-only connections, kissvdb/documents/reader.py); each is used from one dedicated thread and they
share the file under SQLite's locking. Never used from two threads at once.
"""

from __future__ import annotations

import hashlib
import os
import time

import apsw
import orjson

from kissvdb.documents.query import extract_sql, sql_literal
from kissvdb.documents.state import DEL, PUT, DocItem, DocKey
from kissvdb.errors import InvalidArgument

BUSY_TIMEOUT_MS = 60_000
RESET_BUSY_TIMEOUT_MS = 200
PROGRESS_STEPS = 10_000  # VM instructions between deadline checks during an index build
WAL_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, chosen explicitly
JOURNAL_SIZE_LIMIT_BYTES = 64 << 20  # what the WAL file is cut back to when SQLite restarts it

NAME = "docs"  # this materializer's row in `applied`

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs(
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    revision INTEGER NOT NULL,
    expires_at_ms INTEGER,
    mod_offset INTEGER NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS docs_expiry ON docs(expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS doc_indexes(
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (collection, field)
);
CREATE TABLE IF NOT EXISTS applied(name TEXT PRIMARY KEY, offset INTEGER NOT NULL);
"""

_UPSERT = "INSERT OR REPLACE INTO docs VALUES (?,?,?,?,?,?)"
# A batch of puts is ONE statement over a JSON array, as state.sqlite's KV rows are (see
# kissvdb/statedb/file.py: apsw retakes the GIL around every row of an executemany). Text
# travels as hex and is cast back to TEXT, so it comes back exact and json_extract (the
# indexes) still reads it as text, not as a JSONB blob.
_UPSERT_ROWS = (
    "INSERT OR REPLACE INTO docs(collection, id, doc, revision, expires_at_ms, mod_offset) "
    "SELECT CAST(unhex(value->>0) AS TEXT), CAST(unhex(value->>1) AS TEXT), CAST(unhex(value->>2) AS TEXT), "
    "value->>3, value->>4, value->>5 FROM json_each(?)"
)
_DELETE = "DELETE FROM docs WHERE collection=? AND id=?"


def _rows_json(puts: list[tuple]) -> bytes:
    """The puts as a JSON array, one per (collection, id): the newest wins, as it would in order."""
    newest = {(c[1], c[2]): c for c in puts}
    return orjson.dumps([(c[1].encode("utf-8").hex(), c[2].encode("utf-8").hex(), c[3].hex(), c[4], c[5], c[6])
                         for c in newest.values()])


def index_name(collection: str, field: str) -> str:
    digest = hashlib.sha256(f"{collection}\0{field}".encode()).hexdigest()[:20]
    return f"docidx_{digest}"


def _item(row) -> DocItem:
    collection, id_, doc, revision, expires, mod_offset = row
    return DocItem(collection, id_, doc.encode("utf-8"), revision, expires, mod_offset)


class DocStore:
    def __init__(self, path: str, *, durable: bool = True):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.durable = durable
        self.conn = apsw.Connection(path)
        # The KV connection writes to the same file: its commits and checkpoints briefly hold
        # the write lock, so an apply here waits (a pause) rather than failing (an actor restart).
        self.conn.setbusytimeout(BUSY_TIMEOUT_MS)
        self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self.conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}").fetchall()
        with self.conn:
            self.conn.execute(SCHEMA)
        row = self.conn.execute("SELECT offset FROM applied WHERE name=?", (NAME,)).fetchone()
        self._applied = row[0] if row else 0

    # -- offsets ---------------------------------------------------------------------------

    def applied_offset(self, name: str = NAME) -> int:
        assert name == NAME, name
        return self._applied

    # -- writes ----------------------------------------------------------------------------

    def apply_docs(self, changes: list[tuple], applied_offset: int) -> None:
        """Apply doc changes (in order) and move the `docs` applied offset, in one transaction."""
        conn = self.conn
        with conn:
            if changes and all(c[0] == PUT for c in changes):
                conn.execute(_UPSERT_ROWS, (_rows_json(changes),))
            else:
                for c in changes:
                    if c[0] == PUT:
                        conn.execute(_UPSERT, (c[1], c[2], c[3].decode("utf-8"), c[4], c[5], c[6]))
                    else:
                        assert c[0] == DEL
                        conn.execute(_DELETE, (c[1], c[2]))
            if applied_offset > self._applied:
                conn.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", (NAME, applied_offset))
        if applied_offset > self._applied:
            self._applied = applied_offset

    def set_applied(self, offset: int) -> None:
        self.apply_docs([], offset)

    def checkpoint(self) -> dict[str, int]:
        """Make every committed transaction durable; return {"docs": offset now durable}."""
        offset = self._applied
        if self.durable:
            conn = self.conn
            conn.execute("PRAGMA synchronous=FULL")
            try:
                with conn:  # a real write, so the commit fsyncs the SQLite WAL up to here
                    conn.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", (NAME, offset))
            finally:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return {NAME: offset}

    def reset_wal(self) -> int:
        """Copy state.sqlite's WAL into the database and truncate it (TRUNCATE checkpoint).

        Only complete when no reader holds a snapshot, so the caller runs it between finds.
        While it waits for readers it holds back every writer of state.sqlite, so it waits
        at most RESET_BUSY_TIMEOUT_MS. Returns SQLite's busy flag (1: the WAL is still there)."""
        conn = self.conn
        conn.setbusytimeout(RESET_BUSY_TIMEOUT_MS)
        try:
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.setbusytimeout(BUSY_TIMEOUT_MS)
        return busy

    def create_index(self, collection: str, field: str, now_ms: int,
                     time_limit_ms: int | None = None) -> tuple[str, bool]:
        """A partial expression index on `field` for `collection`; (name, created now).

        A build still running after `time_limit_ms` is interrupted and rolled back (400): it
        holds the one thread that applies document writes while it runs."""
        name = index_name(collection, field)
        conn = self.conn
        row = conn.execute("SELECT name FROM doc_indexes WHERE collection=? AND field=?",
                           (collection, field)).fetchone()
        if row is not None:
            return row[0], False
        if time_limit_ms is not None:
            deadline = time.monotonic() + time_limit_ms / 1000.0
            conn.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
        conn.execute("PRAGMA synchronous=FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {name} ON docs({extract_sql(field)}, id) "
                    f"WHERE collection = {sql_literal(collection)}")
                conn.execute("INSERT INTO doc_indexes VALUES (?,?,?,?)", (collection, field, name, now_ms))
                conn.execute("COMMIT")
            except BaseException:
                if not conn.get_autocommit():  # an interrupt has already rolled it back
                    conn.execute("ROLLBACK")
                raise
        except apsw.InterruptError:
            raise InvalidArgument(
                f"building the index exceeded the time limit of {time_limit_ms} ms", field="field") from None
        finally:
            if time_limit_ms is not None:
                conn.set_progress_handler(None)
            conn.execute("PRAGMA synchronous=NORMAL")
        return name, True

    def indexes(self, collection: str) -> list[str]:
        return [f for (f,) in self.conn.execute(
            "SELECT field FROM doc_indexes WHERE collection=? ORDER BY field", (collection,))]

    # -- reads -----------------------------------------------------------------------------

    def get_many(self, keys: list[DocKey]) -> dict[DocKey, DocItem | None]:
        out: dict[DocKey, DocItem | None] = {}
        cur = self.conn.cursor()
        for key in keys:
            row = cur.execute(
                "SELECT collection, id, doc, revision, expires_at_ms, mod_offset FROM docs "
                "WHERE collection=? AND id=?", key).fetchone()
            out[key] = _item(row) if row is not None else None
        return out

    def due_expirations(self, now_ms: int, limit: int) -> list[tuple[str, str, int]]:
        return list(self.conn.execute(
            "SELECT collection, id, mod_offset FROM docs WHERE expires_at_ms IS NOT NULL "
            "AND expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?", (now_ms, limit)))

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM docs").fetchone()[0]

    def collections(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """(name, live document count) of the first `limit` collections holding a live
        document, by name: what the dashboard lists (GET /v1/doc)."""
        return list(self.conn.execute(
            "SELECT collection, count(*) FROM docs WHERE expires_at_ms IS NULL OR expires_at_ms > ? "
            "GROUP BY collection ORDER BY collection LIMIT ?", (now_ms, limit)))

    def close(self) -> None:
        self.conn.close()

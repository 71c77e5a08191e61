"""state.sqlite: the materialized KV store and every materializer's applied offset.

Guarantees:
- A batch of changes and the offset it brings the materializer to commit in ONE transaction, so
  whatever survives a crash is a consistent prefix of the WAL, and boot replays from there.
- Commits are not fsynced one by one (journal_mode=WAL, synchronous=NORMAL): the WAL is the
  durable record. `checkpoint()` makes everything committed so far durable and returns the
  offsets it covered; only those may be used to drop WAL segments.
- Keys are stored as UTF-8 BLOBs, so ORDER BY and prefix ranges follow key bytes, as the
  contract requires.

Never used from more than one thread at a time: an actor owns it on a dedicated thread.
"""

from __future__ import annotations

import os

import apsw
import orjson

from kissvdb.kv.state import StateItem

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv(
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    revision INTEGER NOT NULL,
    expires_at_ms INTEGER,
    mod_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiry ON kv(expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS applied(name TEXT PRIMARY KEY, offset INTEGER NOT NULL);
"""


# A batch of rows goes to SQLite as ONE statement over a JSON array, not executemany: apsw
# lets go of the GIL and takes it back around every row's step, and each take-back on the
# store thread waits for the event loop to let go of it. One statement per transaction takes
# the GIL a few times per commit instead of a few times per row: PUT@64 +11% (docs/BENCHMARKS.md,
# "state.sqlite batches as one statement").
# Keys and values travel as hex, so their bytes come back exact (NULs and all).
_INSERT_ROWS = (
    "INSERT OR REPLACE INTO kv(key, value, revision, expires_at_ms, mod_offset) "
    "SELECT unhex(value->>0), unhex(value->>1), value->>2, value->>3, value->>4 FROM json_each(?)"
)


def _rows_json(items: list[StateItem]) -> bytes:
    """The rows of `items` as a JSON array, one per key: the newest of a key wins (as it would
    in order), so the statement does not depend on the order SQLite reads the array in."""
    newest = {i[0]: i for i in items}
    return orjson.dumps([(i[0].encode("utf-8").hex(), i[1].hex(), i[2], i[3], i[4]) for i in newest.values()])


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """Smallest byte string greater than every string starting with `prefix` (None = no bound)."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes([p[-1] + 1])


def _item(row) -> StateItem:
    key, value, revision, expires, mod_offset = row
    return StateItem(bytes(key).decode("utf-8"), value, revision, expires, mod_offset)


class StateStore:
    def __init__(self, path: str, *, durable: bool = True):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.path = path
        self.durable = durable
        self.conn = apsw.Connection(path)
        # state.sqlite is shared with the documents store (its own connection): wait out its
        # commits and checkpoints rather than failing an apply (a failed apply restarts the actor).
        self.conn.setbusytimeout(60_000)
        self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self.conn.execute("PRAGMA wal_autocheckpoint=4000")
        self.conn.execute("PRAGMA journal_size_limit=67108864").fetchall()  # WAL file cut back to 64 MiB on restart
        with self.conn:
            self.conn.execute(SCHEMA)
        self._applied = {name: off for name, off in self.conn.execute("SELECT name, offset FROM applied")}

    # -- offsets ---------------------------------------------------------------------------

    def applied_offset(self, name: str) -> int:
        return self._applied.get(name, 0)

    def applied_offsets(self) -> dict[str, int]:
        return dict(self._applied)

    # -- writes ----------------------------------------------------------------------------

    def apply_kv(self, changes: list[StateItem | str], applied_offset: int) -> None:
        """Apply KV changes (an item to store, or a key to delete) and move the `kv` applied
        offset, in one transaction."""
        conn = self.conn
        with conn:
            if any(type(c) is str for c in changes):
                self._apply_in_order(changes)  # a delete and a put of one key must keep their order
            elif changes:
                conn.execute(_INSERT_ROWS, (_rows_json(changes),))
            if applied_offset > self._applied.get("kv", 0):
                conn.execute("INSERT OR REPLACE INTO applied VALUES ('kv', ?)", (applied_offset,))
        if applied_offset > self._applied.get("kv", 0):
            self._applied["kv"] = applied_offset

    def _apply_in_order(self, changes) -> None:
        for c in changes:
            if type(c) is str:
                self.conn.execute("DELETE FROM kv WHERE key=?", (c.encode("utf-8"),))
            else:
                self.conn.execute(
                    "INSERT OR REPLACE INTO kv VALUES (?,?,?,?,?)", (c[0].encode("utf-8"), c[1], c[2], c[3], c[4])
                )

    def set_applied(self, name: str, offset: int) -> None:
        if offset <= self._applied.get(name, 0):
            return
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", (name, offset))
        self._applied[name] = offset

    def checkpoint(self) -> dict[str, int]:
        """Make every committed transaction durable; return the applied offsets now durable.

        Durable by one commit with synchronous=FULL, which fsyncs the SQLite WAL holding every
        earlier commit (as the documents store does), then a PASSIVE checkpoint. Never a
        FULL/RESTART/TRUNCATE checkpoint here: those wait for readers (a document find may
        run for seconds) while holding back every writer of state.sqlite."""
        offsets = dict(self._applied)
        if self.durable:
            conn = self.conn
            conn.execute("PRAGMA synchronous=FULL")
            try:
                with conn:  # a real write, so that the commit syncs the WAL up to here
                    conn.execute("INSERT OR REPLACE INTO applied SELECT name, offset FROM applied WHERE name='kv'")
            finally:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return offsets

    # -- reads -----------------------------------------------------------------------------

    def get_many(self, keys: list[str]) -> dict[str, StateItem | None]:
        out: dict[str, StateItem | None] = {}
        cur = self.conn.cursor()
        for key in keys:
            row = cur.execute(
                "SELECT key, value, revision, expires_at_ms, mod_offset FROM kv WHERE key=?", (key.encode("utf-8"),)
            ).fetchone()
            out[key] = _item(row) if row is not None else None
        return out

    def scan_prefix(self, prefix: str, limit: int, now_ms: int,
                    start_after: str | None = None) -> list[StateItem]:
        """Live items whose key starts with `prefix`, in key-byte order; with `start_after`,
        only keys strictly after it in that order (the list's paging cursor)."""
        low = prefix.encode("utf-8")
        high = prefix_upper_bound(low)
        sql = "SELECT key, value, revision, expires_at_ms, mod_offset FROM kv WHERE key >= ?"
        args: tuple = (low,)
        if start_after is not None:
            sql += " AND key > ?"
            args += (start_after.encode("utf-8"),)
        if high is not None:
            sql += " AND key < ?"
            args += (high,)
        sql += " AND (expires_at_ms IS NULL OR expires_at_ms > ?) ORDER BY key LIMIT ?"
        args += (now_ms, limit)
        return [_item(row) for row in self.conn.execute(sql, args)]

    def due_expirations(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        rows = self.conn.execute(
            "SELECT key, mod_offset FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ? "
            "ORDER BY expires_at_ms LIMIT ?",
            (now_ms, limit),
        )
        return [(bytes(k).decode("utf-8"), off) for k, off in rows]

    def count_keys(self) -> int:
        return self.conn.execute("SELECT count(*) FROM kv").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

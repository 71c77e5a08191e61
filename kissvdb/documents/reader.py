"""A read-only connection to state.sqlite that runs document `find`s.

Finds do not run on the documents writer's connection: a long find there held the one thread
that commits document changes, and every document write waited behind it. state.sqlite is in
WAL journal mode, so a reader and the writer run at once; each reader owns one connection,
used from one dedicated thread (actors/doc_readers.py keeps the pool).

Guarantees:
- Each find is one statement in autocommit mode, and its cursor is closed before `find`
  returns (also on error or interrupt): no read transaction, and so no old snapshot, is held
  between finds. A find therefore sees every transaction committed before it started.
- `query_only`: nothing run here can write.
- A find stops at its job's deadline or as soon as its caller gives up (`SqlJob.cancelled`),
  checked by a progress handler every PROGRESS_STEPS VM instructions. That bounds how long it
  holds its snapshot, and so how much of state.sqlite's WAL it pins.
Never does: writes, checkpoints, or anything with the documents' applied offset.
"""

from __future__ import annotations

import time

import apsw

from kissvdb.documents.query import CompiledFind
from kissvdb.errors import InvalidArgument
from kissvdb.sql.user import SqlJob

PROGRESS_STEPS = 10_000  # VM instructions between deadline checks
BUSY_TIMEOUT_MS = 5_000  # only while the writer resets the WAL index; reads never wait on writes
CACHE_KIB = 16_384  # page cache per reader


class FindCancelled(Exception):
    """The caller gave up (request deadline or client gone); nobody reads this answer."""


class DocReader:
    def __init__(self, path: str):
        self.path = path
        conn = apsw.Connection(path)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA query_only=1")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.conn = conn
        self._job: SqlJob | None = None
        conn.set_progress_handler(self._progress, PROGRESS_STEPS)

    def _progress(self) -> bool:
        job = self._job
        if job is None:
            return False
        if job.cancelled:
            job.interrupted = "cancelled"
            return True
        if time.monotonic() > job.deadline:
            job.interrupted = "time limit"
            return True
        return False

    def find(self, q: CompiledFind, job: SqlJob | None = None) -> list[tuple]:
        """Rows (id, doc bytes, revision, expires_at_ms, *sort values) of one page (+1 probe row).

        Past `job.deadline`: 400 naming `filter` (an unindexed filter over a large collection is
        what runs long). Cancelled: FindCancelled. Without a job (tests, bench/): no limit.
        """
        self._job = job
        cursor = self.conn.cursor()
        try:
            out = []
            for row in cursor.execute(q.sql, q.args):
                out.append((row[0], row[1].encode("utf-8"), row[2], row[3], *row[4:]))
            return out
        except apsw.InterruptError:
            assert job is not None, "only the progress handler interrupts a find"
            if job.interrupted == "cancelled":
                raise FindCancelled() from None
            raise InvalidArgument(
                f"find exceeded the time limit of {job.limit_ms} ms: index the filtered field "
                "(POST /v1/doc/{collection}/_index) or narrow the filter", field="filter") from None
        finally:
            self._job = None
            cursor.close()  # ends the statement, and with it the read transaction

    def explain(self, q: CompiledFind) -> list[str]:
        """SQLite's plan for a find (tests check that indexes are used)."""
        # EXPLAIN reads no table, so SQLite would not notice an index created since this
        # connection last read: a read first brings its schema up to date.
        self.conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
        return [r[3] for r in self.conn.execute("EXPLAIN QUERY PLAN " + q.sql, q.args)]

    def close(self) -> None:
        self.conn.close()

"""The SQL actor: owns the user database's connections, each on its own dedicated thread.

- `query` goes to one of `READERS` query_only connections (round robin), each on its own thread,
  so reads run beside a long write. The thread returns the response body, JSON encoded in
  pieces as the rows are stepped (kissvdb/sql/result.py), so neither encoding nor a large result ever runs
  on the event loop, and the time limit covers both. If the caller is cancelled (request
  timeout, client gone), the statement is interrupted by the progress handler instead of
  running on.
- `exec` goes to the one writer connection, one statement at a time (a lock keeps the commit
  order and the order of the `sql_exec` events the same). After SQLite has committed, the
  `sql_exec` event `{statement, rows_affected}` is queued to the WAL writer, and the reply
  waits for it to be durable. The order is deliberate: the SQL file, not our WAL, is the source
  of truth for SQL data (it is never replayed from the WAL); the event tells change-stream
  subscribers what happened. If logging the event fails, the statement has still committed and
  the caller gets the persistence error. Once the statement is running it is not interrupted
  by a cancelled caller, only by its time limit: its outcome is then reported.
- Bounded: at most INBOX_REQUESTS_MAX statements wait or run at once; the next is refused with
  503 (Overloaded) before anything runs. A statement's deadline starts when it is submitted, so
  time spent waiting behind others counts, and one whose deadline passed while it waited is
  refused without running.
"""

from __future__ import annotations

import logging
import time

import trio

from kissvdb.errors import NotEnabled, Overloaded
from kissvdb.events import SQL_EXEC
from kissvdb.sql.result import JsonChunks
from kissvdb.sql.user import SqlJob, SqlLimits, UserSqlReader, UserSqlWriter

from kissvdb.actors.threads import DedicatedThread
from kissvdb.actors.wal import WalWrite

log = logging.getLogger("kissvdb.sql")

READERS = 2
TIME_LIMIT_MARGIN_MS = 1000  # the statement limit stays this far below REQUEST_TIMEOUT_SECS


def effective_time_limit_ms(settings) -> int:
    """SQL_TIME_LIMIT_MS, capped to stay shorter than the request timeout."""
    cap = max(100, settings.request_timeout_secs * 1000 - TIME_LIMIT_MARGIN_MS)
    return max(1, min(settings.sql_time_limit_ms, cap))


class SqlService:
    def __init__(self, settings, writer, *, clock):
        self.settings = settings
        self.path = settings.user_sql_path
        self.wal = writer
        self.clock = clock
        self.time_limit_ms = effective_time_limit_ms(settings)
        self.limits = SqlLimits(rows_max=settings.sql_max_rows,
                                result_bytes_max=settings.sql_result_bytes_max,
                                write_bytes_max=settings.sql_write_bytes_max)
        self._writer_thread: DedicatedThread | None = None
        self._reader_threads: list[DedicatedThread] = []
        self._writer: UserSqlWriter | None = None
        self._readers: list[UserSqlReader] = []
        self._next_reader = 0
        self._exec_lock = trio.Lock()
        # Statements waiting or running: past INBOX_REQUESTS_MAX a new one is refused with 503
        # at once instead of queueing without bound behind slow ones.
        self.waiting_max = settings.inbox_requests_max
        self._waiting = 0
        self._wal_send = None
        self.closing = False
        self.queries_total = 0
        self.execs_total = 0
        self.errors_total = 0

    async def open(self) -> None:
        self._writer_thread = DedicatedThread("kissvdb-sql-w")
        self._writer = await self._writer_thread.run(UserSqlWriter, self.path, self.limits)
        for i in range(READERS):
            thread = DedicatedThread(f"kissvdb-sql-r{i}")
            self._reader_threads.append(thread)
            self._readers.append(await thread.run(UserSqlReader, self.path, self.limits))
        self._wal_send = self.wal.send_channel.clone()
        log.info("user SQL at %s (statement time limit %d ms)", self.path, self.time_limit_ms)
        if not self._writer.write_cap_enforced:
            log.warning("SQL_WRITE_BYTES_MAX is not enforced: this kernel does not count writes per thread "
                        "(/proc/thread-self/io); the time limit still bounds each statement")

    def _job(self) -> SqlJob:
        return SqlJob(time.monotonic() + self.time_limit_ms / 1000.0, self.time_limit_ms)

    def _check_open(self) -> None:
        if self.closing or self._writer is None:
            raise NotEnabled("sqlite module is disabled")
        if self._waiting >= self.waiting_max:
            raise Overloaded("too many SQL statements waiting, retry later")

    async def query_json(self, sql: str, params) -> JsonChunks:
        """The `/v1/sql/query` response body for one read statement (see UserSqlReader.query)."""
        self._check_open()
        i = self._next_reader
        self._next_reader = (i + 1) % len(self._readers)
        job = self._job()
        self.queries_total += 1
        self._waiting += 1
        try:
            return await self._reader_threads[i].run(self._readers[i].query, job, sql, params)
        except trio.Cancelled:
            job.cancelled = True  # the progress handler interrupts it at its next check
            raise
        except Exception:
            self.errors_total += 1
            raise
        finally:
            self._waiting -= 1

    async def exec(self, sql: str, params) -> int:
        self._check_open()
        self._waiting += 1
        try:
            return await self._exec(sql, params)
        finally:
            self._waiting -= 1

    async def _exec(self, sql: str, params) -> int:
        async with self._exec_lock:
            job = self._job()
            with trio.CancelScope(shield=True):
                try:
                    rows_affected = await self._writer_thread.run(self._writer.exec, job, sql, params)
                except Exception:
                    self.errors_total += 1
                    raise
                self.execs_total += 1
                write = WalWrite([(self.clock(), SQL_EXEC, {"statement": sql, "rows_affected": rows_affected})],
                                 self.wal.epoch)
                await self._wal_send.send(write)
        with trio.CancelScope(shield=True):
            await write.done.wait()
        if write.error is not None:
            raise write.error
        return rows_affected

    async def close(self) -> None:
        """Stop taking statements (after the exec in progress) and release the WAL channel."""
        self.closing = True
        async with self._exec_lock:
            if self._wal_send is not None:
                await self._wal_send.aclose()

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer_thread.run(self._writer.close)
            self._writer = None
        for thread, reader in zip(self._reader_threads, self._readers):
            await thread.run(reader.close)
        self._readers = []
        for thread in [self._writer_thread, *self._reader_threads]:
            if thread is not None:
                await thread.aclose()

    def metrics(self) -> list[tuple[str, str, float]]:
        return [
            ("kissvdb_sql_queries_total", "counter", self.queries_total),
            ("kissvdb_sql_execs_total", "counter", self.execs_total),
            ("kissvdb_sql_errors_total", "counter", self.errors_total),
        ]

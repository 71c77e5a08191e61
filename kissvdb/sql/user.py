"""The user's SQLite database (`/v1/sql/*`): explicit pragmas, a guard, limits and a deadline.

Owns two apsw connections to the user database (default DATA_DIR/sqlite/user.db, WAL journal,
synchronous=FULL): `UserSqlWriter` for `/v1/sql/exec` and `UserSqlReader` for `/v1/sql/query`.
Each is used from exactly one dedicated thread (actors/sql.py); nothing here is thread-safe.

Guarantees (DESIGN "SQL guard"):
- One statement per request: text with a second statement is refused before anything runs.
- `query` runs on a connection with `PRAGMA query_only=1`, so `WITH ... SELECT` and `EXPLAIN`
  work and every write fails inside SQLite, whatever the text starts with.
- An authorizer refuses ATTACH/DETACH (and so `VACUUM INTO`), transaction control and
  savepoints, PRAGMA (statements and pragma functions), load_extension, and every TEMP schema
  object, however it is spelled (`CREATE TEMP ...`, `CREATE TABLE temp.x`, `CREATE TRIGGER
  temp.x ... ON main_table`): TEMP objects would live on a shared connection, across requests
  and users, invisible in sqlite_master. The writer also checks, before each COMMIT, that the
  temp schema is still empty.
- Work is bounded inside SQLite (`SQLITE_LIMITS`: no string, blob or row longer than the
  result budget, no statement longer than `SQL_TEXT_BYTES_MAX`, no ATTACH slots, a bounded
  program size ...), defensive mode is on and the schema is untrusted (`trusted_schema` off),
  temporary data goes to files (never to RAM, so a sort or a temporary b-tree costs at most the
  page cache in memory), and what one statement writes to disk (temporary files; for `exec`
  also the journal) is capped at `SqlLimits.write_bytes_max`, measured on the connection's
  thread (kissvdb/threadio.py) and checked every `WRITE_CHECK_INTERVAL_S` by the progress
  handler.
- `exec` runs inside a transaction we open and close: COMMIT on success, ROLLBACK on any error
  (or if the statement returns rows, which `exec` refuses as the original did), so the
  connection is in autocommit after every request. `rows_affected` is the change in
  `total_changes()`.
- A progress handler interrupts a statement past its deadline (or when its caller gave up):
  400 sqlite_error "interrupted: statement exceeded the time limit of N ms". The deadline also
  covers encoding the rows (kissvdb/sql/result.py), which happens here, on the SQL thread, while
  SQLite steps: `query` returns the response body (JSON in pieces), never a list of rows. More than
  `rows_max` rows or `result_bytes_max` bytes is refused (400) as soon as it is reached.
- Parameters: a JSON array binds `?`/`?N` positionally, an object binds `:name`/`@name`/`$name`.
  null, booleans (1/0), numbers and strings only; integers beyond int64 bind as REAL.
Never does: touch our WAL or state. The SQL file is the source of truth for SQL data.
Never sets process-wide SQLite state (`sqlite3_hard_heap_limit64`, `PRAGMA soft_heap_limit`):
state.sqlite and keys.sqlite share the process, and a user query must not make their
allocations fail.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import apsw

from kissvdb.errors import InvalidArgument, SqliteError
from kissvdb.sql.result import JsonChunks, ResultBody
from kissvdb.threadio import ThreadWrites

PROGRESS_STEPS = 1000  # VM instructions between deadline checks
WRITE_CHECK_INTERVAL_S = 0.01  # reading the thread's write counter costs ~5 us: not at every check
BUSY_TIMEOUT_MS = 5000
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
CACHE_KIB = 8192  # page cache per connection (PRAGMA cache_size): bounds the RAM of sorts too
JOURNAL_SIZE_LIMIT_BYTES = 64 << 20  # the user.db-wal file is cut back to this after a checkpoint
SQL_TEXT_BYTES_MAX = 1 << 20  # one statement's text (MAX_BODY_BYTES bounds it first by default)
SQL_PARAMS_MAX = 32766  # bound parameters per statement (= SQLITE_LIMIT_VARIABLE_NUMBER)

# SQLite's run-time limits on both user connections, apart from SQLITE_LIMIT_LENGTH, which is the
# result budget (`SqlLimits.result_bytes_max`). Each bounds work or memory that the progress
# handler cannot see (parsing, code generation, one function call) or that no user needs.
SQLITE_LIMITS = {
    apsw.SQLITE_LIMIT_SQL_LENGTH: SQL_TEXT_BYTES_MAX,
    apsw.SQLITE_LIMIT_COLUMN: 2000,  # SQLite's default; lower would refuse existing schemas
    apsw.SQLITE_LIMIT_EXPR_DEPTH: 1000,  # parser recursion; a 900-term OR chain still fits
    apsw.SQLITE_LIMIT_COMPOUND_SELECT: 500,  # terms of one UNION chain (parsed recursively)
    apsw.SQLITE_LIMIT_VDBE_OP: 1_000_000,  # program size: a 1 MiB IN list compiles to ~300k ops,
    # while nested CTEs that inline each other grow exponentially and are refused at prepare
    apsw.SQLITE_LIMIT_FUNCTION_ARG: 1000,  # json_object() over a few hundred columns still fits
    apsw.SQLITE_LIMIT_ATTACHED: 0,  # ATTACH is refused anyway; no slot to attach into
    apsw.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 10_000,  # one LIKE/GLOB runs inside one VM step
    apsw.SQLITE_LIMIT_VARIABLE_NUMBER: SQL_PARAMS_MAX,
    apsw.SQLITE_LIMIT_TRIGGER_DEPTH: 100,  # nested trigger programs, each a VM frame in memory
    apsw.SQLITE_LIMIT_WORKER_THREADS: 0,  # sorts stay on our thread, under our deadline
}

# FTS5 reads `PRAGMA data_version` on every write to learn whether another connection changed
# the index; it takes no argument and changes nothing, so it is the one pragma let through.
_ALLOWED_PRAGMAS = frozenset({"data_version"})
_DENIED = {
    apsw.SQLITE_ATTACH: "ATTACH",
    apsw.SQLITE_DETACH: "DETACH",
    apsw.SQLITE_TRANSACTION: "transaction control",
    apsw.SQLITE_SAVEPOINT: "SAVEPOINT",
    apsw.SQLITE_PRAGMA: "PRAGMA",
}
TEMP_OBJECTS = "creating a TEMP table, view, trigger or index"
_TEMP_ACTIONS = frozenset({
    apsw.SQLITE_CREATE_TEMP_TABLE, apsw.SQLITE_CREATE_TEMP_VIEW, apsw.SQLITE_CREATE_TEMP_TRIGGER,
    apsw.SQLITE_CREATE_TEMP_INDEX, apsw.SQLITE_DROP_TEMP_TABLE, apsw.SQLITE_DROP_TEMP_VIEW,
    apsw.SQLITE_DROP_TEMP_TRIGGER, apsw.SQLITE_DROP_TEMP_INDEX,
})
# On the temp schema only reading is harmless (its sqlite_temp_master stays empty). The action
# codes alone miss spellings: `CREATE TABLE temp.x` is SQLITE_CREATE_TABLE on "temp", and
# `CREATE TRIGGER temp.x ... ON t` is SQLITE_CREATE_TRIGGER on "main" plus an INSERT into the
# temp schema's sqlite_temp_master; refusing every non-read action on "temp" catches both.
_TEMP_READS = frozenset({apsw.SQLITE_READ, apsw.SQLITE_SELECT})


@dataclass(frozen=True, slots=True)
class SqlLimits:
    """What one user statement may produce or use (settings SQL_MAX_ROWS, SQL_RESULT_BYTES_MAX,
    SQL_WRITE_BYTES_MAX)."""

    rows_max: int = 10000
    # Handing one value of 64 MB from SQLite to Python holds the GIL for 100-200 ms on a small
    # box (the event loop waits that long); 16 MB, about 10 ms.
    result_bytes_max: int = 16 << 20
    write_bytes_max: int = 1 << 30


@dataclass(slots=True)
class SqlJob:
    """One request's deadline and cancel flag, read on the SQL thread by the progress handler
    and by the row encoder. `clock` is time.monotonic except in tests."""

    deadline: float  # clock() seconds
    limit_ms: int
    cancelled: bool = False
    interrupted: str | None = None
    clock: Callable[[], float] = field(default=time.monotonic)

    def expired(self) -> bool:
        """True (and why, in `interrupted`) once the caller gave up or the deadline passed."""
        if self.cancelled:
            self.interrupted = "the request was cancelled"
            return True
        if self.clock() > self.deadline:
            self.interrupted = f"statement exceeded the time limit of {self.limit_ms} ms"
            return True
        return False

    def check(self) -> None:
        if self.expired():
            raise SqliteError(f"interrupted: {self.interrupted}", field="sql")


def bind_params(params) -> tuple | dict:
    """JSON params -> apsw bindings. Raises SqliteError for unsupported types (as the original)."""
    if params is None:
        return ()
    if type(params) in (list, dict) and len(params) > SQL_PARAMS_MAX:
        raise SqliteError(f"more than {SQL_PARAMS_MAX} parameters", field="params")
    if type(params) is list:
        return tuple(_bind_value(v) for v in params)
    if type(params) is dict:
        return {str(k).lstrip(":@$"): _bind_value(v) for k, v in params.items()}
    raise SqliteError("params must be an array (positional) or an object (named)", field="params")


def _bind_value(v):
    if v is None or type(v) is str or type(v) is float:
        return v
    if type(v) is bool:
        return 1 if v else 0
    if type(v) is int:
        return v if INT64_MIN <= v <= INT64_MAX else float(v)
    raise SqliteError("unsupported parameter type (only null, bool, number, string)", field="params")


def _only_trivia(text: str) -> bool:
    """True if `text` holds nothing but whitespace, comments and semicolons."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace() or c == ";":
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            return False
    return True


class _Guarded:
    """A connection with the limits, the authorizer, the progress handler and the one-statement
    check.

    User statements are prepared with `can_cache=False`: the authorizer runs when a statement
    is prepared, and a cached statement of ours (`COMMIT`, `ROLLBACK`) with the same text would
    otherwise skip it.
    """

    def __init__(self, path: str, *, query_only: bool, limits: SqlLimits):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.limits = limits
        conn = apsw.Connection(path)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA temp_store=FILE")  # sorts and temp b-trees spill to files, not RAM
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}").fetchall()
        if query_only:
            conn.execute("PRAGMA query_only=1")
        conn.enable_load_extension(False)
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        conn.limit(apsw.SQLITE_LIMIT_LENGTH, limits.result_bytes_max)
        for limit, value in SQLITE_LIMITS.items():
            conn.limit(limit, value)
        self.conn = conn
        self._job: SqlJob | None = None
        self._user = False  # the authorizer applies to user statements only
        self._denied: str | None = None
        self._writes = ThreadWrites()
        self._writes_start: int | None = None  # the thread's write counter at the job's first check
        self._writes_checked = 0.0
        conn.authorizer = self._authorize
        conn.set_progress_handler(self._progress, PROGRESS_STEPS)

    def _authorize(self, op, p1, p2, dbname, trigger):
        if not self._user:
            return apsw.SQLITE_OK
        what = _DENIED.get(op)
        if op == apsw.SQLITE_PRAGMA and p2 is None and p1 and p1.lower() in _ALLOWED_PRAGMAS:
            what = None
        if what is None and (op in _TEMP_ACTIONS or (dbname == "temp" and op not in _TEMP_READS)):
            what = TEMP_OBJECTS
        if what is None and op == apsw.SQLITE_FUNCTION and p2 and p2.lower() == "load_extension":
            what = "load_extension"
        if what is not None:
            self._denied = what
            return apsw.SQLITE_DENY
        return apsw.SQLITE_OK

    def _progress(self) -> bool:
        job = self._job
        if job is None:
            return False
        if job.expired():
            return True
        now = time.monotonic()  # not job.clock: this only spaces out the reads below
        if now - self._writes_checked < WRITE_CHECK_INTERVAL_S:
            return False
        self._writes_checked = now
        written = self._writes.read()
        if written is None:
            return False
        if self._writes_start is None:
            # Counted from the first check, one interval in: a statement that ends sooner never
            # pays for a read, and one interval of writes is a few MB against a cap of a GiB.
            self._writes_start = written
            return False
        if written - self._writes_start > self.limits.write_bytes_max:
            job.interrupted = (f"statement wrote more than {self.limits.write_bytes_max} bytes to disk "
                               "(SQL_WRITE_BYTES_MAX)")
            return True
        return False

    def _tracer(self, full_sql: str):
        def trace(cursor, statement: str, bindings) -> bool:
            # `statement` is the first statement's text, a prefix of `full_sql`.
            if not _only_trivia(full_sql[len(statement):]):
                raise InvalidArgument("only one SQL statement per request", field="sql")
            cursor.exec_trace = None
            return True

        return trace

    def _error(self, exc: BaseException) -> SqliteError:
        job = self._job
        if isinstance(exc, apsw.InterruptError) and job is not None and job.interrupted:
            return SqliteError(f"interrupted: {job.interrupted}", field="sql")
        message = str(exc) or type(exc).__name__
        if self._denied is not None and isinstance(exc, (apsw.AuthError, apsw.SQLError)) \
                and ("not authorized" in message or "authorization denied" in message):
            message = f"not authorized: {self._denied} is not allowed in user SQL"
        if isinstance(exc, apsw.TooBigError):
            message = (f"{message}: a string, blob or row may hold at most "
                       f"{self.limits.result_bytes_max} bytes (SQL_RESULT_BYTES_MAX)")
        if isinstance(exc, KeyError):
            message = f"missing named parameter: {exc.args[0]}"
        return SqliteError(message, field="sql")

    def _start(self, job: SqlJob, sql: str, params):
        job.check()  # it may have waited behind other statements past its deadline
        bindings = bind_params(params)
        if "\x00" in sql:
            # SQLite reads statement text up to a NUL; apsw refuses it (ValueError) instead.
            raise SqliteError("SQL text must not contain NUL characters", field="sql")
        # UTF-8 needs at most 4 bytes a character: only long text needs encoding to be measured.
        if len(sql) > SQL_TEXT_BYTES_MAX // 4 and len(sql.encode("utf-8", "surrogatepass")) > SQL_TEXT_BYTES_MAX:
            raise InvalidArgument(f"SQL text longer than {SQL_TEXT_BYTES_MAX} bytes", field="sql")
        if not sql.strip() or _only_trivia(sql):
            raise SqliteError("empty SQL statement", field="sql")
        self._writes_start = None
        self._writes_checked = time.monotonic()
        self._job = job
        self._denied = None
        return bindings

    @property
    def write_cap_enforced(self) -> bool:
        """False where the kernel does not count each thread's writes (see kissvdb/threadio.py)."""
        return self._writes.available

    def close(self) -> None:
        self.conn.close()
        self._writes.close()


EMPTY_ROWS = b'{"rows":[]}'
NOT_UTF8 = "result text is not valid UTF-8; select it as CAST(... AS BLOB) to read its bytes"


class UserSqlReader(_Guarded):
    def __init__(self, path: str, limits: SqlLimits = SqlLimits()):
        super().__init__(path, query_only=True, limits=limits)

    def query(self, job: SqlJob, sql: str, params) -> JsonChunks:
        """Run one read statement; return the response body `{"rows": [...]}`, JSON in pieces.

        Rows are encoded as SQLite steps them, under the same deadline, and refused as soon as
        they pass the row or byte budget (see kissvdb/sql/result.py). Raises SqliteError or
        InvalidArgument (field `sql` or `params`)."""
        bindings = self._start(job, sql, params)
        cursor = self.conn.cursor()
        cursor.exec_trace = self._tracer(sql)
        self._user = True
        try:
            cursor.execute(sql, bindings, can_cache=False)
            first = next(cursor, None)
            if first is None:
                return JsonChunks([EMPTY_ROWS], len(EMPTY_ROWS))
            names = [d[0] for d in cursor.get_description()]
            body = ResultBody(names, bytes_max=self.limits.result_bytes_max,
                              rows_max=self.limits.rows_max, check=job.check)
            body.add(first)
            body.extend(cursor)
            return body.finish()
        except (InvalidArgument, SqliteError):
            raise
        except (apsw.Error, KeyError) as exc:
            raise self._error(exc) from None
        except UnicodeDecodeError:
            # apsw decodes TEXT values as UTF-8 and SQLite does not check what it stores.
            raise SqliteError(NOT_UTF8, field="sql") from None
        finally:
            self._user = False
            self._job = None
            cursor.close()
            self._ensure_autocommit()

    def _ensure_autocommit(self) -> None:
        if not self.conn.get_autocommit():
            self.conn.execute("ROLLBACK")


class UserSqlWriter(_Guarded):
    def __init__(self, path: str, limits: SqlLimits = SqlLimits()):
        super().__init__(path, query_only=False, limits=limits)

    def exec(self, job: SqlJob, sql: str, params) -> int:
        """Run one statement in its own transaction; return rows_affected. Raises SqliteError."""
        bindings = self._start(job, sql, params)
        conn = self.conn
        before = conn.total_changes()
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.cursor()
        cursor.exec_trace = self._tracer(sql)
        committed = False
        self._user = True
        try:
            cursor.execute(sql, bindings, can_cache=False)
            returned_rows = False
            try:
                for _row in cursor:
                    returned_rows = True
                    break
            except UnicodeDecodeError:
                returned_rows = True  # a row came back; apsw could not decode its TEXT
            self._user = False
            if returned_rows:
                raise SqliteError("Execute returned results - did you mean to call query?", field="sql")
            cursor.close()
            self._refuse_temp_objects()
            conn.execute("COMMIT")
            committed = True
            return conn.total_changes() - before
        except (InvalidArgument, SqliteError):
            raise
        except (apsw.Error, KeyError) as exc:
            raise self._error(exc) from None
        finally:
            self._user = False
            self._job = None
            if not committed:
                cursor.close()
                if not conn.get_autocommit():
                    conn.execute("ROLLBACK")
            assert conn.get_autocommit(), "user SQL left a transaction open"

    def _refuse_temp_objects(self) -> None:
        """The authorizer's TEMP rule, checked again on its outcome: a TEMP object that got past
        it is rolled back with the statement instead of outliving the request."""
        if self.conn.execute("SELECT 1 FROM sqlite_temp_master LIMIT 1").fetchall():
            raise SqliteError(f"not authorized: {TEMP_OBJECTS} is not allowed in user SQL", field="sql")

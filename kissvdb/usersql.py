"""The user's SQLite database (`/v1/sql/*`): explicit pragmas, a guard, a deadline, row limits.

Owns two apsw connections to the user database (default DATA_DIR/sqlite/user.db, WAL journal,
synchronous=FULL): `UserSqlWriter` for `/v1/sql/exec` and `UserSqlReader` for `/v1/sql/query`.
Each is used from exactly one dedicated thread (actors/sql.py); nothing here is thread-safe.

Guarantees (DESIGN "SQL guard"):
- One statement per request: text with a second statement is refused before anything runs.
- `query` runs on a connection with `PRAGMA query_only=1`, so `WITH ... SELECT` and `EXPLAIN`
  work and every write fails inside SQLite, whatever the text starts with.
- An authorizer refuses ATTACH/DETACH (and so `VACUUM INTO`), transaction control and
  savepoints, PRAGMA (statements and pragma functions) and load_extension.
- `exec` runs inside a transaction we open and close: COMMIT on success, ROLLBACK on any error
  (or if the statement returns rows, which `exec` refuses as the original did), so the
  connection is in autocommit after every request. `rows_affected` is the change in
  `total_changes()`.
- A progress handler interrupts a statement past its deadline (or when its caller gave up):
  400 sqlite_error "interrupted: statement exceeded the time limit of N ms". Results longer than
  `max_rows` rows (or `RESULT_BYTES_MAX` bytes) are refused with a 400 instead of exhausting memory.
- Parameters: a JSON array binds `?`/`?N` positionally, an object binds `:name`/`@name`/`$name`.
  null, booleans (1/0), numbers and strings only; integers beyond int64 bind as REAL.
- Rows are objects keyed by column name (a repeated name: the last wins); BLOBs are base64
  (standard alphabet, no padding); NaN/infinite REALs become null.
Never does: touch our WAL or state. The SQL file is the source of truth for SQL data.
"""

from __future__ import annotations

import base64
import math
import os
import time
from dataclasses import dataclass

import apsw

from kissvdb.errors import InvalidArgument, SqliteError

PROGRESS_STEPS = 1000  # VM instructions between deadline checks
RESULT_BYTES_MAX = 64 << 20
BUSY_TIMEOUT_MS = 5000
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

_DENIED = {
    apsw.SQLITE_ATTACH: "ATTACH",
    apsw.SQLITE_DETACH: "DETACH",
    apsw.SQLITE_TRANSACTION: "transaction control",
    apsw.SQLITE_SAVEPOINT: "SAVEPOINT",
    apsw.SQLITE_PRAGMA: "PRAGMA",
}


@dataclass(slots=True)
class SqlJob:
    """One request's deadline and cancel flag, read by the progress handler on the SQL thread."""

    deadline: float  # time.monotonic()
    limit_ms: int
    cancelled: bool = False
    interrupted: str | None = None


def bind_params(params) -> tuple | dict:
    """JSON params -> apsw bindings. Raises SqliteError for unsupported types (as the original)."""
    if params is None:
        return ()
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


def _json_value(v):
    if v is None or type(v) is int or type(v) is str:
        return v
    if type(v) is float:
        return v if math.isfinite(v) else None
    if isinstance(v, bytes):
        return base64.b64encode(v).rstrip(b"=").decode("ascii")
    return v


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
    """A connection with the authorizer, the progress handler and the one-statement check.

    User statements are prepared with `can_cache=False`: the authorizer runs when a statement
    is prepared, and a cached statement of ours (`COMMIT`, `ROLLBACK`) with the same text would
    otherwise skip it.
    """

    def __init__(self, path: str, *, query_only: bool):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        conn = apsw.Connection(path)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        if query_only:
            conn.execute("PRAGMA query_only=1")
        conn.enable_load_extension(False)
        self.conn = conn
        self._job: SqlJob | None = None
        self._user = False  # the authorizer applies to user statements only
        self._denied: str | None = None
        conn.authorizer = self._authorize
        conn.set_progress_handler(self._progress, PROGRESS_STEPS)

    def _authorize(self, op, p1, p2, dbname, trigger):
        if not self._user:
            return apsw.SQLITE_OK
        what = _DENIED.get(op)
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
        if job.cancelled:
            job.interrupted = "the request was cancelled"
            return True
        if time.monotonic() > job.deadline:
            job.interrupted = f"statement exceeded the time limit of {job.limit_ms} ms"
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
        if isinstance(exc, KeyError):
            message = f"missing named parameter: {exc.args[0]}"
        return SqliteError(message, field="sql")

    def _start(self, job: SqlJob, sql: str, params):
        bindings = bind_params(params)
        if "\x00" in sql:
            # SQLite reads statement text up to a NUL; apsw refuses it (ValueError) instead.
            raise SqliteError("SQL text must not contain NUL characters", field="sql")
        if not sql.strip() or _only_trivia(sql):
            raise SqliteError("empty SQL statement", field="sql")
        self._job = job
        self._denied = None
        return bindings

    def close(self) -> None:
        self.conn.close()


NOT_UTF8 = "result text is not valid UTF-8; select it as CAST(... AS BLOB) to read its bytes"


class UserSqlReader(_Guarded):
    def __init__(self, path: str):
        super().__init__(path, query_only=True)

    def query(self, job: SqlJob, sql: str, params, max_rows: int) -> list[dict]:
        bindings = self._start(job, sql, params)
        cursor = self.conn.cursor()
        cursor.exec_trace = self._tracer(sql)
        rows: list[dict] = []
        size = 0
        self._user = True
        try:
            cursor.execute(sql, bindings, can_cache=False)
            names = None
            for row in cursor:
                if names is None:
                    names = [d[0] for d in cursor.get_description()]
                if len(rows) >= max_rows:
                    raise InvalidArgument(
                        f"query returned more than {max_rows} rows (SQL_MAX_ROWS); add a LIMIT", field="sql")
                out = {}
                for name, value in zip(names, row):
                    value = _json_value(value)
                    if type(value) is str:
                        size += len(value)
                    out[name] = value
                if size > RESULT_BYTES_MAX:
                    raise InvalidArgument(
                        f"query result larger than {RESULT_BYTES_MAX} bytes; select fewer rows or columns",
                        field="sql")
                rows.append(out)
            return rows
        except InvalidArgument:
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
    def __init__(self, path: str):
        super().__init__(path, query_only=False)

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

"""kissvdb/sql/user.py without an event loop: parameter binding, the one-statement check, the
authorizer (including statements whose text matches our own cached COMMIT/ROLLBACK, and every
spelling of a TEMP object), SQLite's limits, the deadline (which covers encoding the rows), the
result and temp-space budgets, and the autocommit invariant after every outcome.
"""

from __future__ import annotations

import os
import time

import apsw
import orjson
import pytest

from kissvdb.errors import InvalidArgument, SqliteError
from kissvdb.sql.user import SqlJob, SqlLimits, UserSqlReader, UserSqlWriter, _only_trivia, bind_params


def job(ms: int = 2000) -> SqlJob:
    return SqlJob(time.monotonic() + ms / 1000, ms)


def rows(reader: UserSqlReader, sql: str, params=None) -> list[dict]:
    return orjson.loads(reader.query(job(), sql, params).join())["rows"]


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "sqlite" / "user.db")
    writer, reader = UserSqlWriter(path), UserSqlReader(path)
    yield writer, reader
    writer.close()
    reader.close()


def test_bind_params():
    assert bind_params(None) == ()
    assert bind_params([None, True, False, 1, 1.5, "s", 2**64]) == (None, 1, 0, 1, 1.5, "s", float(2**64))
    assert bind_params({":a": 1, "$b": 2, "c": 3}) == {"a": 1, "b": 2, "c": 3}
    for bad in ([[1]], [{}], "x", 5):
        with pytest.raises(SqliteError):
            bind_params(bad)


@pytest.mark.parametrize("text, trivia", [("", True), ("  ;; ", True), ("-- x\n/* y */;", True),
                                          ("/* open", True), ("select 1", False), ("; x", False)])
def test_only_trivia(text, trivia):
    assert _only_trivia(text) is trivia


def test_exec_and_query_leave_autocommit_after_every_outcome(db):
    writer, reader = db
    assert writer.exec(job(), "CREATE TABLE t(x)", None) == 0
    outcomes = [
        lambda: writer.exec(job(), "INSERT INTO t VALUES (1)", None),
        lambda: writer.exec(job(), "INSERT INTO nope VALUES (1)", None),
        lambda: writer.exec(job(), "SELECT 1", None),
        lambda: writer.exec(job(), "COMMIT", None),
        lambda: writer.exec(job(), "ROLLBACK", None),
        lambda: writer.exec(job(), "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)", None),
        lambda: reader.query(job(), "ROLLBACK", None),
        lambda: reader.query(job(), "INSERT INTO t VALUES (4)", None),
        lambda: reader.query(job(), "SELECT * FROM t", None),
    ]
    for outcome in outcomes:
        try:
            outcome()
        except (SqliteError, InvalidArgument):
            pass
        assert writer.conn.get_autocommit() and reader.conn.get_autocommit()
    assert rows(reader, "SELECT x FROM t") == [{"x": 1}]


def test_deadline_interrupts_and_the_connection_is_usable_after(db):
    writer, reader = db
    loop = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(SqliteError, match="time limit of 50 ms"):
        reader.query(job(50), loop, None)
    cancelled = job(10_000)
    cancelled.cancelled = True
    with pytest.raises(SqliteError, match="cancelled"):
        reader.query(cancelled, loop, None)
    assert rows(reader, "SELECT 1 AS one") == [{"one": 1}]


# ---- TEMP objects: refused however they are spelled, on both connections ------------------

TEMP_STATEMENTS = [
    "CREATE TEMP TABLE t(a)",
    "CREATE TEMPORARY TABLE t(a)",
    "CREATE TABLE temp.t(a)",
    'CREATE TABLE "temp".t(a)',
    "CREATE TABLE TEMP.t(a)",
    "CREATE TEMP TABLE t AS SELECT 42 AS a",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE VIEW temp.v AS SELECT * FROM main.am",
    "CREATE TEMP TRIGGER hidden AFTER INSERT ON main.am BEGIN DELETE FROM main.am; END",
    "CREATE TRIGGER temp.hidden AFTER INSERT ON am BEGIN DELETE FROM am; END",  # SQLITE_CREATE_TRIGGER on main
    "CREATE VIRTUAL TABLE temp.f USING fts5(x)",
]
TEMP_REFUSED = "not authorized: creating a TEMP table, view, trigger or index is not allowed in user SQL"


@pytest.mark.parametrize("sql, message", [(sql, TEMP_REFUSED) for sql in TEMP_STATEMENTS] + [
    ("CREATE INDEX temp.i ON am(a)", 'cannot create a TEMP index on non-TEMP table "am"'),  # SQLite's own
])
def test_temp_schema_objects_are_refused_and_nothing_persists(db, sql, message):
    writer, reader = db
    writer.exec(job(), "CREATE TABLE am(a)", None)
    for run in (lambda: writer.exec(job(), sql, None), lambda: reader.query(job(), sql, None)):
        with pytest.raises(SqliteError) as refused:
            run()
        assert (refused.value.message, refused.value.field) == (message, "sql")
    for conn in (writer.conn, reader.conn):
        assert conn.execute("SELECT count(*) FROM sqlite_temp_master").fetchall() == [(0,)]
    # No hidden trigger: a later insert stays.
    assert writer.exec(job(), "INSERT INTO am VALUES (42)", None) == 1
    assert rows(reader, "SELECT a FROM am") == [{"a": 42}]


def test_reading_the_empty_temp_schema_is_allowed(db):
    _, reader = db
    assert rows(reader, "SELECT count(*) AS n FROM temp.sqlite_master") == [{"n": 0}]


# ---- SQLite's own limits, defensive mode ----------------------------------------------------


def test_a_huge_value_is_refused_by_sqlite_before_it_is_built(db):
    _, reader = db
    with pytest.raises(SqliteError, match="SQL_RESULT_BYTES_MAX") as refused:
        reader.query(job(), "SELECT zeroblob(900000000) AS b", None)
    assert refused.value.field == "sql"
    assert str(16 << 20) in refused.value.message


def test_sql_text_and_parameter_caps_name_their_field(db):
    writer, reader = db
    long_sql = "SELECT 1 AS x" + " " * (1 << 20)
    for run in (lambda: reader.query(job(), long_sql, None), lambda: writer.exec(job(), long_sql, None)):
        with pytest.raises(InvalidArgument, match="SQL text longer than 1048576 bytes") as refused:
            run()
        assert refused.value.field == "sql"
    with pytest.raises(SqliteError, match="more than 32766 parameters") as refused:
        reader.query(job(), "SELECT ?", [1] * 32767)
    assert refused.value.field == "params"


def test_a_program_that_grows_exponentially_is_refused_at_prepare(db):
    _, reader = db
    # Each CTE refers to the previous one twice; inlined, the program doubles per level.
    ctes = ["c0(x) AS (SELECT 1)"] + [f"c{i}(x) AS (SELECT a.x + b.x FROM c{i - 1} a, c{i - 1} b)"
                                       for i in range(1, 24)]
    sql = f"WITH {', '.join(ctes)} SELECT x FROM c23"
    with pytest.raises(SqliteError) as refused:
        reader.query(job(), sql, None)
    assert refused.value.field == "sql"


def test_defensive_mode_keeps_virtual_table_internals_read_only(db):
    writer, reader = db
    writer.exec(job(), "CREATE VIRTUAL TABLE f USING fts5(body)", None)
    writer.exec(job(), "INSERT INTO f VALUES ('hola mundo')", None)  # total_changes counts shadow rows too
    for sql in ("DELETE FROM f_data", "UPDATE f_content SET c0 = 'x'", "INSERT INTO f_config VALUES ('version', 9)"):
        with pytest.raises(SqliteError, match="may not be modified"):
            writer.exec(job(), sql, None)
    assert rows(reader, "SELECT body FROM f WHERE f MATCH 'hola'") == [{"body": "hola mundo"}]


def test_both_connections_are_defensive_with_an_untrusted_schema(db):
    for conn in (c.conn for c in db):
        assert conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, -1) == 1
        assert conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, -1) == 0
        assert conn.limit(apsw.SQLITE_LIMIT_ATTACHED) == 0
        assert conn.limit(apsw.SQLITE_LIMIT_LENGTH) == 16 << 20


# ---- budgets: result bytes, temp bytes, and a deadline that covers encoding ----------------


def test_result_budget_is_exact_and_refused_rows_free_their_memory(tmp_path):
    path = str(tmp_path / "user.db")
    exact = len(b'{"rows":[{"s":"' + b"a" * 1000 + b'"}]}')
    sql = "SELECT printf('%.*c', 1000, 'a') AS s"
    fits = UserSqlReader(path, SqlLimits(result_bytes_max=exact))
    body = fits.query(job(), sql, None)
    assert body.length == len(body.join()) == exact
    tight = UserSqlReader(path, SqlLimits(result_bytes_max=exact - 1))
    with pytest.raises(InvalidArgument, match=f"larger than {exact - 1} bytes") as refused:
        tight.query(job(), sql, None)
    assert refused.value.field == "sql"
    many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) SELECT x, 'abc' AS s FROM c"
    with pytest.raises(InvalidArgument, match="SQL_RESULT_BYTES_MAX"):
        tight.query(job(), many, None)


@pytest.mark.parametrize("sql", [
    # GROUP BY over 30 MB of distinct keys: a sort that spills to files once the cache is full.
    "SELECT count(*) AS n FROM (SELECT randomblob(1000) AS b, count(*) FROM c GROUP BY b)",
    # ORDER BY ... LIMIT/OFFSET: a temporary b-tree, which SQLite's own spill counter never sees.
    "SELECT length(b) AS n FROM (SELECT randomblob(1000) AS b FROM c) ORDER BY b LIMIT 1 OFFSET 29999",
])
@pytest.mark.skipif(not os.path.exists("/proc/thread-self/io"), reason=(
    "the write budget is measured with Linux's per-thread I/O accounting (kissvdb/threadio.py); "
    "without /proc/thread-self/io the server does not enforce it, as docs/security.md says"))
def test_statements_writing_past_the_write_budget_are_interrupted(tmp_path, sql):
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 30000) " + sql
    path = str(tmp_path / "user.db")
    small = UserSqlReader(path, SqlLimits(write_bytes_max=1 << 20))
    assert small.write_cap_enforced
    with pytest.raises(SqliteError, match="wrote more than 1048576 bytes to disk") as refused:
        small.query(job(30_000), sql, None)
    assert refused.value.field == "sql"
    assert rows(small, "SELECT 1 AS one") == [{"one": 1}]


def test_a_sort_within_the_write_budget_completes(tmp_path):
    reader = UserSqlReader(str(tmp_path / "user.db"), SqlLimits(write_bytes_max=1 << 30))
    sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 30000) "
           "SELECT count(*) AS n FROM (SELECT randomblob(1000) AS b, count(*) FROM c GROUP BY b)")
    assert orjson.loads(reader.query(job(30_000), sql, None).join()) == {"rows": [{"n": 30000}]}


class StepClock:
    """A clock that moves one second per reading: the deadline passes after `n` readings."""

    def __init__(self):
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return float(self.readings)


def test_the_deadline_covers_encoding_the_rows(db):
    _, reader = db
    # One row, a handful of VM steps (the progress handler never runs): all the time is encoding,
    # the 192 chunks of one 12 MiB string.
    sql = "SELECT printf('%.*c', 12582912, 'a') AS s"
    clock = StepClock()
    slow = SqlJob(deadline=5.0, limit_ms=5000, clock=clock)
    with pytest.raises(SqliteError, match="interrupted: statement exceeded the time limit of 5000 ms"):
        reader.query(slow, sql, None)
    assert clock.readings == 6  # stopped at the first reading past the deadline, not at the end
    assert rows(reader, "SELECT 2 AS two") == [{"two": 2}]


def test_a_statement_whose_deadline_passed_while_it_waited_never_runs(db):
    writer, reader = db
    writer.exec(job(), "CREATE TABLE t(x)", None)
    late = SqlJob(deadline=time.monotonic() - 1, limit_ms=100)
    with pytest.raises(SqliteError, match="time limit of 100 ms"):
        writer.exec(late, "INSERT INTO t VALUES (1)", None)
    with pytest.raises(SqliteError, match="time limit of 100 ms"):
        reader.query(SqlJob(deadline=time.monotonic() - 1, limit_ms=100), "SELECT 1", None)
    assert rows(reader, "SELECT count(*) AS n FROM t") == [{"n": 0}]
    assert writer.conn.get_autocommit()

"""kissvdb/usersql.py without an event loop: parameter binding, the one-statement check, the
authorizer (including statements whose text matches our own cached COMMIT/ROLLBACK), the
deadline, and the autocommit invariant after every outcome.
"""

from __future__ import annotations

import time

import pytest

from kissvdb.errors import InvalidArgument, SqliteError
from kissvdb.usersql import SqlJob, UserSqlReader, UserSqlWriter, _only_trivia, bind_params


def job(ms: int = 2000) -> SqlJob:
    return SqlJob(time.monotonic() + ms / 1000, ms)


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
        lambda: reader.query(job(), "ROLLBACK", None, 10),
        lambda: reader.query(job(), "INSERT INTO t VALUES (4)", None, 10),
        lambda: reader.query(job(), "SELECT * FROM t", None, 10),
    ]
    for outcome in outcomes:
        try:
            outcome()
        except (SqliteError, InvalidArgument):
            pass
        assert writer.conn.get_autocommit() and reader.conn.get_autocommit()
    assert reader.query(job(), "SELECT x FROM t", None, 10) == [{"x": 1}]


def test_deadline_interrupts_and_the_connection_is_usable_after(db):
    writer, reader = db
    loop = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(SqliteError, match="time limit of 50 ms"):
        reader.query(job(50), loop, None, 10)
    cancelled = job(10_000)
    cancelled.cancelled = True
    with pytest.raises(SqliteError, match="cancelled"):
        reader.query(cancelled, loop, None, 10)
    assert reader.query(job(), "SELECT 1 AS one", None, 10) == [{"one": 1}]

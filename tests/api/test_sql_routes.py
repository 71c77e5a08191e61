"""`/v1/sql/query` and `/v1/sql/exec` (contract §3.9, §5.4, DESIGN "SQL guard").

Every refusal is followed by a read-back proving nothing changed, and by a statement that must
work, proving the connection is back in autocommit.
"""

from __future__ import annotations

import base64

import pytest
import trio

from tests.api.test_stream_routes import open_stream, read_frames
from tests.helpers import assert_error, wait_until
from tests.loop_hold import run_within_budget


async def q(api, sql: str, params=None):
    body = {"sql": sql} if params is None else {"sql": sql, "params": params}
    return await api.post("/v1/sql/query", json=body)


async def x(api, sql: str, params=None):
    body = {"sql": sql} if params is None else {"sql": sql, "params": params}
    return await api.post("/v1/sql/exec", json=body)


async def rows(api, sql: str, params=None) -> list[dict]:
    reply = await q(api, sql, params)
    assert reply.status_code == 200, reply.content
    return reply.json()["rows"]


async def affected(api, sql: str, params=None) -> int:
    reply = await x(api, sql, params)
    assert reply.status_code == 200, reply.content
    return reply.json()["rows_affected"]


async def make_table(api) -> None:
    assert await affected(api, "CREATE TABLE t(id INTEGER PRIMARY KEY, body)") == 0
    assert await affected(api, "INSERT INTO t(body) VALUES (?), (?)", ["hola", "mundo"]) == 2


async def test_exec_then_query_as_the_original_test(api):
    await make_table(api)
    assert await rows(api, "SELECT body FROM t WHERE id = ?", [1]) == [{"body": "hola"}]
    assert await rows(api, "select * from t order by id") == [{"id": 1, "body": "hola"}, {"id": 2, "body": "mundo"}]


async def test_params_of_every_json_type(api):
    await affected(api, "CREATE TABLE p(v)")
    values = [None, True, False, 0, -7, 2**63 - 1, 2**63, 1.5, -0.0, "", "texto ñ", "x" * 1000]
    for v in values:
        assert await affected(api, "INSERT INTO p VALUES (?)", [v]) == 1
    got = await rows(api, "SELECT v, typeof(v) AS t FROM p ORDER BY rowid")
    assert [r["t"] for r in got] == ["null", "integer", "integer", "integer", "integer", "integer", "real",
                                     "real", "real", "text", "text", "text"]
    assert [r["v"] for r in got] == [None, 1, 0, 0, -7, 2**63 - 1, float(2**63), 1.5, 0.0, "", "texto ñ", "x" * 1000]


async def test_named_params(api):
    await make_table(api)
    assert await rows(api, "SELECT body FROM t WHERE id = :id OR body = $b", {"id": 1, "b": "mundo"}) == [
        {"body": "hola"}, {"body": "mundo"}]
    assert await rows(api, "SELECT @x AS x", {"@x": 5}) == [{"x": 5}]
    assert_error(await q(api, "SELECT :missing", {}), 400, "sqlite_error", message="missing named parameter: missing")


@pytest.mark.parametrize("params", [[[1]], [{"a": 1}], {"a": [1]}])
async def test_unsupported_param_types_are_sqlite_error(api, params):
    await make_table(api)
    reply = await x(api, "INSERT INTO t(body) VALUES (?)", params)
    assert_error(reply, 400, "sqlite_error", message="unsupported parameter type (only null, bool, number, string)")
    assert len(await rows(api, "SELECT * FROM t")) == 2


async def test_row_encoding(api):
    got = await rows(api, "SELECT 1 AS i, 2.5 AS r, 'é' AS s, NULL AS n, x'00ff10' AS b, x'' AS e, "
                          "1e999 AS inf, 3 AS i")
    assert got == [{"i": 3, "r": 2.5, "s": "é", "n": None, "b": "AP8Q", "e": "", "inf": None}]
    assert (await rows(api, "SELECT x'ffff' AS b"))[0]["b"] == "//8"  # standard alphabet, no padding


async def test_query_is_read_only_whatever_the_text(api):
    await make_table(api)
    for sql in ("INSERT INTO t(body) VALUES ('no')", "DELETE FROM t", "DROP TABLE t",
                "WITH a AS (SELECT 1) INSERT INTO t(body) SELECT 'no' FROM a", "CREATE TABLE u(x)"):
        assert_error(await q(api, sql), 400, "sqlite_error", message="attempt to write a readonly database")
    assert len(await rows(api, "SELECT * FROM t")) == 2
    assert await rows(api, "WITH a(n) AS (SELECT 2) SELECT n FROM a") == [{"n": 2}]
    assert len(await rows(api, "EXPLAIN SELECT * FROM t")) > 0
    assert await rows(api, "  select count(*) AS c from t") == [{"c": 2}]


async def test_exec_refuses_statements_that_return_rows(api):
    await make_table(api)
    assert_error(await x(api, "SELECT * FROM t"), 400, "sqlite_error")
    assert_error(await x(api, "INSERT INTO t(body) VALUES ('r') RETURNING id"), 400, "sqlite_error")
    assert len(await rows(api, "SELECT * FROM t")) == 2  # the RETURNING insert was rolled back


@pytest.mark.parametrize("route", ["query", "exec"])
@pytest.mark.parametrize(
    "sql, what",
    [
        ("ATTACH DATABASE ':memory:' AS other", "ATTACH"),
        ("DETACH DATABASE other", "DETACH"),
        ("BEGIN", "transaction control"),
        ("COMMIT", "transaction control"),
        ("ROLLBACK", "transaction control"),  # same text as our own (cached) statements
        ("BEGIN IMMEDIATE", "transaction control"),
        ("SAVEPOINT s1", "SAVEPOINT"),
        ("PRAGMA user_version = 5", "PRAGMA"),
        ("PRAGMA journal_mode", "PRAGMA"),
        ("SELECT * FROM pragma_table_info('t')", "PRAGMA"),
        ("SELECT load_extension('/tmp/nope')", "load_extension"),
    ],
)
async def test_authorizer_refusals(api, route, sql, what):
    await make_table(api)
    reply = await api.post(f"/v1/sql/{route}", json={"sql": sql})
    body = assert_error(reply, 400, "sqlite_error")
    assert what in body["message"] and "not authorized" in body["message"], body
    # autocommit afterwards: a write and a read both work and see each other
    assert await affected(api, "INSERT INTO t(body) VALUES ('after')") == 1
    assert len(await rows(api, "SELECT * FROM t")) == 3


async def test_vacuum_into_is_refused(api, tmp_path):
    target = tmp_path / "copy.db"
    assert_error(await x(api, f"VACUUM INTO '{target}'"), 400, "sqlite_error")
    assert_error(await q(api, f"VACUUM INTO '{target}'"), 400, "sqlite_error")
    assert not target.exists()


@pytest.mark.parametrize("sql", ["INSERT INTO t(body) VALUES ('a'); DROP TABLE t",
                                 "SELECT 1; SELECT 2", "INSERT INTO t(body) VALUES ('a');;DELETE FROM t"])
async def test_one_statement_per_request(api, sql):
    await make_table(api)
    for route in ("exec", "query"):
        reply = await api.post(f"/v1/sql/{route}", json={"sql": sql})
        assert_error(reply, 400, "invalid_argument", message="only one SQL statement per request", field="sql")
    assert len(await rows(api, "SELECT * FROM t")) == 2


async def test_trailing_semicolons_and_comments_are_one_statement(api):
    await make_table(api)
    assert await affected(api, "UPDATE t SET body = 'x';  -- done\n /* really */ ;") == 2


async def test_rows_affected_counts_total_changes(api):
    await make_table(api)
    assert await affected(api, "UPDATE t SET body = 'z'") == 2
    assert await affected(api, "UPDATE t SET body = 'z' WHERE id = 99") == 0
    assert await affected(api, "DELETE FROM t") == 2


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT * FROM nope", "no such table: nope"),
        ("SELEC 1", 'near "SELEC": syntax error'),
        ("SELECT ?", "Incorrect number of bindings"),
    ],
)
async def test_sqlite_errors_carry_the_driver_message(api, sql, message):
    reply = await q(api, sql, [1, 2] if "?" in sql else None)
    body = assert_error(reply, 400, "sqlite_error")
    assert message in body["message"], body


async def test_constraint_errors_roll_back(api):
    assert await affected(api, "CREATE TABLE u(id INTEGER PRIMARY KEY, v NOT NULL)") == 0
    assert await affected(api, "INSERT INTO u VALUES (1, 'a')") == 1
    body = assert_error(await x(api, "INSERT INTO u VALUES (1, 'b')"), 400, "sqlite_error")
    assert "UNIQUE constraint failed" in body["message"]
    assert await rows(api, "SELECT v FROM u") == [{"v": "a"}]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({}, 422, "sql"),
        ({"sql": 1}, 422, "sql"),
        ({"sql": "SELECT 1", "params": "x"}, 422, "params"),
        ({"sql": ""}, 400, "sql"),
        ({"sql": "  -- nothing\n"}, 400, "sql"),
    ],
)
async def test_body_errors(api, body, status, field):
    for route in ("query", "exec"):
        assert_error(await api.post(f"/v1/sql/{route}", json=body), status, field=field)


async def test_runaway_statements_are_interrupted_within_the_time_limit(make_api):
    async with make_api(sql_time_limit_ms=200) as api:
        loop = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        body = assert_error(await q(api, loop), 400, "sqlite_error")
        assert body["message"] == "interrupted: statement exceeded the time limit of 200 ms"
        assert await affected(api, "CREATE TABLE t(x)") == 0
        insert = ("INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                  "SELECT x FROM c")
        body = assert_error(await x(api, insert), 400, "sqlite_error")
        assert body["message"].startswith("interrupted")
        assert await rows(api, "SELECT count(*) AS n FROM t") == [{"n": 0}]  # rolled back
        assert await affected(api, "INSERT INTO t VALUES (1)") == 1


async def test_time_limit_stays_below_the_request_timeout(make_api):
    async with make_api(request_timeout_secs=2, sql_time_limit_ms=60_000) as api:
        assert api.engine.sql.time_limit_ms < 2000


async def test_row_limit_is_a_clear_error(make_api):
    async with make_api(sql_max_rows=5) as api:
        many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 6) SELECT x FROM c"
        body = assert_error(await q(api, many), 400, "invalid_argument")
        assert "more than 5 rows" in body["message"]
        assert len(await rows(api, many.replace("LIMIT 6", "LIMIT 5"))) == 5


async def test_sqlite_disabled_is_404_not_enabled(make_api):
    async with make_api(sqlite_enabled=False) as api:
        for route in ("query", "exec"):
            reply = await api.post(f"/v1/sql/{route}", json={"sql": "SELECT 1"})
            assert_error(reply, 404, "not_enabled", message="sqlite module is disabled")
            reply = await api.post(f"/v1/sql/{route}", data=b"not even json")
            assert_error(reply, 404, "not_enabled")


async def test_user_db_location_and_journal(api):
    import os

    path = api.engine.sql.path
    assert path == os.path.join(api.app.settings.data_dir, "sqlite", "user.db")
    await make_table(api)
    assert os.path.exists(path)
    assert os.path.exists(path + "-wal")  # WAL journal mode


async def test_sqlite_db_path_setting(make_api, tmp_path):
    target = tmp_path / "elsewhere" / "mine.db"
    async with make_api(sqlite_db_path=str(target)) as api:
        await make_table(api)
    assert target.exists()


async def test_exec_emits_sql_exec_after_commit(api):
    await make_table(api)
    async with open_stream(api, "/v1/stream?since=0&types=sql_exec") as conn:
        frames = await read_frames(conn, 2)
    assert [f["data"]["data"] for f in frames] == [
        {"statement": "CREATE TABLE t(id INTEGER PRIMARY KEY, body)", "rows_affected": 0},
        {"statement": "INSERT INTO t(body) VALUES (?), (?)", "rows_affected": 2},
    ]
    before = api.engine.durable_offset
    assert_error(await x(api, "INSERT INTO nope VALUES (1)"), 400)
    await rows(api, "SELECT * FROM t")
    assert api.engine.durable_offset == before  # failures and queries log nothing


# ---- issue 9, defect 5: TEMP objects never outlive a request ------------------------------


async def test_temp_objects_are_refused_and_cannot_hide_a_trigger(api):
    assert await affected(api, "CREATE TABLE am(a)") == 0
    refused = "not authorized: creating a TEMP table, view, trigger or index is not allowed in user SQL"
    for sql in ("CREATE TEMP TABLE t(a)", "CREATE TABLE temp.t(a)",
                "CREATE TEMP TRIGGER hidden AFTER INSERT ON main.am BEGIN DELETE FROM main.am; END",
                "CREATE TRIGGER temp.hidden AFTER INSERT ON am BEGIN DELETE FROM am; END"):
        for route in ("exec", "query"):
            reply = await api.post(f"/v1/sql/{route}", json={"sql": sql})
            assert_error(reply, 400, "sqlite_error", field="sql", message=refused)
    assert_error(await x(api, "INSERT INTO t VALUES (42)"), 400, "sqlite_error", message="no such table: t")
    assert await affected(api, "INSERT INTO am VALUES (42)") == 1
    assert await rows(api, "SELECT a FROM am") == [{"a": 42}]  # no hidden trigger deleted it
    assert await rows(api, "SELECT count(*) AS n FROM sqlite_temp_master") == [{"n": 0}]


# ---- issue 9, defect 3 and "Budgets": caps, deadlines and a free event loop ---------------

BUDGET_RESULT_BYTES = 16 << 20  # the default SQL_RESULT_BYTES_MAX
WORST_ROWS = 2
# Each row: 1.1 M control characters (JSON escapes each to six bytes, over one encoding chunk)
# and an 800 kB blob (base64, over one chunk): 7.7 MB of JSON a row.
WORST_TEXT_CHARS, WORST_BLOB_BYTES = 1_100_000, 800_000


async def store_worst_rows(api) -> None:
    assert await affected(api, "CREATE TABLE worst(t, b)") == 0
    insert = ("INSERT INTO worst WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?) "
              "SELECT printf('%.*c', ?, char(1)), randomblob(?) FROM c")
    assert await affected(api, insert, [WORST_ROWS, WORST_TEXT_CHARS, WORST_BLOB_BYTES]) == WORST_ROWS


async def test_zeroblob_of_900_mb_is_refused_by_sqlite_naming_sql(api):
    reply = await q(api, "SELECT zeroblob(900000000) AS b")
    body = assert_error(reply, 400, "sqlite_error", field="sql")
    assert "SQL_RESULT_BYTES_MAX" in body["message"] and str(16 << 20) in body["message"], body


RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


async def largest_legal_sql_requests(api, insert: str) -> dict:
    """The SQL family's largest legal requests against `worst`; the answers are checked later,
    outside the measured window (parsing 16 MB of JSON in the test would hold the loop)."""
    return {
        "under": await q(api, "SELECT t, b FROM worst"),  # just under the budget
        "over": await q(api, "SELECT t, b, t AS t2 FROM worst"),  # refused as it is reached
        "zeroblob": await q(api, "SELECT zeroblob(900000000) AS b"),
        "runaway": await q(api, RUNAWAY),  # CPU inside SQLite until the time limit
        "insert": await x(api, insert),  # the longest statement a body may carry, and its WAL event
    }


async def test_sql_routes_largest_legal_requests_keep_the_loop_free(make_api):
    async with make_api(sql_time_limit_ms=500) as api:
        await store_worst_rows(api)
        assert await affected(api, "CREATE TABLE wide(n)") == 0
        insert, count = largest_insert(api.app.settings.max_body_bytes)
        with trio.fail_after(120):
            replies = await run_within_budget(lambda: api.get("/v1/health", auth=False),
                                              lambda: largest_legal_sql_requests(api, insert))

        under = replies["under"]
        assert under.status_code == 200, under.content[:200]
        assert BUDGET_RESULT_BYTES * 0.9 < len(under.content) <= BUDGET_RESULT_BYTES
        got = under.json()["rows"]
        assert len(got) == WORST_ROWS and got[0]["t"] == "\x01" * WORST_TEXT_CHARS
        assert len(base64.b64decode(got[0]["b"] + "==")) == WORST_BLOB_BYTES
        body = assert_error(replies["over"], 400, "invalid_argument", field="sql")
        assert "SQL_RESULT_BYTES_MAX" in body["message"]
        assert_error(replies["zeroblob"], 400, "sqlite_error", field="sql")
        body = assert_error(replies["runaway"], 400, "sqlite_error", field="sql")
        assert body["message"] == "interrupted: statement exceeded the time limit of 500 ms"
        assert replies["insert"].json() == {"rows_affected": count}


def largest_insert(body_bytes_max: int) -> tuple[str, int]:
    """`INSERT INTO wide VALUES (0),(1),...` as long as a request body may carry it."""
    framing = len(b'{"sql":""}')
    parts, size = ["INSERT INTO wide VALUES (0)"], len("INSERT INTO wide VALUES (0)") + framing
    while size + len(f",({len(parts)})") <= body_bytes_max:
        parts.append(f",({len(parts)})")
        size += len(parts[-1])
    return "".join(parts), len(parts)


async def test_statements_past_the_waiting_cap_are_refused_with_503(make_api):
    async with make_api(inbox_requests_max=1, sql_time_limit_ms=1000) as api:
        replies = []

        async def slow():
            replies.append(await q(api, RUNAWAY))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                await wait_until(lambda: api.engine.sql._waiting == 1)
                for route in ("query", "exec"):
                    reply = await api.post(f"/v1/sql/{route}", json={"sql": "SELECT 1"})
                    assert_error(reply, 503, "unavailable")
                    assert reply.headers.get("Retry-After") == "1"
        assert_error(replies[0], 400, "sqlite_error", field="sql")
        assert await rows(api, "SELECT 1 AS one") == [{"one": 1}]

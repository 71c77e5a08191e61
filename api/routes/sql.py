"""The SQL routes, `/v1/sql/query` and `/v1/sql/exec` (contract §3.9, §5.4).

Body (both): `{"sql": string, "params": array | object | null [[]]}`. An array binds `?`
positionally, an object binds `:name` / `@name` / `$name` (named params are an addition).
- query: `{"rows": [{column: value}, ...]}`. Runs on a query_only connection: any single
  read statement works (`WITH ... SELECT`, `EXPLAIN`, ...) and every write fails with 400
  sqlite_error (the original refused anything not starting with `select`: a documented
  departure). More than SQL_MAX_ROWS rows or SQL_RESULT_BYTES_MAX bytes -> 400
  invalid_argument. The body arrives encoded, in pieces, from the SQL thread; this handler only
  sends them.
- exec: `{"rows_affected": n}` (the change in total_changes(); 0 for DDL). A statement that
  returns rows is refused (400 sqlite_error), as the original.
SQLite errors -> 400 sqlite_error with SQLite's message; refused statements (ATTACH, PRAGMA,
transactions, load_extension), several statements, or the time limit -> 400 as well.
SQLITE_ENABLED off -> 404 not_enabled "sqlite module is disabled", before the body is read.
"""

from __future__ import annotations

import orjson

from kissvdb.errors import UnprocessableEntity

from ..codec import json_chunks_response, raw_json_response, read_json_object, require_str
from ..routing import Route

_dumps = orjson.dumps


def routes(app) -> list[Route]:
    engine = app.engine

    async def parse(request) -> tuple[str, object]:
        engine.check_sql_enabled()  # 404 before the body is read
        body = await read_json_object(request)
        sql = require_str(body, "sql")
        params = body.get("params")
        if params is not None and type(params) not in (list, dict):
            raise UnprocessableEntity("`params` must be an array, an object or null", field="params")
        return sql, params

    async def sql_query(request):
        sql, params = await parse(request)
        return json_chunks_response(await engine.sql_query_json(sql, params))

    async def sql_exec(request):
        sql, params = await parse(request)
        rows_affected = await engine.sql_exec(sql, params)
        return raw_json_response(_dumps({"rows_affected": rows_affected}))

    return [
        Route("POST", "/v1/sql/query", sql_query, "read", "sql_query"),  # query_only: writes nothing
        Route("POST", "/v1/sql/exec", sql_exec, "write", "sql_exec"),
    ]

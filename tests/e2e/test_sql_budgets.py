"""Issue 9, defect 3, end to end: a read key cannot make a real `kissvdb serve` take gigabytes
or stall. Against the default result budget (SQL_RESULT_BYTES_MAX, 16 MiB) and the worst legal
stored data (rows of control characters, which JSON escapes to six bytes each, and blobs):

- `SELECT zeroblob(900000000)` and a result over the budget are refused with a 400 naming
  `sql`, well within the statement time limit, while /v1/health on another connection keeps
  answering;
- the server's peak and current RSS (/proc/<pid>/status VmHWM, VmRSS) stay within
  `RSS_GROWTH_MAX_BYTES` of what it used before: a resource cap, not a timing;
- the largest legal result (just under the budget) is answered whole, health still answering.
"""

from __future__ import annotations

import httpx
import trio

from tests.loop_hold import run_within_budget

from .server import ServerProcess

TIME_LIMIT_MS = 3000  # SQL_TIME_LIMIT_MS for this server: refusals must come well before it
HTTP_TIMEOUT_S = TIME_LIMIT_MS / 1000 + 5.0  # a refused query answering later than this fails
TEST_TIMEOUT_S = 180.0
RESULT_BYTES_MAX = 16 << 20  # the default SQL_RESULT_BYTES_MAX
RSS_GROWTH_MAX_BYTES = 300 << 20
WORST_ROWS = 2  # 2 x 7.7 MB of JSON: just under the budget
WORST_TEXT_CHARS, WORST_BLOB_BYTES = 1_100_000, 800_000
# 9,000 rows (under SQL_MAX_ROWS) of 2,000 control characters: 108 MB of JSON if it were built.
MANY_ROWS = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 9000) "
             "SELECT x, printf('%.*c', 2000, char(1)) AS t FROM c")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


async def sql(client: httpx.AsyncClient, route: str, text: str, params=None) -> httpx.Response:
    return await client.post(f"/v1/sql/{route}", json={"sql": text, "params": params or []})


def assert_refused_naming_sql(reply: httpx.Response, mentions: str) -> None:
    assert reply.status_code == 400, reply.content[:300]
    body = reply.json()
    assert body.get("field") == "sql" and mentions in body["message"], body


async def test_huge_sql_results_are_refused_without_taking_memory_or_the_loop(tmp_path):
    server = ServerProcess(tmp_path / "data", env={"SQL_TIME_LIMIT_MS": str(TIME_LIMIT_MS)})
    with server, trio.fail_after(TEST_TIMEOUT_S):
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers,
                                     timeout=HTTP_TIMEOUT_S) as client, \
                httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT_S) as health:
            assert (await sql(client, "exec", "CREATE TABLE worst(t, b)")).status_code == 200
            insert = ("INSERT INTO worst WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                      "LIMIT ?) SELECT printf('%.*c', ?, char(1)), randomblob(?) FROM c")
            reply = await sql(client, "exec", insert, [WORST_ROWS, WORST_TEXT_CHARS, WORST_BLOB_BYTES])
            assert reply.json() == {"rows_affected": WORST_ROWS}
            assert (await sql(client, "query", "SELECT count(*) AS n FROM worst")).status_code == 200
            before = memory_kib(server.proc.pid)

            async def refused() -> list[httpx.Response]:
                return [await sql(client, "query", "SELECT zeroblob(900000000) AS b"),
                        await sql(client, "query", "SELECT t, b, t AS t2 FROM worst"),  # large values
                        await sql(client, "query", MANY_ROWS)]  # many small rows

            zeroblob, over, many = await run_within_budget(lambda: health.get("/v1/health"), refused,
                                                           local_loop=False)
            after = memory_kib(server.proc.pid)
            assert_refused_naming_sql(zeroblob, "SQL_RESULT_BYTES_MAX")
            assert_refused_naming_sql(over, f"larger than {RESULT_BYTES_MAX} bytes")
            assert_refused_naming_sql(many, f"larger than {RESULT_BYTES_MAX} bytes")
            grown = {name: (after[name] - before["VmRSS"]) * 1024 for name in ("VmHWM", "VmRSS")}
            print(f"server memory before {before}, after {after} (KiB)")
            assert max(grown.values()) <= RSS_GROWTH_MAX_BYTES, (before, after)

            async def largest() -> httpx.Response:
                return await sql(client, "query", "SELECT t, b FROM worst")

            reply = await run_within_budget(lambda: health.get("/v1/health"), largest, local_loop=False)
            assert reply.status_code == 200, reply.content[:300]
            assert RESULT_BYTES_MAX * 0.85 < len(reply.content) <= RESULT_BYTES_MAX
            rows = reply.json()["rows"]
            assert len(rows) == WORST_ROWS and rows[-1]["t"] == "\x01" * WORST_TEXT_CHARS

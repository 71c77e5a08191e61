"""`/v1/sql/query` results: encoding on the SQL thread, as rows are stepped, against the old way.

The old way (the baseline, rebuilt here in a few lines) stepped every row into a list of dicts,
then encoded the whole list with one orjson call. kissvdb now encodes rows in batches while
SQLite steps them (kissvdb/sql/result.py, via `UserSqlReader.query`). Both run on the same
SQLite file in this process. For each workload the script reports CPU time per query
(time.process_time), the peak of Python memory while it runs (tracemalloc, in a separate
pass), with the ratio new / old, and the longest time another thread (standing in for the
event loop) waited for the GIL while the query ran in a thread of its own.

    .venv/bin/python bench/sql_query.py [--reps 20] [--no-write]
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import sys
import tempfile
import threading
import time
import tracemalloc

import apsw
import orjson

from kissvdb.sql.user import SqlJob, SqlLimits, UserSqlReader, UserSqlWriter

sys.path.insert(0, os.path.dirname(__file__))
from report import progress as say, table, write_section  # noqa: E402

WORKLOADS = [
    # name, setup statements, query
    ("10,000 small rows (int, 24-char text, real)",
     ["CREATE TABLE small(i INTEGER, s TEXT, r REAL)",
      "INSERT INTO small WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10000) "
      "SELECT x, printf('row %020d', x), x / 7.0 FROM c"],
     "SELECT i, s, r FROM small"),
    ("200 rows with a 100 kB blob",
     ["CREATE TABLE blobs(id INTEGER, b BLOB)",
      "INSERT INTO blobs WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200) "
      "SELECT x, randomblob(100000) FROM c"],
     "SELECT id, b FROM blobs"),
    ("8 rows of 1.1 M control characters + 800 kB blob (61 MB of JSON)",
     ["CREATE TABLE worst(t, b)",
      "INSERT INTO worst WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 8) "
      "SELECT printf('%.*c', 1100000, char(1)), randomblob(800000) FROM c"],
     "SELECT t, b FROM worst"),
]


def old_way(conn: apsw.Connection, sql: str) -> bytes:
    """The pre-issue-9 reader: rows into dicts, then one orjson call over them all."""
    rows = []
    cursor = conn.cursor()
    names = None
    for row in cursor.execute(sql):
        if names is None:
            names = [d[0] for d in cursor.get_description()]
        out = {}
        for name, value in zip(names, row):
            if isinstance(value, bytes):
                value = base64.b64encode(value).rstrip(b"=").decode("ascii")
            elif type(value) is float and not math.isfinite(value):
                value = None
            out[name] = value
        rows.append(out)
    return orjson.dumps({"rows": rows})


def job() -> SqlJob:
    return SqlJob(time.monotonic() + 600, 600_000)


def cpu_per_query(fn, reps: int) -> float:
    fn()  # warm the page cache
    started = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - started) / reps


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def longest_gil_wait(fn) -> float:
    """Run `fn` in a thread; meanwhile wake every 0.5 ms here and return the longest gap seen."""
    done = threading.Event()
    worker = threading.Thread(target=lambda: (fn(), done.set()))
    longest, last = 0.0, time.perf_counter()
    worker.start()
    while not done.is_set():
        time.sleep(0.0005)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    return longest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kissvdb-sqlq-") as tmp:
        path = os.path.join(tmp, "user.db")
        writer = UserSqlWriter(path)
        reader = UserSqlReader(path, SqlLimits(rows_max=1 << 30, result_bytes_max=1 << 30))
        plain = apsw.Connection(path)
        for name, setup, query in WORKLOADS:
            say(f"{name}: setting up")
            for statement in setup:
                writer.exec(job(), statement, None)
            new = lambda: reader.query(job(), query, None)  # noqa: E731
            old = lambda: old_way(plain, query)  # noqa: E731
            assert new().join() == old(), f"{name}: bodies differ"
            reps = max(2, args.reps // (10 if "61 MB" in name else 1))
            say(f"{name}: CPU, {reps} queries each way")
            cpu_old, cpu_new = cpu_per_query(old, reps), cpu_per_query(new, reps)
            say(f"{name}: peak memory")
            mem_old, mem_new = peak_bytes(old), peak_bytes(new)
            say(f"{name}: GIL waits")
            plain_thread = apsw.Connection(path)  # a connection for the worker thread's own use
            gil_old = min(longest_gil_wait(lambda: old_way(plain_thread, query)) for _ in range(3))
            gil_new = min(longest_gil_wait(new) for _ in range(3))
            plain_thread.close()
            size = new().length
            rows.append([name, f"{size / 1e6:.1f}", f"{cpu_old * 1e3:.2f}", f"{cpu_new * 1e3:.2f}",
                         f"{cpu_new / cpu_old:.2f}", f"{mem_old / 1e6:.1f}", f"{mem_new / 1e6:.1f}",
                         f"{mem_new / mem_old:.2f}", f"{gil_old * 1e3:.1f}", f"{gil_new * 1e3:.1f}"])
        for c in (writer, reader, plain):
            c.close()
    text = table(["workload", "body MB", "old CPU ms", "new CPU ms", "CPU new/old",
                  "old peak MB", "new peak MB", "peak new/old", "old GIL wait ms", "new GIL wait ms"], rows)
    text += ("\n\nCPU: time.process_time per query, SQLite stepping included. Peak: tracemalloc's peak of "
             "Python allocations during one query (SQLite's own memory not included); the new body stays "
             "in pieces, sent one after another, where the old one was one object. GIL wait: the longest "
             "a thread waking every 0.5 ms waited while the query ran in another thread (best of 3); the "
             "old way also ran its encoding on the event loop itself, so the loop was held for all of it.")
    print(text)
    if not args.no_write:
        write_section("sql_query", "User SQL query encoding (bench/sql_query.py)", text)


if __name__ == "__main__":
    main()

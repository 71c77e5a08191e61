"""The document routes hold the event loop for less than LOOP_HOLD_MAX_S per task step, at their
largest legal inputs, against the worst legal stored data (issue 9, "Budgets").

The real app over a real Engine, in this process, so a `LoopHold` instrument sees every task
step: the HTTP handlers, the actors and the WAL writer. Parsing, compiling and encoding run on
the loop; SQLite (finds, applies, index builds) and fsync run on their threads and must not
show up here. The data and requests are tests/doc_workload.py's, shared with the end-to-end
test that watches `/v1/health` from another connection.
"""

from __future__ import annotations

import orjson
import trio

from tests.api.conftest import open_api
from tests.doc_workload import COLLECTION, FINDS, largest_body_find, oversized_put_body, worst_doc
from tests.helpers import assert_error
from tests.loop_hold import LOOP_HOLD_MAX_S, LoopHold

STORED = 400  # documents of MAX_JSON_BYTES: ~26 MB in one collection
JSON = {"Content-Type": "application/json"}
TIME_LIMIT_MS = 2000  # keeps the slowest find (which runs into it) short


async def test_document_routes_hold_the_loop_briefly_at_their_limits(tmp_path):
    with trio.fail_after(240):
        async with open_api(tmp_path / "data", sql_time_limit_ms=TIME_LIMIT_MS) as api:
            docs = [orjson.dumps(worst_doc(i)) for i in range(STORED)]
            finds = [(make.__name__, orjson.dumps(make())) for make in FINDS]
            finds.append(("largest_body_find", largest_body_find()))
            oversized = oversized_put_body()
            with LoopHold.installed() as hold:
                async def put_range(start: int) -> None:
                    for i in range(start, STORED, 4):
                        reply = await api.put(f"/v1/doc/{COLLECTION}/d{i:04d}", data=docs[i], headers=JSON)
                        assert reply.status_code == 200, reply.content

                async with trio.open_nursery() as nursery:
                    for start in range(4):
                        nursery.start_soon(put_range, start)
                seeding = hold.longest_s

                answers: dict[str, int] = {}

                async def find(name: str, body: bytes) -> None:
                    reply = await api.post(f"/v1/doc/{COLLECTION}/find", data=body, headers=JSON)
                    answers[name] = reply.status_code
                    if reply.status_code == 400:
                        assert_error(reply, 400, "invalid_argument", field="filter")  # the time limit

                async def writes() -> None:
                    reply = await api.put(f"/v1/doc/{COLLECTION}/d0000", data=docs[1], headers=JSON)
                    assert reply.status_code == 200
                    reply = await api.put(f"/v1/doc/{COLLECTION}/big", data=oversized, headers=JSON)
                    assert_error(reply, 413, field="doc")
                    got = await api.get(f"/v1/doc/{COLLECTION}/d0001")
                    assert got.status_code == 200 and len(got.content) > len(docs[1])

                async with trio.open_nursery() as nursery:
                    for name, body in finds:
                        nursery.start_soon(find, name, body)
                    nursery.start_soon(writes)
                # Built on the docs thread: 200, or 400 if a loaded machine took past the limit.
                reply = await api.post(f"/v1/doc/{COLLECTION}/_index", json={"field": "n"})
                assert reply.status_code in (200, 400), reply.content

            assert answers["largest_answer_find"] == 200
            assert answers["largest_in_find"] == 200
            # Both run off the loop; each finishes or runs into the time limit (400), as the box allows.
            assert answers["slowest_find"] in (200, 400) and answers["largest_body_find"] in (200, 400)
            assert hold.longest_s < LOOP_HOLD_MAX_S, f"{hold.report()} (seeding: {seeding * 1000:.1f} ms)"

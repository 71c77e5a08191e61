"""`/v1/metrics`, the vector collection list and a collection's info, against the worst legal
stored data, keep the event loop free and `/v1/health` answering (issue 9, "Budgets";
tests/loop_hold.py).

What these walk on the loop grows with the number of vector collections (each one's counts, runs
and segments), which MAX_VECTOR_COLLECTIONS now bounds: the test holds that many, of every index
kind. Measured on the 2-core box: ~7 ms for /v1/metrics or the list of 1,000. The server runs
with `memory` on only to create them quickly (a durable creation fsyncs a directory, its files
and two WAL events); what list and metrics do is the same.
"""

from __future__ import annotations

import trio

from kissvdb.config import Settings
from tests.loop_hold import run_within_budget

DEFAULTS = Settings()
DIM = 8  # what list and metrics do per collection does not depend on it; memory does


def kind(i: int) -> str:
    """Every index kind; few HNSW ones (an empty one reserves ~3 MB for its mutable segment)."""
    return "HNSW" if i % 50 == 0 else ("IVF_FLAT_Q8", "FLAT")[i % 2]


def name(i: int) -> str:
    return f"c{i:04d}" + "n" * (DEFAULTS.max_collection_len - 5)


async def test_metrics_and_collection_listing_keep_the_loop_free_at_the_collection_cap(make_api):
    async with make_api(memory=True) as api:
        with trio.fail_after(240):
            async def create(start: int) -> None:
                for i in range(start, DEFAULTS.max_vector_collections, 8):
                    reply = await api.post(f"/v1/vector/{name(i)}",
                                           json={"dim": DIM, "metric": "cosine",
                                                 "index": kind(i)})
                    assert reply.status_code == 200, reply.content

            async with trio.open_nursery() as nursery:
                for start in range(8):
                    nursery.start_soon(create, start)

            async def largest_requests() -> dict:
                return {
                    "metrics": await api.get("/v1/metrics"),
                    "list": await api.get("/v1/vector"),
                    "info": await api.get(f"/v1/vector/{name(DEFAULTS.max_vector_collections - 1)}"),
                    "over": await api.post("/v1/vector/one-too-many", json={"dim": 2, "metric": "dot"}),
                }

            replies = await run_within_budget(lambda: api.get("/v1/health", auth=False), largest_requests)

        metrics = replies["metrics"].text
        assert f"kissvdb_vector_collections {DEFAULTS.max_vector_collections}\n" in metrics
        listed = replies["list"].json()["collections"]
        assert [c["collection"] for c in listed] == [name(i) for i in range(DEFAULTS.max_vector_collections)]
        assert {c["index"] for c in listed} == {"HNSW", "IVF_FLAT_Q8", "FLAT"}
        assert replies["info"].json()["dim"] == DIM
        assert replies["over"].status_code == 400

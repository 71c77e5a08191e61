"""The change stream (`/v1/stream`) replaying the largest log and tailing live writes never holds
the event loop (issue 9, "Budgets"; tests/loop_hold.py).

A log of ~110 MB of the largest events (1,000 KV values of MAX_JSON_BYTES; 512 vectors of
MAX_VECTOR_DIM with metas of MAX_JSON_BYTES; tests/kv_workload.py, tests/vector_workload.py),
written before the engine was reopened, so nothing is in memory: MAX_STREAM_REPLAYS streams read
all of it back from offset 0, from the WAL files, while the rest of one key's
MAX_STREAMS_PER_KEY streams tail ~30 MB of new writes (most through a filter that drops nearly
every event). The streams are read in another process (tests/e2e/stream_readers.py): parsing
them here would be measured as the server's.

Judged here on the loop thread's CPU per task step, and on /v1/health answering every time. How
long health takes is judged by tests/e2e/test_route_budgets.py, which runs the same against a
real `kissvdb serve` with the probe in another process: in this process, 64 busy streams make
each scheduler round long, and an in-process probe needs several rounds (its own send and
read beside the server's) where a real client needs one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from tests import kv_workload, vector_workload
from tests.api.conftest import API_KEY, open_api
from tests.e2e.health_probe import REPO
from tests.e2e.stream_readers import SENTINEL_PREFIX, check_streams, stream_paths
from tests.loop_hold import LOOP_HOLD_MAX_S, frozen_heap, measure_loop_hold, while_probing_health

DEFAULTS = kv_workload.DEFAULTS
SEGMENT_BYTES = 8 << 20  # the replay crosses a dozen segment files
REPLAYS = DEFAULTS.max_stream_replays
JSON = {"Content-Type": "application/json"}
CBOR = {"Content-Type": "application/cbor"}


async def write(api, kv_bodies: list[bytes], vector_bodies: list[bytes]) -> None:
    for body in kv_bodies:
        reply = await api.post("/v1/state/batch_put", data=body, headers=JSON)
        assert reply.status_code == 200, reply.content[:300]
    for body in vector_bodies:
        reply = await api.post(f"/v1/vector/{vector_workload.COLLECTION}/upsert_batch", data=body, headers=CBOR)
        assert reply.status_code == 200, reply.content[:300]


async def read_streams(api, kv_bodies: list[bytes], vector_bodies: list[bytes]) -> tuple:
    """Open the streams in a reader process, write, then read every stream up to a sentinel
    write. Returns (paths, first live offset, sentinel offset, one summary per stream)."""
    await api.put("/v1/state/start", json={"value": 0})
    live_from = (await api.get("/v1/state/start")).json()["mod_offset"]
    paths = stream_paths(live_from, DEFAULTS.max_streams_per_key, REPLAYS)
    readers = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.e2e.stream_readers", api.url, API_KEY, *paths],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out = b""
    try:
        while b"ready\n" not in out:
            data = await readers.stdout.receive_some()
            assert data, "the stream readers exited before they were ready"
            out += data
        await write(api, kv_bodies, vector_bodies)
        assert (await api.put(f"/v1/state/{SENTINEL_PREFIX}end", json={"value": 1})).status_code == 200
        stop = (await api.get(f"/v1/state/{SENTINEL_PREFIX}end")).json()["mod_offset"]
        await readers.stdin.send_all(f"{stop}\n".encode())
        while data := await readers.stdout.receive_some():
            out += data
        assert await readers.wait() == 0
    finally:
        if readers.returncode is None:
            readers.kill()  # this test failed midway: do not leave the readers behind
        with trio.CancelScope(shield=True):
            await readers.wait()
            await readers.stdin.aclose()
            await readers.stdout.aclose()
    lines = out.decode().splitlines()
    return paths, live_from, stop, [json.loads(line) for line in lines[lines.index("ready") + 1:] if line.strip()]


async def test_streams_replaying_the_largest_log_and_tailing_keep_the_loop_free(tmp_path):
    data = tmp_path / "data"
    with trio.fail_after(300):
        async with open_api(data, wal_segment_max_bytes=SEGMENT_BYTES) as api:
            reply = await api.post(f"/v1/vector/{vector_workload.COLLECTION}",
                                   json={"dim": vector_workload.DIM, "metric": "cosine"})
            assert reply.status_code == 200, reply.content
            vector_bodies = vector_workload.seed_bodies()
            await write(api, kv_workload.seed_batches(), vector_bodies)
        async with open_api(data, wal_segment_max_bytes=SEGMENT_BYTES) as api:
            more = kv_workload.seed_batches(300), vector_bodies[:10]
            with frozen_heap(), measure_loop_hold() as meter:
                probe, (paths, live_from, stop, streams) = await while_probing_health(
                    lambda: api.get("/v1/health", auth=False), lambda: read_streams(api, *more))
            log_reads = await api.metric("kissvdb_sse_log_reads_total")

    assert meter.longest_cpu_s <= LOOP_HOLD_MAX_S, meter.describe()
    assert probe.answered > 0 and not probe.failures, probe.describe()

    check_streams(streams, paths, REPLAYS, live_from, stop)
    # Every replay read the whole log from the files, LOG_READ_BYTES_MAX at a time.
    assert log_reads >= REPLAYS * 100, log_reads

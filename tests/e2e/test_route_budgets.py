"""`/v1/health` keeps answering within LOOP_HOLD_MAX_S on its own connection, on a real
`kissvdb serve`, while the largest legal requests of the KV, vector and change-stream routes run
against the worst legal stored data (issue 9, "Budgets"). The health probes come from another
process (tests/e2e/health_probe.py), as in tests/e2e/test_doc_budgets.py; so do the stream
readers (tests/e2e/stream_readers.py), which parse hundreds of megabytes.

- KV and vectors: lists of 1,000 values of MAX_JSON_BYTES (66 MB each), and the largest
  searches over vectors of MAX_VECTOR_DIM with metas of MAX_JSON_BYTES: a search_batch of
  MAX_VECTOR_BATCH x MAX_K with metas (refused past VECTOR_RESULT_BYTES_MAX), the same without
  metas, one search answering MAX_K metas in JSON and in CBOR (tests/kv_workload.py,
  tests/vector_workload.py; MAX_BODY_BYTES raised to let the largest search_batch in).
- Change stream: a log of ~110 MB of the largest events (KV values of MAX_JSON_BYTES; vectors of
  MAX_VECTOR_DIM with metas of MAX_JSON_BYTES), read back from offset 0 by MAX_STREAM_REPLAYS
  streams at once, straight from the WAL files (the server restarted: nothing is in memory),
  while the rest of one key's MAX_STREAMS_PER_KEY streams tail the live writes, most of them
  through a filter that drops nearly every event.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from kissvdb.config import Settings
from tests import kv_workload, vector_workload
from tests.loop_hold import LOOP_HOLD_MAX_S

from .health_probe import CLIENT_TIMEOUT_S, REPO, Prober, run_threads
from .server import ServerProcess, parse_metrics
from .stream_readers import SENTINEL_PREFIX, check_streams, stream_paths

DEFAULTS = Settings()
JSON = {"Content-Type": "application/json"}
CBOR = {"Content-Type": "application/cbor"}


def assert_health_in_budget(probes: list[dict]) -> None:
    assert probes and all(p["status"] == 200 for p in probes), probes[:3]
    worst = max(probes, key=lambda p: p["held_s"])
    assert worst["held_s"] < LOOP_HOLD_MAX_S, (
        f"/v1/health took {worst['held_s'] * 1000:.1f} ms (wall {worst['wall_s'] * 1000:.1f} ms) "
        f"of {len(probes)} probes")
    print(f"{len(probes)} health probes, slowest {worst['held_s'] * 1000:.1f} ms "
          f"(wall {worst['wall_s'] * 1000:.1f} ms)")


def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=server.headers, timeout=CLIENT_TIMEOUT_S)


def write_kv(server: ServerProcess, bodies: list[bytes]) -> None:
    with client(server) as c:
        for body in bodies:
            reply = c.post("/v1/state/batch_put", content=body, headers=JSON)
            assert reply.status_code == 200, reply.text[:300]


def write_vectors(server: ServerProcess, bodies: list[bytes]) -> None:
    with client(server) as c:
        for body in bodies:
            reply = c.post(f"/v1/vector/{vector_workload.COLLECTION}/upsert_batch", content=body, headers=CBOR)
            assert reply.status_code == 200, reply.text[:300]


def read_all(c: httpx.Client, method: str, path: str, **kw) -> tuple[int, int]:
    """(status, body bytes) of one request, its body read and dropped as it comes."""
    with c.stream(method, path, **kw) as reply:
        return reply.status_code, sum(len(piece) for piece in reply.iter_raw())


def test_health_answers_in_budget_while_the_largest_kv_and_vector_requests_run(tmp_path):
    env = {"MAX_BODY_BYTES": str(vector_workload.BODY_BYTES_MAX)}
    c_path = f"/v1/vector/{vector_workload.COLLECTION}"
    with ServerProcess(tmp_path / "data", env=env) as server:
        with client(server) as c:
            reply = c.post(c_path, json={"dim": vector_workload.DIM, "metric": "cosine"})
            assert reply.status_code == 200, reply.text
        kv_bodies, vector_bodies = kv_workload.seed_batches(), vector_workload.seed_bodies()
        run_threads(lambda: write_kv(server, kv_bodies), lambda: write_vectors(server, vector_bodies))
        batch_meta = vector_workload.search_batch(include_meta=True)
        batch_ids = vector_workload.search_batch(include_meta=False)
        one = vector_workload.largest_search()
        cbor_out = {**CBOR, "Accept": "application/cbor"}
        answers: dict[str, list] = {}

        def lists() -> None:
            with client(server) as c:
                answers["list"] = [read_all(c, "GET", "/v1/state?limit=1000") for _ in range(3)]

        def searches() -> None:
            with client(server) as c:
                answers["refused"] = [read_all(c, "POST", f"{c_path}/search_batch", content=batch_meta, headers=h)
                                      for h in (CBOR, cbor_out)]
                answers["batch"] = [read_all(c, "POST", f"{c_path}/search_batch", content=batch_ids, headers=CBOR)]
                answers["search"] = [read_all(c, "POST", f"{c_path}/search", content=one, headers=h)
                                     for h in (CBOR, cbor_out)]

        prober = Prober(server)
        try:
            run_threads(lists, searches)
        finally:
            probes = prober.finish()

    assert all(status == 200 and size > 66_000_000 for status, size in answers["list"]), answers["list"]
    assert [status for status, _ in answers["refused"]] == [400, 400]
    assert answers["batch"][0][0] == 200
    assert all(status == 200 and size > DEFAULTS.max_k * 32_768 for status, size in answers["search"])
    assert_health_in_budget(probes)


class Readers:
    """tests/e2e/stream_readers.py in its own process, one stream per path."""

    def __init__(self, server: ServerProcess, paths: list[str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.stream_readers", server.base_url, server.api_key, *paths],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def finish(self, stop_offset: int) -> list[dict]:
        out, _ = self.proc.communicate(input=f"{stop_offset}\n", timeout=2 * CLIENT_TIMEOUT_S)
        assert self.proc.returncode == 0
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_health_answers_in_budget_while_streams_replay_the_largest_log_and_tail(tmp_path):
    env = {"WAL_SEGMENT_MAX_BYTES": str(8 << 20)}  # the replay crosses a dozen segment files
    with ServerProcess(tmp_path / "data", env=env) as server:
        with client(server) as c:
            reply = c.post(f"/v1/vector/{vector_workload.COLLECTION}",
                           json={"dim": vector_workload.DIM, "metric": "cosine"})
            assert reply.status_code == 200, reply.text
        kv_bodies, vector_bodies = kv_workload.seed_batches(), vector_workload.seed_bodies()
        run_threads(lambda: write_kv(server, kv_bodies), lambda: write_vectors(server, vector_bodies))
        server.stop()
        server.start()  # every event is in the WAL files only: a replay reads them all

        with client(server) as c:
            assert c.put("/v1/state/start", json={"value": 0}).status_code == 200
            live_from = c.get("/v1/state/start").json()["mod_offset"]
        replays = DEFAULTS.max_stream_replays
        paths = stream_paths(live_from, DEFAULTS.max_streams_per_key, replays)
        prober = Prober(server)
        try:
            readers = Readers(server, paths)
            more_kv = kv_workload.seed_batches(300)
            run_threads(lambda: write_kv(server, more_kv), lambda: write_vectors(server, vector_bodies[:10]))
            with client(server) as c:
                assert c.put(f"/v1/state/{SENTINEL_PREFIX}end", json={"value": 1}).status_code == 200
                stop = c.get(f"/v1/state/{SENTINEL_PREFIX}end").json()["mod_offset"]
            streams = readers.finish(stop)
        finally:
            probes = prober.finish()
        with client(server) as c:
            log_reads = parse_metrics(c.get("/v1/metrics").text)["kissvdb_sse_log_reads_total"]

    check_streams(streams, paths, replays, live_from, stop)
    # Each replay read the whole log from the files, a chunk of LOG_READ_BYTES_MAX at a time.
    assert log_reads >= replays * 100, log_reads
    assert_health_in_budget(probes)

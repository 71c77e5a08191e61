"""Boot replays only the WAL tail after the last checkpoint (issue 2: "restart after a long
history replays only the tail (count the replayed events)").

A long history is written and the server is stopped gracefully, which checkpoints at shutdown:
the next boot replays nothing. A few more writes follow and the server is killed with SIGKILL.

A process crash loses nothing the OS already holds: state.sqlite commits every applied batch
with its applied offset (synced only at checkpoints), so after a plain SIGKILL the boot may
replay anything from 0 to the tail, never the history. To count an exact replay, the crash also
simulates what a power cut may do to state.sqlite under `synchronous=NORMAL`: it removes
state.sqlite's SQLite WAL (`state.sqlite-wal`, `-shm`), which the shutdown checkpoint had
truncated, reverting the file to that checkpoint. The boot must then replay exactly the tail and
every write must be back. The engine reports replays in the gauge
`kissvdb_recovery_replayed_events` (and logs `recovery: replayed N events from offset X` on
`kissvdb.recovery`). Periodic checkpoints are pushed out of the way (SNAPSHOT_INTERVAL_SECS=3600)
so the only checkpoint is the shutdown one. A plain SIGKILL follows, bounded by its tail.
"""

from __future__ import annotations

import re

import httpx

from .server import ServerProcess, parse_metrics

REPLAYED_METRIC = "kissvdb_recovery_replayed_events"
DURABLE_METRIC = "kissvdb_wal_durable_offset"
RECOVERY_LOG_RE = re.compile(r"recovery: replayed (\d+) events from offset (\d+)")
HISTORY_BATCHES = 24  # x 250 operations = 6,000 events of history
BATCH_OPS = 250
TAIL_WRITES = 7


def metric(client: httpx.Client, name: str) -> int:
    resp = client.get("/v1/metrics")
    assert resp.status_code == 200, resp.text
    metrics = parse_metrics(resp.text)
    assert name in metrics, f"/v1/metrics has no {name}:\n{resp.text}"
    return int(metrics[name])


def recovery_log_lines(server: ServerProcess) -> list[tuple[int, int]]:
    return [(int(m.group(1)), int(m.group(2)))
            for line in server.log_lines() if (m := RECOVERY_LOG_RE.search(line))]


def check_all(client: httpx.Client, expected: dict[str, tuple[int, object]]) -> None:
    """Every key is there with its revision and value, and nothing else under the prefixes."""
    seen: dict[str, tuple[int, object]] = {}
    for prefix in ("hist/00", "hist/01", "tail/"):  # each under the listing cap of 1000
        resp = client.get("/v1/state", params={"prefix": prefix, "limit": 1000})
        assert resp.status_code == 200, resp.text
        for item in resp.json():
            seen[item["key"]] = (item["revision"], item["value"])
    assert seen.keys() == expected.keys(), sorted(seen.keys() ^ expected.keys())[:10]
    for key, state in expected.items():
        assert seen[key] == state, (key, seen[key], state)


def write_tail(client: httpx.Client, expected: dict[str, tuple[int, object]], round_: int) -> None:
    for i in range(TAIL_WRITES):
        key = f"tail/{round_}-{i}" if i % 2 else f"hist/{i:05d}"  # new keys and overwrites
        resp = client.put(f"/v1/state/{key}", json={"value": {"tail": i, "round": round_}})
        assert resp.status_code == 200, resp.text
        assert resp.json()["revision"] == expected.get(key, (0, None))[0] + 1, (key, resp.text)
        expected[key] = (resp.json()["revision"], {"tail": i, "round": round_})


def test_restart_replays_only_the_tail(tmp_path):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, env={"SNAPSHOT_INTERVAL_SECS": "3600"})
    expected: dict[str, tuple[int, object]] = {}
    with server:
        def client() -> httpx.Client:
            return httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30.0)

        # 1. a long history: batches of puts over 2,000 keys, so most keys have several revisions
        with client() as c:
            history_events = 0
            for batch in range(HISTORY_BATCHES):
                ops = []
                for i in range(BATCH_OPS):
                    key = f"hist/{(batch * BATCH_OPS + i) % 2000:05d}"
                    ops.append({"key": key, "value": {"batch": batch, "i": i}})
                resp = c.post("/v1/state/batch_put", json={"operations": ops})
                assert resp.status_code == 200, resp.text
                for op, result in zip(ops, resp.json()["results"]):
                    assert result["status"] == "ok", result
                    assert result["revision"] == expected.get(op["key"], (0, None))[0] + 1, result
                    expected[op["key"]] = (result["revision"], op["value"])
                history_events += len(ops)
            assert metric(c, DURABLE_METRIC) == history_events

        # 2. a graceful stop checkpoints at shutdown: the next boot replays nothing
        assert server.stop() == 0
        server.start()
        with client() as c:
            assert metric(c, REPLAYED_METRIC) == 0, "a boot after a graceful stop replayed events"
            check_all(c, expected)
            # 3. a short tail after the checkpoint, then a crash that also loses state.sqlite's
            # commits since that checkpoint (its SQLite WAL was truncated by the checkpoint)
            write_tail(c, expected, 1)
            durable_offset = metric(c, DURABLE_METRIC)
        assert durable_offset == history_events + TAIL_WRITES
        server.kill9()
        for suffix in ("-wal", "-shm"):
            (data_dir / f"state.sqlite{suffix}").unlink(missing_ok=True)

        # 4. the boot replays exactly the tail, not the history, and everything is back
        server.start()
        with client() as c:
            replayed = metric(c, REPLAYED_METRIC)
            assert replayed == TAIL_WRITES, (
                f"replayed {replayed} events; the tail after the shutdown checkpoint at {history_events} "
                f"was {TAIL_WRITES} (durable offset {durable_offset})")
            check_all(c, expected)
            # 5. another tail and a plain process crash: at most that tail is replayed
            write_tail(c, expected, 2)
        server.kill9()
        server.start()
        with client() as c:
            replayed_after_crash = metric(c, REPLAYED_METRIC)
            assert 0 <= replayed_after_crash <= TAIL_WRITES, (
                f"replayed {replayed_after_crash} events after a crash; the tail was {TAIL_WRITES}")
            check_all(c, expected)
        server.stop()
        lines = recovery_log_lines(server)
        if lines:  # the log line is optional here; when present it must agree with the gauge
            assert (TAIL_WRITES, history_events + 1) in lines, lines

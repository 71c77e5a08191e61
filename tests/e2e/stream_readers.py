"""`python -m tests.e2e.stream_readers BASE_URL API_KEY PATH...`: open one change stream per PATH
(e.g. `/v1/stream?since=0`), each in its own thread, and read them all as fast as they come.

A process of its own, so that parsing gigabytes of events never holds the GIL of the process
that measures the server. It prints `ready` once every stream has its response headers, then
reads a stop offset from stdin: each stream is read until it has delivered an event with an id
at or past it. Then one JSON line per stream: {"path", "status", "bytes", "events", "first",
"last", "in_order" (every id one more than the one before), "gaps", "error"}; exit code 0.

`stream_paths` and `check_streams` are the budget tests' side: which streams to open (one key's
MAX_STREAMS_PER_KEY: MAX_STREAM_REPLAYS from offset 0, TAILS from the live end, the rest through
a filter that drops nearly every event) and what each must have delivered.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

TIMEOUT_S = 120.0
TAILS = 8
SENTINEL_PREFIX = "sentinel/"  # the one key the filtered streams let through


def stream_paths(live_from: int, streams: int, replays: int) -> list[str]:
    filtered = streams - replays - TAILS
    return (["/v1/stream?since=0"] * replays + [f"/v1/stream?since={live_from}"] * TAILS
            + [f"/v1/stream?since={live_from}&key_prefix={SENTINEL_PREFIX}"] * filtered)


def check_streams(summaries: list[dict], paths: list[str], replays: int, live_from: int, stop: int) -> None:
    """Every stream delivered, in order and without a gap: the replays everything from offset 1,
    the tails everything after `live_from`, the filtered ones the sentinel at `stop` alone."""
    assert [s["path"] for s in summaries] == paths
    assert all(s["status"] == 200 and s["error"] is None and s["gaps"] == 0 for s in summaries), summaries[:3]
    for s in summaries[:replays]:
        assert s["first"] == 1 and s["in_order"] and s["last"] >= stop and s["events"] >= stop, s
    for s in summaries[replays:replays + TAILS]:
        assert s["first"] == live_from + 1 and s["in_order"] and s["last"] >= stop, s
    assert all(s["first"] == s["last"] == stop for s in summaries[replays + TAILS:])


class Stream:
    def __init__(self, client: httpx.Client, path: str):
        self.path = path
        self.summary = {"path": path, "status": None, "bytes": 0, "events": 0, "first": None, "last": None,
                        "in_order": True, "gaps": 0}
        self.connected = threading.Event()
        self.stop_offset: int | None = None
        self.stop_known = threading.Event()
        self.error: str | None = None
        self._client = client

    def run(self) -> None:
        try:
            with self._client.stream("GET", self.path) as reply:
                self.summary["status"] = reply.status_code
                self.connected.set()
                if reply.status_code != 200:
                    return
                self._read(reply)
        except Exception as exc:  # reported in the summary, checked by the test
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()

    def _read(self, reply) -> None:
        pending = b""
        for chunk in reply.iter_raw():
            self.summary["bytes"] += len(chunk)
            *frames, pending = (pending + chunk).split(b"\n\n")
            for frame in frames:
                self._frame(frame)
            if self.stop_known.is_set() and self.summary["last"] is not None \
                    and self.summary["last"] >= self.stop_offset:
                return

    def _frame(self, frame: bytes) -> None:
        if frame.startswith(b"event:gap"):
            self.summary["gaps"] += 1
            return
        if not frame.startswith(b"event:"):
            return  # a keep-alive comment
        offset = int(frame.split(b"\n", 2)[1][3:])
        s = self.summary
        if s["first"] is None:
            s["first"] = offset
        elif offset != s["last"] + 1:
            s["in_order"] = False
        s["last"] = offset
        s["events"] += 1


def main(argv: list[str]) -> int:
    base_url, key, paths = argv[0], argv[1], argv[2:]
    limits = httpx.Limits(max_connections=len(paths) + 1)
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                          timeout=TIMEOUT_S)
    streams = [Stream(client, path) for path in paths]
    for s in streams:
        threading.Thread(target=s.run, daemon=True).start()
    for s in streams:
        s.connected.wait(TIMEOUT_S)
    print("ready", flush=True)
    stop = int(sys.stdin.readline())
    for s in streams:
        s.stop_offset = stop
        s.stop_known.set()
    # A stream that already delivered `stop` may wait for its next chunk for good: poll the
    # summaries (bounded) instead of joining the threads; they die with the process.
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and any(s.error is None and s.summary["status"] == 200
                                              and (s.summary["last"] or 0) < stop for s in streams):
        time.sleep(0.05)
    for s in streams:
        print(json.dumps({**s.summary, "error": s.error}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

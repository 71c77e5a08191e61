"""Prometheus text for `/v1/metrics`, and the numbers only the HTTP layer can see.

Owns: `ApiMetrics` (requests answered 500, and the request-latency histogram
`kissvdb_http_request_seconds{route,method}`), `HELP` (one sentence per series) and
`render_prometheus`, which writes each series as `# HELP`, `# TYPE`, then its samples. The
original's five series are always present: when the engine does not report one (e.g.
`vector_ops_total` before vectors exist), it is written as 0.

The histogram's `route` label is the route's template as docs/openapi.yaml writes it
(`/v1/state/{key}`), or `unmatched` for a request no route served (404, 401 before routing), and
`method` is one of the HTTP methods the app knows (else `other`): the label sets are bounded by
the route table, whatever clients send. A request's time runs from the app receiving it to its
response being ready; a stream's (SSE) ends when its headers are.
Never does: read actor state itself; engine numbers come from `Engine.metrics()` only.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

# The original's series (contract §3.1), which clients may scrape by name.
REQUIRED_SERIES: tuple[tuple[str, str], ...] = (
    ("state_put_total", "counter"),
    ("state_delete_total", "counter"),
    ("vector_ops_total", "counter"),
    ("events_total", "counter"),
    ("sse_clients", "gauge"),
)

HTTP_LATENCY = "kissvdb_http_request_seconds"
# Upper bounds (seconds) of the latency buckets: 0.5 ms to 10 s, the request deadline's range.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABELLED_METHODS = frozenset(("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"))
UNMATCHED = "unmatched"

HELP: dict[str, str] = {
    "state_put_total": "Keys written (PUT and batch_put), since start.",
    "state_delete_total": "Keys deleted (explicit and TTL), since start.",
    "vector_ops_total": "Vector write operations, since start.",
    "events_total": "Events published to the change stream, since start.",
    "sse_clients": "Change-stream (SSE) subscribers connected now.",
    "http_internal_errors_total": "Requests answered 500 internal (each one is a bug).",
    HTTP_LATENCY: "Time from a request's arrival to its response being ready, by route and method.",
    "kissvdb_wal_durable_offset": "Offset of the last event fsynced to the WAL.",
    "kissvdb_wal_first_offset": "Offset of the oldest event the WAL retains.",
    "kissvdb_wal_retained_bytes": "Bytes of the WAL segments retained on disk.",
    "kissvdb_wal_batches_total": "WAL writes (group commits), since start.",
    "kissvdb_wal_records_total": "Events written to the WAL, since start.",
    "kissvdb_wal_bytes_total": "Bytes written to the WAL, since start.",
    "kissvdb_wal_fsync_total": "WAL fsyncs, since start.",
    "kissvdb_wal_fsync_seconds_total": "Seconds spent in WAL fsyncs, since start.",
    "kissvdb_wal_batch_records_max": "Most events one WAL write has carried.",
    "kissvdb_wal_write_errors_total": "WAL writes or fsyncs that failed.",
    "kissvdb_wal_failed": "1 once the WAL writer has failed (the server stops), else 0.",
    "kissvdb_checkpoint_offset": "Offset the KV store is checkpointed to.",
    "kissvdb_recovery_replayed_events": "Events replayed from the WAL at boot.",
    "kissvdb_kv_cache_items": "Keys held in the KV cache.",
    "kissvdb_kv_inflight": "KV writes decided and waiting for their fsync.",
    "kissvdb_kv_restarts_total": "Restarts of the KV actor by its supervisor.",
    "kissvdb_sse_log_reads_total": "Reads of the WAL by change-stream replays.",
    "kissvdb_sse_gaps_total": "Gap notices sent to subscribers (events no longer retained).",
    "kissvdb_doc_find_total": "Document finds run, since start.",
    "kissvdb_doc_find_running": "Document finds running now.",
    "kissvdb_doc_find_waiting": "Document finds waiting for a reader.",
    "kissvdb_doc_find_timeouts_total": "Document finds stopped by the time limit.",
    "kissvdb_doc_find_overloaded_total": "Document finds refused (503) while readers were busy.",
    "kissvdb_state_wal_resets_total": "Truncations of state.sqlite's WAL file.",
    "kissvdb_doc_put_total": "Documents written, since start.",
    "kissvdb_doc_delete_total": "Documents deleted (explicit and TTL), since start.",
    "kissvdb_doc_cache_items": "Documents held in the document cache.",
    "kissvdb_doc_inflight": "Document writes decided and waiting for their fsync.",
    "kissvdb_doc_restarts_total": "Restarts of the document actor by its supervisor.",
    "kissvdb_sql_queries_total": "SQL queries run, since start.",
    "kissvdb_sql_execs_total": "SQL statements executed, since start.",
    "kissvdb_sql_errors_total": "SQL statements that failed.",
    "kissvdb_vector_collections": "Vector collections.",
    "kissvdb_vector_quarantined": "Vector collections quarantined (unreadable files).",
    "kissvdb_vector_live": "Live vectors over every collection.",
    "kissvdb_vector_records": "Vector records on disk, deleted ones included.",
    "kissvdb_vector_file_bytes": "Bytes of the vector collections' files.",
    "kissvdb_vector_searches_total": "Vector searches, since start.",
    "kissvdb_vector_maintenance_total": "Vector maintenance runs (index builds, compactions).",
    "kissvdb_vector_restarts_total": "Restarts of vector actors by their supervisor.",
    "kissvdb_vector_search_batches_total": "Batches of vector searches run together.",
    "kissvdb_vector_search_batched_total": "Vector searches run in a batch.",
    "kissvdb_vector_checkpoint_offset": "Offset every vector collection is checkpointed to.",
    "kissvdb_search_documents": "Documents in the /search index.",
    "kissvdb_search_applied_offset": "WAL offset the /search index has applied.",
    "kissvdb_search_checkpoint_offset": "WAL offset the /search index is checkpointed to.",
}


def help_text(name: str) -> str:
    """The series' HELP sentence; a series added without one still gets a line (its name in
    words), and tests/api/test_system.py fails until HELP has it."""
    return HELP.get(name) or name.replace("_", " ")


class LatencyHistogram:
    """One label set's bucket counts (not cumulative: rendering sums them) and sum of seconds."""

    __slots__ = ("counts", "sum_s")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last one is +Inf only
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (`le`).
        self.counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds


_PATH_PARAM = re.compile(r"\{([^:{}]+):[a-z]+\}")


def route_label(path_template: str) -> str:
    """`/v1/state/{key:path}` -> `/v1/state/{key}`, as the spec names the route."""
    return _PATH_PARAM.sub(r"{\1}", path_template)


@dataclass(slots=True)
class ApiMetrics:
    internal_errors_total: int = 0  # requests answered 500 `internal`: each one is a bug
    latency: dict[tuple[str, str], LatencyHistogram] = field(default_factory=dict)

    def observe(self, route: str, method: str, seconds: float) -> None:
        """Count one answered request; `route` is a `route_label` or UNMATCHED."""
        key = (route, method if method in LABELLED_METHODS else "other")
        histogram = self.latency.get(key)
        if histogram is None:
            histogram = self.latency[key] = LatencyHistogram()
        histogram.observe(seconds)

    def series(self) -> list[tuple[str, str, float]]:
        return [
            ("http_internal_errors_total", "counter", self.internal_errors_total),
        ]

    def histogram_lines(self) -> list[str]:
        """`kissvdb_http_request_seconds` in Prometheus text: HELP, TYPE, then per label set
        its cumulative `_bucket{le}` (ending with +Inf), `_sum` and `_count`."""
        name = HTTP_LATENCY
        lines = [f"# HELP {name} {help_text(name)}", f"# TYPE {name} histogram"]
        for (route, method), h in sorted(self.latency.items()):
            labels = f'route="{_label_value(route)}",method="{method}"'
            running = 0
            for bound, count in zip(LATENCY_BUCKETS_S, h.counts):
                running += count
                lines.append(f'{name}_bucket{{{labels},le="{_number(bound)}"}} {running}')
            running += h.counts[-1]
            lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {running}')
            lines.append(f"{name}_sum{{{labels}}} {_number(h.sum_s)}")
            lines.append(f"{name}_count{{{labels}}} {running}")
        return lines


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render_prometheus(
    engine_series: list[tuple[str, str, float]],
    api_series: list[tuple[str, str, float]],
    extra_lines: list[str] = (),  # type: ignore[assignment]
) -> str:
    """Prometheus text exposition. Engine series win over API series of the same name;
    `extra_lines` (labelled series, already rendered with their HELP and TYPE) come last."""
    seen: dict[str, tuple[str, float]] = {}
    for name, kind, value in engine_series:
        seen.setdefault(name, (kind, value))
    for name, kind, value in api_series:
        seen.setdefault(name, (kind, value))
    for name, kind in REQUIRED_SERIES:
        seen.setdefault(name, (kind, 0))
    lines = []
    for name, (kind, value) in seen.items():
        lines.append(f"# HELP {name} {help_text(name)}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {_number(value)}")
    lines.extend(extra_lines)
    return "\n".join(lines) + "\n"

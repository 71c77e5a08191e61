"""The `/metrics` series of an engine, assembled from every part's counters.

Its own module because it is a report over the whole engine (WAL writer, broadcaster, KV,
documents, SQL, vectors, /search) and none of the calls the HTTP layer makes: reading it
beside actors/engine.py's request methods hid both. `Engine.metrics`, `Engine.vector_metrics`
and `Engine.search_metrics` are thin calls into here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kissvdb.actors.engine import Engine

Series = list[tuple[str, str, float]]


def engine_metrics(engine: Engine) -> Series:
    """Every series, in the order /metrics prints them."""
    w = engine.writer.statistics()
    b = engine.broadcaster.statistics()
    kv = engine.kv_actor.state.statistics() if engine.kv_actor is not None else {}
    return [
        ("state_put_total", "counter", engine.counters["state_put_total"]),
        ("state_delete_total", "counter", engine.counters["state_delete_total"]),
        ("vector_ops_total", "counter", engine.counters["vector_ops_total"]),
        ("events_total", "counter", b.published_total),
        ("sse_clients", "gauge", b.subscribers),
        ("kissvdb_wal_durable_offset", "gauge", w.durable_offset),
        ("kissvdb_wal_first_offset", "gauge", engine.wal_log.first_offset),
        ("kissvdb_wal_retained_bytes", "gauge", engine.wal_log.retained_bytes),
        ("kissvdb_wal_batches_total", "counter", w.batches_total),
        ("kissvdb_wal_records_total", "counter", w.records_total),
        ("kissvdb_wal_bytes_total", "counter", w.bytes_total),
        ("kissvdb_wal_fsync_total", "counter", w.fsync_total),
        ("kissvdb_wal_fsync_seconds_total", "counter", w.fsync_seconds_total),
        ("kissvdb_wal_batch_records_max", "gauge", w.batch_records_max),
        ("kissvdb_wal_write_errors_total", "counter", w.write_errors_total),
        ("kissvdb_wal_failed", "gauge", 1 if w.failed else 0),
        ("kissvdb_checkpoint_offset", "gauge", engine.checkpointed.get("kv", 0)),
        ("kissvdb_recovery_replayed_events", "gauge", engine.recovery_replayed),
        ("kissvdb_kv_cache_items", "gauge", kv.get("cached", 0)),
        ("kissvdb_kv_inflight", "gauge", kv.get("inflight", 0)),
        ("kissvdb_kv_restarts_total", "counter", engine.kv.restarts),
        ("kissvdb_sse_log_reads_total", "counter", b.log_reads_total),
        ("kissvdb_sse_gaps_total", "counter", b.gaps_total),
    ] + (engine.docs.metrics() if engine.docs is not None else []) + (
        engine.sql.metrics() if engine.sql is not None else []) + engine.vector_metrics() + engine.search_metrics()


def vector_metrics(engine: Engine) -> Series:
    vm = engine.vectors
    if vm is None:
        return []
    colls = list(vm.store.collections.values())
    infos = [c.info() for c in colls]
    return [
        ("kissvdb_vector_collections", "gauge", len(colls)),
        ("kissvdb_vector_quarantined", "gauge", len(vm.store.quarantined)),
        ("kissvdb_vector_live", "gauge", sum(i["live_count"] for i in infos)),
        ("kissvdb_vector_records", "gauge", sum(i["total_records"] for i in infos)),
        ("kissvdb_vector_file_bytes", "gauge", sum(i["file_len"] for i in infos)),
        ("kissvdb_vector_searches_total", "counter", engine.counters.get("vector_search_total", 0)),
        ("kissvdb_vector_maintenance_total", "counter",
         sum(a.maintenance_runs for a in vm.actors.values())),
        ("kissvdb_vector_restarts_total", "counter", vm.restarts),
        ("kissvdb_vector_search_batches_total", "counter", sum(a.search_batches for a in vm.actors.values())),
        ("kissvdb_vector_search_batched_total", "counter", sum(a.search_batched for a in vm.actors.values())),
        ("kissvdb_vector_checkpoint_offset", "gauge", vm.store.checkpointed_floor()),
    ]


def search_metrics(engine: Engine) -> Series:
    index = engine.search_index
    if index is None:
        return []
    return [("kissvdb_search_documents", "gauge", len(index.store)),
            ("kissvdb_search_applied_offset", "gauge", index.store.applied_offset),
            ("kissvdb_search_checkpoint_offset", "gauge", index.store.durable_offset)]

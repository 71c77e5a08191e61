"""Settings: one record per environment variable, with the original's names and defaults.

`SETTINGS` is data: `kissvdb serve --help` lists it, docs are tested against it, and
`Settings.from_env()` parses it. Unlike the original, a value that does not parse is an error
(ConfigError) rather than a silent fallback to the default: a database should not quietly run
with a setting its operator did not choose.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Callable

from kissvdb import layout
from kissvdb.errors import ConfigError

INDEX_KINDS = ("HNSW", "IVF_FLAT_Q8", "FLAT", "DISKANN")
HTTP_SERVERS = ("ours", "hypercorn")


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if lo is not None and value < lo:
            value = lo  # the original clamps these minimums; keep its behaviour
        if hi is not None and value > hi:
            value = hi
        return value

    return parse


def _float(text: str) -> float:
    return float(text.strip())


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("0", "false", "off", "no"):
        return False
    return True  # the original enables on anything else


def _str(text: str) -> str:
    return text


def _http_server(text: str) -> str:
    server = text.strip().lower()
    if server not in HTTP_SERVERS:
        raise ValueError(f"unknown HTTP server {text!r} (expected one of {', '.join(HTTP_SERVERS)})")
    return server


def _index_kind(text: str) -> str:
    kind = text.strip().upper()
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {text!r} (expected one of {', '.join(INDEX_KINDS)})")
    return kind


@dataclass(frozen=True, slots=True)
class Setting:
    env: str  # environment variable name, as the original spells it
    attr: str  # Settings attribute
    default: object
    parse: Callable[[str], object]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("DATA_DIR", "data_dir", "./data", _str, "data directory (WAL, state.sqlite, sqlite/, vectors/)"),
    Setting("BIND_ADDR", "bind_addr", "127.0.0.1", _str, "address to listen on"),
    Setting("PORT_RUST_KISS_VDB", "port", 9917, _int(0, 65535), "port to listen on (0 = any free port)"),
    Setting("API_KEY", "api_key", "dev", _str, "static admin key (RUSTKISS_API_KEY wins); 'dev' only on loopback"),
    Setting("HTTP_SERVER", "http_server", "ours", _http_server, "'ours' (HTTP/1.1 on trio + httptools) or 'hypercorn' (adds HTTP/2 and TLS)"),
    Setting("TLS_CERTFILE", "tls_certfile", "", _str, "TLS certificate (PEM); needs HTTP_SERVER=hypercorn"),
    Setting("TLS_KEYFILE", "tls_keyfile", "", _str, "TLS private key (PEM) for TLS_CERTFILE"),
    Setting("WAL_SEGMENT_MAX_BYTES", "wal_segment_max_bytes", 67108864, _int(1 << 20), "WAL segment roll size"),
    Setting("WAL_RETENTION_SEGMENTS", "wal_retention_segments", 8, _int(1), "checkpointed segments kept for replay"),
    Setting("WAL_RETENTION_MIN_BYTES", "wal_retention_min_bytes", 0, _int(0), "replay window always kept, in bytes"),
    Setting("WAL_RETENTION_MIN_SECS", "wal_retention_min_secs", 600, _int(0), "replay window always kept, in seconds"),
    Setting("SNAPSHOT_INTERVAL_SECS", "snapshot_interval_secs", 30, _int(1), "checkpoint period"),
    Setting("EVENT_BUFFER_SIZE", "event_buffer_size", 10000, _int(16), "recent events kept in memory for SSE"),
    Setting("LIVE_BROADCAST_CAPACITY", "live_broadcast_capacity", 4096, _int(16), "events sent to one SSE client per write"),
    Setting("REQUEST_TIMEOUT_SECS", "request_timeout_secs", 30, _int(1), "request deadline (408)"),
    Setting("MAX_BODY_BYTES", "max_body_bytes", 1048576, _int(1), "request body limit (413)"),
    Setting("HTTP_MAX_URL_BYTES", "http_max_url_bytes", 8192, _int(256), "request target limit (414)"),
    Setting("HTTP_MAX_HEADER_BYTES", "http_max_header_bytes", 32768, _int(1024), "request line + headers limit (431)"),
    Setting("HTTP_HEADER_TIMEOUT_SECS", "http_header_timeout_secs", 10.0, _float, "time to send a request's headers (408, then close)"),
    Setting("HTTP_BODY_TIMEOUT_SECS", "http_body_timeout_secs", 30.0, _float, "time to send a request's body once it is read (408, then close)"),
    Setting("HTTP_KEEP_ALIVE_SECS", "http_keep_alive_secs", 30.0, _float, "idle keep-alive connections are closed after this"),
    Setting("HTTP_WRITE_STALL_SECS", "http_write_stall_secs", 30.0, _float, "a response (or SSE stream) whose writes make no progress this long is closed"),
    Setting("HTTP_MAX_CONNECTIONS", "http_max_connections", 1000, _int(1), "open connections, SSE included (503 past it; kept under RLIMIT_NOFILE)"),
    Setting("HTTP_MAX_PIPELINED", "http_max_pipelined", 64, _int(1), "pipelined requests queued per connection"),
    Setting("HTTP_SHUTDOWN_GRACE_SECS", "http_shutdown_grace_secs", 5.0, _float, "in-flight requests get this long after the first stop signal"),
    Setting("MAX_KEY_LEN", "max_key_len", 512, _int(1), "KV key and prefix bytes"),
    Setting("MAX_COLLECTION_LEN", "max_collection_len", 64, _int(1), "collection name bytes"),
    Setting("MAX_ID_LEN", "max_id_len", 128, _int(1), "document / vector id bytes"),
    Setting("MAX_VECTOR_DIM", "max_vector_dim", 4096, _int(1), "largest vector dimension"),
    Setting("MAX_K", "max_k", 256, _int(1), "largest search k"),
    Setting("MAX_JSON_BYTES", "max_json_bytes", 65536, _int(1), "KV value / doc / meta / filters bytes"),
    Setting("MAX_STATE_BATCH", "max_state_batch", 256, _int(1), "operations per batch_put"),
    Setting("MAX_VECTOR_BATCH", "max_vector_batch", 256, _int(1), "items per upsert_batch / delete_batch"),
    Setting("MAX_DOC_FIND", "max_doc_find", 100, _int(1), "cap on find limit"),
    Setting("MAX_VECTOR_COLLECTIONS", "max_vector_collections", 1000, _int(1),
            "vector collections that may exist (400 `collection` past it); list and metrics walk them all"),
    Setting("VECTOR_RESULT_BYTES_MAX", "vector_result_bytes_max", 32 << 20, _int(2 << 20),
            "largest search / search_batch answer in bytes (400 naming `k` / `queries` past it)"),
    Setting("CORS_ALLOWED_ORIGINS", "cors_allowed_origins", "", _str, "comma list of origins (empty = any; only loopback ones while the key is 'dev')"),
    Setting("ALLOWED_HOSTS", "allowed_hosts", "", _str, "comma list of Host names accepted while the key is 'dev' (beside loopback names and BIND_ADDR)"),
    Setting("MAX_API_KEYS", "max_api_keys", 1000, _int(1), "stored API keys (400 on create past it); GET /v1/auth/keys lists them all"),
    Setting("MAX_STREAMS_PER_KEY", "max_streams_per_key", 64, _int(1), "change streams one API key may hold open (429 past it)"),
    Setting("MAX_STREAM_REPLAYS", "max_stream_replays", 4, _int(1), "streams replaying from the log (not the in-memory ring) opened at once (503 past it)"),
    Setting("BENCH_ROUTES", "bench_routes", False, _bool, "serve /v1/_bench/ping and /v1/_bench/echo (benchmark ceilings; off by default)"),
    Setting("SQLITE_ENABLED", "sqlite_enabled", True, _bool, "user SQL and API-key store"),
    Setting("SQLITE_DB_PATH", "sqlite_db_path", "", _str, "user SQL file (default DATA_DIR/sqlite/user.db)"),
    Setting("INDEX_KIND", "index_kind", "IVF_FLAT_Q8", _index_kind, "default vector index: HNSW, IVF_FLAT_Q8, FLAT, DISKANN"),
    Setting("IVF_CLUSTERS", "ivf_clusters", 4096, _int(2), "upper bound on IVF lists"),
    Setting("IVF_NPROBE", "ivf_nprobe", 16, _int(1), "IVF lists scanned per search"),
    Setting("IVF_TRAINING_SAMPLE", "ivf_training_sample", 200000, _int(1), "k-means training sample"),
    Setting("IVF_MIN_TRAIN_VECTORS", "ivf_min_train_vectors", 1024, _int(2), "live vectors before first training"),
    Setting("IVF_RETRAIN_MIN_DELTAS", "ivf_retrain_min_deltas", 50000, _int(1), "upserts between retrains"),
    Setting("Q8_REFINE_TOPK", "q8_refine_topk", 512, _int(1), "Q8 candidates re-scored in float32"),
    Setting("HNSW_M", "hnsw_m", 16, _int(2), "HNSW graph links per node (hnswlib M)"),
    Setting("HNSW_EF_CONSTRUCTION", "hnsw_ef_construction", 200, _int(8), "HNSW build breadth"),
    Setting("HNSW_EF_SEARCH", "hnsw_ef_search", 64, _int(1), "HNSW search breadth (a search may ask for another ef)"),
    Setting("HNSW_SEGMENT_VECTORS", "hnsw_segment_vectors", 16384, _int(256), "vectors in the mutable HNSW segment before it seals"),
    Setting("HNSW_MERGE_THREADS", "hnsw_merge_threads", max(1, (os.cpu_count() or 1) - 1), _int(1),
            "threads of a background HNSW segment merge (default: every CPU but one, so serving keeps a core)"),
    Setting("DISKANN_MAX_DEGREE", "diskann_max_degree", 48, _int(4), "Vamana graph degree"),
    Setting("DISKANN_BUILD_THREADS", "diskann_build_threads", os.cpu_count() or 1, _int(1), "graph build threads"),
    Setting("DISKANN_SEARCH_LIST_SIZE", "diskann_search_list_size", 64, _int(8), "Vamana beam width"),
    Setting("DISKANN_REBUILD_SHARE", "diskann_rebuild_share", 0.2, _float, "share of a DISKANN index's rows masked or not yet in its graph past which a rebuild starts by itself"),
    Setting("RUN_TARGET_BYTES", "run_target_bytes", 134217728, _int(1), "vector run file roll size"),
    Setting("RUN_RETENTION", "run_retention", 8, _int(1), "runs before compaction"),
    Setting("COMPACTION_TRIGGER_TOMBSTONE_RATIO", "compaction_trigger_tombstone_ratio", 0.2, _float, "tombstone ratio that triggers compaction"),
    Setting("COMPACTION_MAX_BYTES_PER_PASS", "compaction_max_bytes_per_pass", 1073741824, _int(1), "bytes rewritten per compaction pass"),
    Setting("KV_CACHE_ITEMS", "kv_cache_items", 200000, _int(0), "KV items cached in memory (the rest is read from state.sqlite)"),
    Setting("INBOX_REQUESTS_MAX", "inbox_requests_max", 1024, _int(1), "queued requests per actor before 503"),
    Setting("WAL_BATCH_BYTES_MAX", "wal_batch_bytes_max", 4 << 20, _int(4096), "bytes per group commit"),
    Setting("DOC_CACHE_ITEMS", "doc_cache_items", 100000, _int(0), "documents cached in memory (the rest is read from state.sqlite)"),
    Setting("SQL_TIME_LIMIT_MS", "sql_time_limit_ms", 10000, _int(1), "user SQL statement time limit (kept below REQUEST_TIMEOUT_SECS)"),
    Setting("SQL_MAX_ROWS", "sql_max_rows", 10000, _int(1), "rows /v1/sql/query may return before it is refused"),
    Setting("SQL_RESULT_BYTES_MAX", "sql_result_bytes_max", 16 << 20, _int(1 << 16, 1_000_000_000),
            "largest /v1/sql/query response body in bytes; also the largest string, blob or row SQLite will build"),
    Setting("SQL_WRITE_BYTES_MAX", "sql_write_bytes_max", 1 << 30, _int(1 << 20),
            "bytes one user SQL statement may write to disk (temporary files; for exec also the journal) before it is interrupted"),
    Setting("DOC_FIND_CONCURRENCY", "doc_find_concurrency", 2, _int(1, 64), "document finds run at once, each on its own read connection (more wait, then 503)"),
    Setting("STATE_WAL_MAX_BYTES", "state_wal_max_bytes", 64 << 20, _int(1 << 20), "state.sqlite-wal size past which new finds wait for a WAL reset"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: str = "./data"
    bind_addr: str = "127.0.0.1"
    port: int = 9917
    api_key: str = "dev"
    api_key_from_env: bool = False
    http_server: str = "ours"
    tls_certfile: str = ""
    tls_keyfile: str = ""
    memory: bool = False
    wal_segment_max_bytes: int = 67108864
    wal_retention_segments: int = 8
    wal_retention_min_bytes: int = 0
    wal_retention_min_secs: int = 600
    snapshot_interval_secs: int = 30
    event_buffer_size: int = 10000
    live_broadcast_capacity: int = 4096
    request_timeout_secs: int = 30
    max_body_bytes: int = 1048576
    http_max_url_bytes: int = 8192
    http_max_header_bytes: int = 32768
    http_header_timeout_secs: float = 10.0
    http_body_timeout_secs: float = 30.0
    http_keep_alive_secs: float = 30.0
    http_write_stall_secs: float = 30.0
    http_max_connections: int = 1000
    http_max_pipelined: int = 64
    http_shutdown_grace_secs: float = 5.0
    max_key_len: int = 512
    max_collection_len: int = 64
    max_id_len: int = 128
    max_vector_dim: int = 4096
    max_k: int = 256
    max_json_bytes: int = 65536
    max_state_batch: int = 256
    max_vector_batch: int = 256
    max_doc_find: int = 100
    max_vector_collections: int = 1000
    vector_result_bytes_max: int = 32 << 20
    cors_allowed_origins: str = ""
    allowed_hosts: str = ""
    max_api_keys: int = 1000
    max_streams_per_key: int = 64
    max_stream_replays: int = 4
    bench_routes: bool = False
    sqlite_enabled: bool = True
    sqlite_db_path: str = ""
    index_kind: str = "IVF_FLAT_Q8"
    ivf_clusters: int = 4096
    ivf_nprobe: int = 16
    ivf_training_sample: int = 200000
    ivf_min_train_vectors: int = 1024
    ivf_retrain_min_deltas: int = 50000
    q8_refine_topk: int = 512
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 64
    hnsw_segment_vectors: int = 16384
    hnsw_merge_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 1) - 1))
    diskann_max_degree: int = 48
    diskann_build_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    diskann_search_list_size: int = 64
    diskann_rebuild_share: float = 0.2
    run_target_bytes: int = 134217728
    run_retention: int = 8
    compaction_trigger_tombstone_ratio: float = 0.2
    compaction_max_bytes_per_pass: int = 1073741824
    kv_cache_items: int = 200000
    inbox_requests_max: int = 1024
    wal_batch_bytes_max: int = 4 << 20
    doc_cache_items: int = 100000
    sql_time_limit_ms: int = 10000
    sql_max_rows: int = 10000
    sql_result_bytes_max: int = 16 << 20
    sql_write_bytes_max: int = 1 << 30
    doc_find_concurrency: int = 2
    state_wal_max_bytes: int = 64 << 20

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        """Parse every SETTINGS record from `env` (default os.environ), then apply overrides."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for s in SETTINGS:
            name = s.env
            raw = env.get(name)
            if s.env == "API_KEY":
                raw = env.get("RUSTKISS_API_KEY") or env.get("API_KEY")
                values["api_key_from_env"] = bool(raw)
            if raw is None or raw == "":
                continue
            try:
                values[s.attr] = s.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def user_sql_path(self) -> str:
        return self.sqlite_db_path or os.path.join(self.data_dir, layout.USER_SQL_DIR, layout.USER_DB)


def setting_names() -> list[str]:
    return [s.env for s in SETTINGS]


assert {s.attr for s in SETTINGS} <= {f.name for f in fields(Settings)}

"""Every path the engine writes under DATA_DIR, and how a collection name becomes a directory.

One place that owns the names, so that nothing a user names can map onto them: the modules
that write these files take their names from here, and the tests generate their hostile names
(KV keys, document ids, collection names) and their "is every file in DATA_DIR one we own"
check from `OWNED` rather than from a hand list.

Data format 2 (kissvdb/datadir.py) layout:
```
FORMAT  LOCK                          datadir.py
events-NNNNNN.log  events-NNNNNN.idx  WAL segments and their index sidecars (wal/)
state.sqlite(-wal|-shm|-journal)      materialized KV + documents
keys.sqlite(-wal|-shm|-journal)       API keys
bootstrap-admin.key                   the first admin key, 0600, until its owner deletes it
sqlite/user.db(-wal|-shm|-journal)    the user's SQL database (unless SQLITE_DB_PATH moves it)
search/fts.sqlite(-wal|-shm|-journal) the /search FTS5 index (rebuilt from the `_search` collection)
vectors/registry.json                 offset up to which collection creations/drops are applied
vectors/collections/<dir>/            one directory per collection; `<dir>` = collection_dir_name
vectors/collections/.tmp-<dir>/       a creation in progress; .dropped-<offset>-<dir>/ a drop
```
`vectors/collections/` holds collection directories and nothing else the engine writes
except the dot-prefixed staging names, which no collection directory name can start with.
Data format 1 kept each collection at `vectors/<name>/`, beside registry.json: a collection
named `registry.json` replaced the registry (issue 9); kissvdb/migrate.py moves old layouts.

Collection directory names (`collection_dir_name`): the name with every upper-case letter
written as `+` and the letter in lower case (`My.Col` -> `+my.+col`). Names are ASCII from
`[A-Za-z0-9_.-]`, starting with `[A-Za-z0-9_]` (kissvdb/vectors/store.py), and `+` is not one
of them, so the mapping is injective and reversible; its output has no upper-case letter, so
two names that differ only in case (`Docs`, `docs`) stay two directories on a case-insensitive
file system; it never starts with `.`, so it is never `.`, `..` or a staging name. Names stay
case-sensitive everywhere, as KV keys and document ids are. A name whose escaped form would be
longer than DIR_NAME_MAX_BYTES (only possible when MAX_COLLECTION_LEN is raised above 100)
gets `=` + the SHA-256 of the name instead: still injective in practice, never starting with
`.`, lower case, and its manifest.json names the collection.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from kissvdb.wal.segment import segment_name
from kissvdb.wal.sidecar import SUFFIX as SIDECAR_SUFFIX

FORMAT_FILE = "FORMAT"
LOCK_FILE = "LOCK"
STATE_DB = "state.sqlite"
KEYS_DB = "keys.sqlite"
BOOTSTRAP_KEY_FILE = "bootstrap-admin.key"
USER_SQL_DIR = "sqlite"
USER_DB = "user.db"
VECTORS_DIR = "vectors"
SEARCH_DIR = "search"
SEARCH_DB = f"{SEARCH_DIR}/fts.sqlite"  # the /search FTS5 index (kissvdb/search/store.py)
REGISTRY = "registry.json"
COLLECTIONS_DIR = "collections"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite writes these beside a database
STAGING_PREFIX = ".tmp-"
DROPPED_PREFIX = ".dropped-"
FORMAT1_VECTORS = "vectors.format1"  # format 1's vectors/ while kissvdb/migrate.py empties it

# Longest collection directory name: leaves room for `.dropped-<offset>-` within the 255 bytes
# a file name may have on every file system we run on.
DIR_NAME_MAX_BYTES = 200
_ESCAPE = "+"
_HASHED = "="
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")  # collection names (kissvdb/vectors/store.py)
_DIR_RE = re.compile(r"(?:\+[a-z]|[a-z0-9_])(?:\+[a-z]|[a-z0-9_.\-])*")
_HASHED_RE = re.compile(r"=[0-9a-f]{64}")


def is_valid_collection_name(name: str) -> bool:
    return NAME_RE.fullmatch(name) is not None


def collection_dir_name(name: str) -> str:
    """The directory (under vectors/collections/) of a valid collection name; see the docstring."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"not a valid collection name: {name!r}")
    escaped = "".join(_ESCAPE + ch.lower() if "A" <= ch <= "Z" else ch for ch in name)
    if len(escaped) <= DIR_NAME_MAX_BYTES:
        return escaped
    return _HASHED + hashlib.sha256(name.encode("ascii")).hexdigest()


def collection_name_of(dir_name: str) -> str | None:
    """The name whose directory is `dir_name`; None for a hashed or a foreign directory name.

    Exact inverse: returns a name only if `collection_dir_name(name) == dir_name`.
    """
    if not _DIR_RE.fullmatch(dir_name):
        return None
    out = []
    upper = False
    for ch in dir_name:
        if ch == _ESCAPE:
            upper = True
            continue
        out.append(ch.upper() if upper else ch)
        upper = False
    name = "".join(out)
    return name if collection_dir_name(name) == dir_name else None


def is_collection_dir_name(dir_name: str) -> bool:
    """Could `dir_name` be some collection's directory (escaped or hashed form)?"""
    return collection_name_of(dir_name) is not None or _HASHED_RE.fullmatch(dir_name) is not None


# ---- the owned paths, for the tests and for anyone auditing a data directory ---------------


@dataclass(frozen=True, slots=True)
class Owned:
    """One kind of path the engine writes: `pattern` matches the path relative to its parent
    (DATA_DIR, or a collection's directory for `in_collection`), `example` is one such path."""

    pattern: str
    example: str
    what: str
    in_collection: bool = False


def _sqlite(path: str, what: str) -> list[Owned]:
    """A SQLite database and the side files SQLite writes beside it."""
    return [Owned(re.escape(path), path, what)] + [
        Owned(re.escape(path + side), path + side, what + " (SQLite side file)") for side in SQLITE_SIDE_FILES]


def _tmp(path: str, what: str) -> Owned:
    """The temp file fsutil.atomic_write uses beside `path`."""
    head, _, base = path.rpartition("/")
    prefix = head + "/" if head else ""
    return Owned(re.escape(prefix + "." + base + ".") + r"[^/]+\.tmp", f"{prefix}.{base}.x1y2.tmp",
                 what + " (being replaced)")


_SEGMENT = segment_name(1)
_COLLECTION = f"{VECTORS_DIR}/{COLLECTIONS_DIR}"

OWNED: tuple[Owned, ...] = (
    Owned(re.escape(FORMAT_FILE), FORMAT_FILE, "data format version"),
    _tmp(FORMAT_FILE, "data format version"),
    Owned(re.escape(LOCK_FILE), LOCK_FILE, "exclusive lock"),
    Owned(r"events-\d{6,}\.log", _SEGMENT, "WAL segment"),
    Owned(r"events-\d{6,}" + re.escape(SIDECAR_SUFFIX), _SEGMENT[: -len(".log")] + SIDECAR_SUFFIX,
          "WAL segment index sidecar"),
    *_sqlite(STATE_DB, "materialized KV and documents"),
    *_sqlite(KEYS_DB, "API keys"),
    Owned(re.escape(BOOTSTRAP_KEY_FILE), BOOTSTRAP_KEY_FILE, "the bootstrap admin key (keystore.py)"),
    _tmp(BOOTSTRAP_KEY_FILE, "the bootstrap admin key"),
    Owned(re.escape(USER_SQL_DIR), USER_SQL_DIR, "user SQL directory"),
    *_sqlite(f"{USER_SQL_DIR}/{USER_DB}", "user SQL database"),
    Owned(re.escape(SEARCH_DIR), SEARCH_DIR, "the /search index directory"),
    *_sqlite(SEARCH_DB, "the /search FTS5 index and its applied offset"),
    Owned(re.escape(VECTORS_DIR), VECTORS_DIR, "vector store"),
    Owned(re.escape(f"{VECTORS_DIR}/{REGISTRY}"), f"{VECTORS_DIR}/{REGISTRY}", "collection registry offset"),
    _tmp(f"{VECTORS_DIR}/{REGISTRY}", "collection registry offset"),
    Owned(re.escape(_COLLECTION), _COLLECTION, "collection directories"),
    Owned(re.escape(_COLLECTION + "/" + STAGING_PREFIX) + r"[^/]+(?:/.*)?", f"{_COLLECTION}/{STAGING_PREFIX}docs",
          "a collection being created"),
    Owned(re.escape(_COLLECTION + "/" + DROPPED_PREFIX) + r"\d+-[^/]+(?:/.*)?", f"{_COLLECTION}/{DROPPED_PREFIX}7-docs",
          "a dropped collection being deleted"),
    Owned(re.escape(FORMAT1_VECTORS) + r"(?:/.*)?", FORMAT1_VECTORS,
          "format-1 vector directory during its migration (migrate.py)"),
    Owned(re.escape(_COLLECTION) + r"/(?:\+[a-z]|[a-z0-9_])(?:\+[a-z]|[a-z0-9_.\-])*|" + re.escape(_COLLECTION)
          + r"/=[0-9a-f]{64}", f"{_COLLECTION}/docs", "one collection's directory"),
    # Inside a collection's own directory (kissvdb/vectors/collection.py, manifest.py, runs.py).
    Owned(r"manifest\.json", "manifest.json", "collection manifest", True),
    Owned(r"runs", "runs", "run files", True),
    Owned(r"runs/run-\d{6,}\.(?:log|f32|q8)", "runs/run-000001.log", "run records, float32 rows, int8 codes", True),
    Owned(r"table-\d{6,}\.npz", "table-000001.npz", "per-row table", True),
    Owned(r"hnsw-(?:sealed|mutable)-\d{6,}\.bin", "hnsw-sealed-000001.bin", "HNSW segment", True),
    Owned(r"ivf-\d{6,}\.npy", "ivf-000001.npy", "IVF centroids", True),
    # A DISKANN collection's disk index (kissvdb/vectors/disk_index.py, diskann/files.py).
    Owned(r"diskann", "diskann", "DiskANN index directory", True),
    Owned(r"diskann/(?:CURRENT|params\.json)", "diskann/CURRENT", "the serving DiskANN build's name, its params", True),
    Owned(r"diskann/\.(?:CURRENT|params\.json)\.[^/]+\.tmp", "diskann/.CURRENT.x1y2.tmp",
          "a DiskANN name or params being replaced", True),
    Owned(r"diskann/build-[0-9-]+(?:/(?:manifest\.json|graph\.i8\.usearch|rows\.f32|ids-\d+\.i64(?:\.\d+)?"
          r"|\.manifest\.json\.[^/]+\.tmp))?", "diskann/build-1-2-3/graph.i8.usearch", "a DiskANN build", True),
    Owned(r"diskann/\.tmp-build-[0-9-]+(?:/.*)?", "diskann/.tmp-build-1-2/rows.f32",
          "a DiskANN build under way (deleted at the next open if the process died)", True),
    Owned(r"\.(?:manifest\.json|table-\d{6,}\.npz|ivf-\d{6,}\.npy)\.[^/]+\.tmp"
          r"|\.hnsw-(?:sealed|mutable)-\d{6,}\.bin\.tmp",
          ".manifest.json.x1y2.tmp", "a collection file being replaced", True),
)


def owned_examples() -> list[str]:
    """Every example path of OWNED and every path component of them: names a user must never
    be able to turn into one of the engine's files (the names test uses these)."""
    out: list[str] = []
    for owned in OWNED:
        for name in [owned.example, *owned.example.split("/")]:
            if name not in out:
                out.append(name)
    return out


def owner_of(relative_path: str, collection_dirs: set[str]) -> Owned | None:
    """Which OWNED entry `relative_path` (under DATA_DIR, `/`-separated) is, or None.

    `collection_dirs` are the collection directory names the caller expects; a path inside one
    of them is matched against the in-collection entries.
    """
    prefix = _COLLECTION + "/"
    if relative_path.startswith(prefix):
        head, _, rest = relative_path[len(prefix):].partition("/")
        if rest and head in collection_dirs:
            return next((o for o in OWNED if o.in_collection and re.fullmatch(o.pattern, rest)), None)
    return next((o for o in OWNED if not o.in_collection and re.fullmatch(o.pattern, relative_path)), None)

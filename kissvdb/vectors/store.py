"""All vector collections under DATA_DIR/vectors: which exist, opening them, replaying the WAL.

Layout (kissvdb/layout.py): `vectors/registry.json` holds the offset up to which collection
creations and drops are materialized; each collection lives in
`vectors/collections/<collection_dir_name(name)>/`, under a parent that holds nothing else and a
name that no other collection name (case folded or not) and no engine file has; its manifest
holds its own applied offset. Boot opens every collection directory, then replays WAL events
past the smallest of those offsets: a creation makes the directory if it is missing, a drop
removes it, mutations go to their collection (which skips what it already holds). Replay never
reads the clock.

A creation is staged in `.tmp-<dir>` and renamed into place; a drop renames the directory to
`.dropped-<offset>-<dir>` (atomic), then deletes it; leftovers of a crash in between are deleted
at open. Both prefixes start with a dot, which no collection directory name does.

Quarantine: a collection directory that cannot be opened at boot (a bad manifest, a missing or
damaged file, a manifest that names another collection), whose creation failed after its
event was durable, or whose actor failed and could not be rebuilt (`quarantine_loaded`), is
quarantined instead of failing the boot or the server: logged, its files left exactly
as they are, and answered 503 (`Quarantined`, naming the collection) on every route until an
operator repairs it and restarts. Its events stay in the WAL: the registry's checkpoint, and so
WAL retention, is held at the quarantined collection's last applied offset (0 when even that
is unreadable), so a repaired collection, or a retried creation, replays what it missed at the
next boot. Never: deletes or rewrites a quarantined collection's files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass

from kissvdb import layout
from kissvdb.errors import InvalidArgument, Unavailable
from kissvdb.fsutil import atomic_write, fsync_dir
from kissvdb.vectors import manifest as manifest_mod
from kissvdb.vectors.collection import Collection, VectorParams
from kissvdb.events import VECTOR_COLLECTION_CREATED, VECTOR_COLLECTION_DELETED, VECTOR_EVENTS
from kissvdb.vectors.state import to_op

log = logging.getLogger("kissvdb.vectors")

NAME_RE = layout.NAME_RE
REGISTRY = layout.REGISTRY
REPLAY_BATCH = 4096
QUARANTINE_RETRY_AFTER_S = 60  # a quarantine lasts until an operator acts and restarts


def check_collection_name(name: str, max_len: int) -> None:
    """The contract's length check (400 `collection too long`), then safe characters only."""
    if len(name.encode("utf-8")) > max_len:
        raise InvalidArgument("collection too long", field="collection")
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument("invalid collection name (use A-Z a-z 0-9 _ . -, not starting with .)",
                              field="collection")


class Quarantined(Unavailable):
    """A vector collection whose files could not be opened or made (503 naming `collection`).

    Nothing was written. It stays so until its files are repaired and the server restarts."""

    retry_after_s = QUARANTINE_RETRY_AFTER_S


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Why a collection directory is out of service, and where its WAL must be kept from."""

    dir_name: str
    name: str | None  # None: a hashed directory name whose manifest is unreadable
    reason: str
    wal_floor: int  # the collection holds every event up to here; 0 when unknown
    facts: dict  # dim, metric, created_at_ms as far as its manifest can be read (None if not)

    def error(self) -> Quarantined:
        return Quarantined(f"vector collection {self.name or self.dir_name!r} is quarantined: {self.reason}",
                           field="collection")


class VectorStore:
    def __init__(self, root: str, params: VectorParams):
        self.root = root
        self.dir = os.path.join(root, layout.COLLECTIONS_DIR)
        self.params = params
        self.collections: dict[str, Collection] = {}
        self.quarantined: dict[str, Quarantine] = {}  # by directory name
        self.applied_offset = 0
        self.checkpointed_offset = 0

    @classmethod
    def open(cls, root: str, params: VectorParams) -> "VectorStore":
        s = cls(root, params)
        os.makedirs(s.dir, exist_ok=True)
        try:
            with open(os.path.join(root, REGISTRY), "rb") as f:
                s.applied_offset = s.checkpointed_offset = json.loads(f.read())["applied_offset"]
        except FileNotFoundError:
            pass
        for entry in sorted(os.listdir(s.dir)):
            path = os.path.join(s.dir, entry)
            if entry.startswith((layout.STAGING_PREFIX, layout.DROPPED_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)  # a creation or drop a crash interrupted
            elif layout.is_collection_dir_name(entry):
                s._open_collection(entry)
            else:
                log.warning("vectors: ignoring %s: no collection has that directory name", path)
        return s

    def _open_collection(self, dir_name: str) -> None:
        path = os.path.join(self.dir, dir_name)
        try:
            c = Collection.open(path, self.params)
        except Exception as exc:  # whatever a damaged file makes json, numpy or hnswlib raise
            self._quarantine(dir_name, layout.collection_name_of(dir_name), f"its files cannot be opened ({exc})",
                             _manifest_facts(path), exc)
            return
        if layout.collection_dir_name(c.name) != dir_name:
            c.close()
            self._quarantine(dir_name, layout.collection_name_of(dir_name),
                             f"its manifest names collection {c.name!r}", _manifest_facts(path), None)
            return
        self.collections[c.name] = c

    def _quarantine(self, dir_name: str, name: str | None, reason: str, facts: dict, exc) -> None:
        q = Quarantine(dir_name, name or facts.get("collection"), reason, facts["applied_offset"], facts)
        self.quarantined[dir_name] = q
        log.error("vector collection %r quarantined: %s; its files in %s are left as they are, and the WAL "
                  "is kept from offset %d until it is repaired and the server restarts",
                  q.name or dir_name, reason, os.path.join(self.dir, dir_name), q.wal_floor,
                  exc_info=exc if exc is not None and not isinstance(exc, OSError) else None)

    def quarantine_loaded(self, name: str, exc: BaseException) -> None:
        """A loaded collection that failed for good (its actor could not be rebuilt): out of
        service until a restart, its WAL kept from its last checkpoint."""
        c = self.collections.pop(name, None)
        if c is None:
            return  # dropped meanwhile
        c.close()  # idempotent; a failing close of a run file is logged there
        facts = {"applied_offset": c.checkpointed_offset, "dim": c.dim, "metric": c.metric,
                 "created_at_ms": c.created.get("created_at_ms")}
        self._quarantine(layout.collection_dir_name(name), name, f"it failed and could not be restarted ({exc})",
                         facts, exc)

    def quarantine_of(self, name: str) -> Quarantine | None:
        return self.quarantined.get(layout.collection_dir_name(name)) if self.quarantined else None

    def replay_start(self) -> int:
        offs = [self.applied_offset] + [c.applied_offset for c in self.collections.values()]
        return min(offs) + 1

    # -- materializing registry events -------------------------------------------------------

    def prepare_create(self, name: str) -> None:
        """Before a creation is logged: fail now, with nothing written, on what can be checked.

        Makes the empty staging directory, which proves the name is a legal file name and the
        parent is writable; `create` (after the WAL) fills it. Raises Unavailable (503).
        """
        dir_name = layout.collection_dir_name(name)
        final = os.path.join(self.dir, dir_name)
        if os.path.lexists(final):
            raise Unavailable(f"collection directory {final} exists but holds no collection this server opened; "
                              "move it away and restart", field="collection")
        staging = os.path.join(self.dir, layout.STAGING_PREFIX + dir_name)
        try:
            shutil.rmtree(staging, ignore_errors=True)
            os.mkdir(staging)
        except OSError as exc:
            raise Unavailable(f"cannot create the collection's directory: {exc.strerror}", field="collection") from None

    def abandon_create(self, name: str) -> None:
        """The creation was not logged after all: remove its staging directory."""
        shutil.rmtree(os.path.join(self.dir, layout.STAGING_PREFIX + layout.collection_dir_name(name)),
                      ignore_errors=True)

    def create(self, name: str, dim: int, metric: str, kind: str, offset: int, ts_ms: int) -> Collection | None:
        """Materialize a durable creation. Never raises for the disk: the event is durable, so a
        failure here quarantines the collection (its creation is retried at the next boot)."""
        if offset <= self.applied_offset and name not in self.collections:
            return None  # created and dropped again before the checkpoint we started from
        c = self.collections.get(name)
        if c is not None:
            return c  # replayed (created_offset >= offset), or refused before logging
        if not layout.is_valid_collection_name(name):  # checked before logging; never trust a file
            log.error("vectors: ignoring the creation at offset %d of invalid collection name %r", offset, name)
            return None
        dir_name = layout.collection_dir_name(name)
        if dir_name in self.quarantined:
            return None  # its files are left as they are
        staging = os.path.join(self.dir, layout.STAGING_PREFIX + dir_name)
        final = os.path.join(self.dir, dir_name)
        try:
            shutil.rmtree(staging, ignore_errors=True)
            c = Collection.create(staging, name, dim, metric, kind, self.params, created_at_ms=ts_ms,
                                  created_offset=offset)
            c.close()
            os.replace(staging, final)
            if self.params.fsync:
                fsync_dir(self.dir)
            c = Collection.open(final, self.params)
        except Exception as exc:  # OSError, or what numpy/hnswlib raise on a full disk
            facts = {"applied_offset": offset - 1, "dim": dim, "metric": metric, "created_at_ms": ts_ms}
            self._quarantine(dir_name, name, f"creating its files failed ({exc})", facts, exc)
            return None
        self.collections[name] = c
        return c

    def drop(self, name: str, offset: int) -> None:
        """Materialize a durable drop. A quarantined collection is left alone: if it is repaired,
        the next boot replays this drop against its manifest's creation offset."""
        c = self.collections.get(name)
        if c is None or c.created["created_offset"] >= offset:
            return
        c.close()
        del self.collections[name]
        dir_name = layout.collection_dir_name(name)
        gone = os.path.join(self.dir, f"{layout.DROPPED_PREFIX}{offset}-{dir_name}")
        os.replace(os.path.join(self.dir, dir_name), gone)
        if self.params.fsync:
            fsync_dir(self.dir)
        shutil.rmtree(gone, ignore_errors=True)

    def advance(self, offset: int) -> None:
        self.applied_offset = max(self.applied_offset, offset)

    def registry_offset(self) -> int:
        """The offset the registry may record: held at every quarantined collection's floor, so
        the next boot replays creations and drops from there."""
        return min([self.applied_offset] + [q.wal_floor for q in self.quarantined.values()])

    def checkpoint_registry(self) -> int:
        offset = self.registry_offset()
        if offset != self.checkpointed_offset:
            atomic_write(os.path.join(self.root, REGISTRY),
                         json.dumps({"applied_offset": offset}).encode(), fsync=self.params.fsync)
            self.checkpointed_offset = offset
        return self.checkpointed_offset

    def checkpointed_floor(self) -> int:
        """The offset every vector materializer (and quarantined collection) has made durable,
        for WAL retention."""
        return min([self.checkpointed_offset, self.registry_offset()]
                   + [c.checkpointed_offset for c in self.collections.values()])

    # -- replay --------------------------------------------------------------------------------

    def close(self) -> None:
        for c in self.collections.values():
            c.close()


def _manifest_facts(directory: str) -> dict:
    """What a damaged collection's manifest still tells: its applied offset (0 if unreadable:
    keep the whole WAL), and its name, dim and metric where readable."""
    facts: dict = {"applied_offset": 0, "dim": 0, "metric": None, "created_at_ms": None}
    try:
        with open(os.path.join(directory, manifest_mod.MANIFEST), "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return facts
    if not isinstance(doc, dict):
        return facts
    offset = doc.get("applied_offset")
    if type(offset) is int and offset >= 0:
        facts["applied_offset"] = offset
    if type(doc.get("dim")) is int:
        facts["dim"] = doc["dim"]
    if doc.get("metric") in ("cosine", "dot"):
        facts["metric"] = doc["metric"]
    if type(doc.get("created_at_ms")) is int:
        facts["created_at_ms"] = doc["created_at_ms"]
    name = doc.get("collection")
    if (type(name) is str and layout.is_valid_collection_name(name)
            and layout.collection_dir_name(name) == os.path.basename(directory)):
        facts["collection"] = name  # names a hashed directory's collection
    return facts


class VectorReplay:
    """The vector materializer fed by kissvdb/recovery.py `replay`: collections created and
    dropped as their events come, each collection's vector events applied past its own
    applied offset, in batches of up to REPLAY_BATCH. With `only`, one collection's events
    alone (a restarted collection actor)."""

    def __init__(self, store: VectorStore, only: Collection | None = None):
        self.store = store
        self.only = only
        self.applied = only.applied_offset if only is not None else store.replay_start() - 1
        self.types = frozenset(VECTOR_EVENTS if only is not None
                               else VECTOR_EVENTS + (VECTOR_COLLECTION_CREATED, VECTOR_COLLECTION_DELETED))
        self.count = 0  # vector events applied
        self._pending: dict[str, list] = {}

    def feed(self, rec) -> None:
        t = rec.type
        store = self.store
        if self.only is None and t == VECTOR_COLLECTION_CREATED:
            self.flush(rec.offset)
            d = rec.data
            store.create(d["collection"], d["dim"], d["metric"], d.get("index", "HNSW"), rec.offset, rec.ts_ms)
        elif self.only is None and t == VECTOR_COLLECTION_DELETED:
            self.flush(rec.offset)
            if rec.offset > store.applied_offset:
                store.drop(rec.data["collection"], rec.offset)
        elif t in VECTOR_EVENTS:
            name = rec.data.get("collection")
            c = self.only if self.only is not None else store.collections.get(name)
            if c is not None and c.name == name and rec.offset > c.applied_offset:
                ops = self._pending.setdefault(c.name, [])
                ops.append(to_op(rec, c.metric))
                self.count += 1
                if len(ops) >= REPLAY_BATCH:
                    del self._pending[c.name]
                    c.apply(ops, ops[-1].offset)

    def flush(self, last: int) -> None:
        for name, ops in self._pending.items():
            c = self.only if self.only is not None else self.store.collections.get(name)
            if c is not None and ops:
                c.apply(ops, ops[-1].offset)
        self._pending.clear()

    def finish(self, upto: int) -> None:
        self.flush(upto)
        if self.only is not None:
            self.only.apply([], upto)
            return
        for c in self.store.collections.values():
            c.apply([], upto)
        self.store.advance(upto)


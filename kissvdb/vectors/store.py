"""All vector collections under DATA_DIR/vectors: which exist, opening them, replaying the WAL.

`vectors/registry.json` holds the offset up to which collection creations and drops are
materialized; each collection's manifest holds its own applied offset. Boot opens every
collection directory, then replays WAL events past the smallest of those offsets: a creation
makes the directory if it is missing, a drop removes it, mutations go to their collection
(which skips what it already holds). Replay never reads the clock.

A dropped collection's directory is first renamed to `.dropped-<name>-<offset>` (atomic), then
deleted; a leftover from a crash in between is deleted at open.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

from kissvdb.errors import InvalidArgument
from kissvdb.events import decode_payload
from kissvdb.vectors.collection import Collection, VectorParams
from kissvdb.fsutil import atomic_write, fsync_dir
from kissvdb.vectors.state import VECTOR_COLLECTION_CREATED, VECTOR_COLLECTION_DELETED, VECTOR_EVENTS, to_op

log = logging.getLogger("kissvdb.vectors")

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
REGISTRY = "registry.json"
REPLAY_READ_BYTES = 8 << 20
REPLAY_BATCH = 4096


def check_collection_name(name: str, max_len: int) -> None:
    """The contract's length check (400 `collection too long`), then safe characters only."""
    if len(name.encode("utf-8")) > max_len:
        raise InvalidArgument("collection too long", field="collection")
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument("invalid collection name (use A-Z a-z 0-9 _ . -, not starting with .)",
                              field="collection")


class VectorStore:
    def __init__(self, root: str, params: VectorParams):
        self.root = root
        self.params = params
        self.collections: dict[str, Collection] = {}
        self.applied_offset = 0
        self.checkpointed_offset = 0

    @classmethod
    def open(cls, root: str, params: VectorParams) -> "VectorStore":
        os.makedirs(root, exist_ok=True)
        s = cls(root, params)
        try:
            with open(os.path.join(root, REGISTRY), "rb") as f:
                s.applied_offset = s.checkpointed_offset = json.loads(f.read())["applied_offset"]
        except FileNotFoundError:
            pass
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name.startswith(".dropped-") or name.startswith(".tmp-"):
                shutil.rmtree(path, ignore_errors=True)
                continue
            if os.path.isdir(path):
                if not os.path.exists(os.path.join(path, "manifest.json")):
                    shutil.rmtree(path, ignore_errors=True)  # creation interrupted before its manifest
                    continue
                s.collections[name] = Collection.open(path, params)
        return s

    def replay_start(self) -> int:
        offs = [self.applied_offset] + [c.applied_offset for c in self.collections.values()]
        return min(offs) + 1

    # -- materializing registry events -------------------------------------------------------

    def create(self, name: str, dim: int, metric: str, kind: str, offset: int, ts_ms: int) -> Collection | None:
        if offset <= self.applied_offset and name not in self.collections:
            return None  # created and dropped again before the checkpoint we started from
        c = self.collections.get(name)
        if c is not None and c.created["created_offset"] >= offset:
            return c
        if c is not None:
            return c  # cannot happen: creation of an existing name is refused before logging
        tmp = os.path.join(self.root, f".tmp-{name}")
        shutil.rmtree(tmp, ignore_errors=True)
        c = Collection.create(tmp, name, dim, metric, kind, self.params, created_at_ms=ts_ms, created_offset=offset)
        c.close()
        os.replace(tmp, os.path.join(self.root, name))
        if self.params.fsync:
            fsync_dir(self.root)
        c = Collection.open(os.path.join(self.root, name), self.params)
        self.collections[name] = c
        return c

    def drop(self, name: str, offset: int) -> None:
        c = self.collections.get(name)
        if c is None or c.created["created_offset"] >= offset:
            return
        c.close()
        del self.collections[name]
        gone = os.path.join(self.root, f".dropped-{name}-{offset}")
        os.replace(os.path.join(self.root, name), gone)
        if self.params.fsync:
            fsync_dir(self.root)
        shutil.rmtree(gone, ignore_errors=True)

    def advance(self, offset: int) -> None:
        self.applied_offset = max(self.applied_offset, offset)

    def checkpoint_registry(self) -> int:
        if self.applied_offset != self.checkpointed_offset:
            atomic_write(os.path.join(self.root, REGISTRY),
                         json.dumps({"applied_offset": self.applied_offset}).encode(), fsync=self.params.fsync)
            self.checkpointed_offset = self.applied_offset
        return self.checkpointed_offset

    def checkpointed_floor(self) -> int:
        """The offset every vector materializer has made durable (for WAL retention)."""
        return min([self.checkpointed_offset] + [c.checkpointed_offset for c in self.collections.values()])

    # -- replay --------------------------------------------------------------------------------

    def replay(self, wal, upto: int) -> int:
        """Apply WAL events (replay_start, upto]; return how many vector events were applied."""
        start = self.replay_start()
        if start > upto:
            self.advance(upto)
            return 0
        start = max(start, wal.first_offset)
        pending: dict[str, list] = {}
        count = 0
        pos = start

        def flush(upto_offset):
            for name, ops in pending.items():
                c = self.collections.get(name)
                if c is not None and ops:
                    c.apply(ops, ops[-1].offset)
            pending.clear()

        while pos <= upto:
            batch = wal.read(pos, upto, REPLAY_READ_BYTES)
            if not batch:
                break
            for offset, payload in batch:
                rec = decode_payload(offset, payload)
                t = rec.type
                if t == VECTOR_COLLECTION_CREATED:
                    flush(offset)
                    d = rec.data
                    self.create(d["collection"], d["dim"], d["metric"], d.get("index", "HNSW"), offset, rec.ts_ms)
                elif t == VECTOR_COLLECTION_DELETED:
                    flush(offset)
                    if offset > self.applied_offset:
                        self.drop(rec.data["collection"], offset)
                elif t in VECTOR_EVENTS:
                    c = self.collections.get(rec.data.get("collection"))
                    if c is not None and offset > c.applied_offset:
                        pending.setdefault(c.name, []).append(to_op(rec, c.metric))
                        count += 1
                        if len(pending[c.name]) >= REPLAY_BATCH:
                            ops = pending.pop(c.name)
                            c.apply(ops, ops[-1].offset)
            pos = batch[-1][0] + 1
        flush(upto)
        for c in self.collections.values():
            c.apply([], upto)
        self.advance(upto)
        return count

    def replay_collection(self, c: Collection, wal, upto: int) -> int:
        """Replay one collection's events past its applied offset (restart after a crash)."""
        pos = max(c.applied_offset + 1, wal.first_offset)
        ops = []
        while pos <= upto:
            batch = wal.read(pos, upto, REPLAY_READ_BYTES)
            if not batch:
                break
            for offset, payload in batch:
                rec = decode_payload(offset, payload)
                if rec.type in VECTOR_EVENTS and rec.data.get("collection") == c.name:
                    ops.append(to_op(rec, c.metric))
            pos = batch[-1][0] + 1
            if len(ops) >= REPLAY_BATCH:
                c.apply(ops, ops[-1].offset)
                ops = []
        c.apply(ops, upto)
        return len(ops)

    def close(self) -> None:
        for c in self.collections.values():
            c.close()

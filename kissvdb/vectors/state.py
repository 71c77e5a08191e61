"""Deciding vector commands: validate against durable state + the in-flight overlay, return events.

Same two rules as kissvdb/kv/state.py:
1. `decide()` never writes. It checks a command against the collection's durable state plus
   the overlay of writes queued to the WAL but not yet durable, and returns the events to log
   (with the operations they apply), or raises a KissError. Every check happens here or in the
   HTTP codec, so a rejected request logs nothing (the original logged before checking the
   dimension: its QUIRK, not ours).
2. `to_ops()` turns durable events into Collection operations; replay uses the same function.

Checks, in the contract's order (§3.6): id length, vector length vs MAX_VECTOR_DIM, meta size vs
MAX_JSON_BYTES, then (engine) dimension, existence. Non-finite components are refused too (JSON
cannot carry them, CBOR can).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kissvdb.errors import AlreadyExists, InvalidArgument, KissError, NotFound, PayloadTooLarge
from kissvdb.events import (
    VECTOR_ADDED, VECTOR_DELETED, VECTOR_MUTATIONS, VECTOR_UPDATED, VECTOR_UPSERTED, EventRecord, Float32Array,
    RawJson,
)
from kissvdb.vectors.collection import Remove, Upsert
from kissvdb.vectors.distance import stored_form


KEEP = object()  # update: field absent (or null) keeps the stored value


@dataclass(frozen=True, slots=True)
class VectorLimits:
    max_id_len: int = 128
    max_vector_dim: int = 4096
    max_json_bytes: int = 65536
    max_vector_batch: int = 256
    max_collection_len: int = 64
    max_k: int = 256
    max_collections: int = 1000


# Commands ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    vector: np.ndarray  # float32, as sent
    meta: RawJson | None


@dataclass(frozen=True, slots=True)
class AddVector:
    item: Item


@dataclass(frozen=True, slots=True)
class UpsertVector:
    item: Item


@dataclass(frozen=True, slots=True)
class UpdateVector:
    id: str
    vector: object  # np.ndarray or KEEP
    meta: object  # RawJson or KEEP


@dataclass(frozen=True, slots=True)
class DeleteVector:
    id: str


@dataclass(frozen=True, slots=True)
class ItemError:
    """A batch item the codec already refused (reported inline, never logged)."""

    id: object
    error: KissError


@dataclass(frozen=True, slots=True)
class UpsertBatch:
    items: tuple  # Item or ItemError


@dataclass(frozen=True, slots=True)
class DeleteBatch:
    ids: tuple


@dataclass(slots=True)
class Decision:
    id: str
    type: str
    data: dict
    after: tuple | None  # (stored vector, meta) once durable; None when deleted

    @property
    def key(self) -> str:  # what the write loop tracks the in-flight overlay by
        return self.id


def check_id(vid: str, limits: VectorLimits) -> None:
    if len(vid.encode("utf-8")) > limits.max_id_len:
        raise InvalidArgument("id too long", field="id")


def check_item_shape(item: Item, limits: VectorLimits) -> None:
    check_id(item.id, limits)
    check_vector_shape(item.vector, limits)
    if item.meta is not None and len(item.meta) > limits.max_json_bytes:
        raise PayloadTooLarge("meta too large", field="meta")


def check_vector_shape(vector: np.ndarray, limits: VectorLimits) -> None:
    if len(vector) > limits.max_vector_dim:
        raise InvalidArgument("vector too large", field="vector")
    if len(vector) and not np.isfinite(vector).all():
        raise InvalidArgument("vector has a non-finite component", field="vector")


class VectorState:
    """Decides commands for one collection. Synchronous; owned by the collection's actor."""

    def __init__(self, collection, limits: VectorLimits):
        self.c = collection
        self.name = collection.name
        self.dim = collection.dim
        self.metric = collection.metric
        self.limits = limits
        self._inflight: dict[str, tuple[tuple | None, object]] = {}  # id -> (after, token)

    def _current(self, vid: str):
        """(stored vector, meta) or None, seen through the overlay."""
        if vid in self._inflight:
            return self._inflight[vid][0]
        return self.c.get(vid)

    def _check_dim(self, vector: np.ndarray) -> None:
        if len(vector) != self.dim:
            raise DimMismatch()

    def decide(self, command, now_ms: int | None = None) -> Decision:
        """The event `command` would log, or raise a KissError. A batch's operations come one
        at a time (actors/write_actor.py): an `Item` of an UpsertBatch (shape already checked
        by the engine), an id (str) of a DeleteBatch, or the ItemError the engine found."""
        if isinstance(command, Item):
            return self._decide_put(command, add=False, checked=True)
        if isinstance(command, (AddVector, UpsertVector)):
            return self._decide_put(command.item, add=isinstance(command, AddVector))
        if isinstance(command, UpdateVector):
            return self._decide_update(command)
        if isinstance(command, (DeleteVector, str)):
            return self._decide_delete(command if isinstance(command, str) else command.id)
        if isinstance(command, ItemError):
            raise command.error
        raise TypeError(f"not a vector command: {command!r}")

    def _decide_put(self, item: Item, *, add: bool, checked: bool = False) -> Decision:
        if not checked:
            check_item_shape(item, self.limits)
        self._check_dim(item.vector)
        if add and self._current(item.id) is not None:
            raise AlreadyExists("id already exists", field="id")
        vec = np.asarray(item.vector, dtype=np.float32)
        data = {"collection": self.name, "id": item.id, "vector": Float32Array(vec.astype("<f4", copy=False).tobytes()),
                "meta": item.meta}
        return Decision(item.id, VECTOR_ADDED if add else VECTOR_UPSERTED, data,
                        (stored_form(vec, self.metric), item.meta))

    def _decide_update(self, cmd: UpdateVector) -> Decision:
        check_id(cmd.id, self.limits)
        if cmd.vector is not KEEP:
            check_vector_shape(cmd.vector, self.limits)
        if cmd.meta is not KEEP and cmd.meta is not None and len(cmd.meta) > self.limits.max_json_bytes:
            raise PayloadTooLarge("meta too large", field="meta")
        if cmd.vector is not KEEP:
            self._check_dim(cmd.vector)
        cur = self._current(cmd.id)
        if cur is None:
            raise NotFound("id not found", field="id")
        vec = cur[0] if cmd.vector is KEEP else np.asarray(cmd.vector, dtype=np.float32)
        meta = cur[1] if cmd.meta is KEEP else cmd.meta
        data = {"collection": self.name, "id": cmd.id, "vector": Float32Array(vec.astype("<f4").tobytes()),
                "meta": RawJson(meta) if meta is not None else None}
        return Decision(cmd.id, VECTOR_UPDATED, data, (stored_form(vec, self.metric), meta))

    def _decide_delete(self, vid: str) -> Decision:
        check_id(vid, self.limits)
        if self._current(vid) is None:
            raise NotFound("id not found", field="id")
        return Decision(vid, VECTOR_DELETED, {"collection": self.name, "id": vid}, None)

    # -- overlay ---------------------------------------------------------------------------

    def begin(self, d: Decision, token: object) -> None:
        self._inflight[d.id] = (d.after, token)

    def finish(self, vid: str, token: object) -> None:
        e = self._inflight.get(vid)
        if e is not None and e[1] is token:
            del self._inflight[vid]

    def drop_inflight(self) -> None:
        self._inflight.clear()


class DimMismatch(InvalidArgument):
    """The vector's length is not the collection's dim (400). Nothing was written."""

    code = "dim_mismatch"

    def __init__(self):
        super().__init__("vector dimension mismatch", field="vector")


def to_op(record: EventRecord, metric: str):
    """The Collection operation of a durable vector event (None for other events)."""
    t = record.type
    d = record.data
    if t in VECTOR_MUTATIONS:
        vec = np.frombuffer(bytes(d["vector"]), dtype="<f4").astype(np.float32)
        meta = d.get("meta")
        return Upsert(record.offset, d["id"], stored_form(vec, metric), bytes(meta) if meta is not None else None)
    if t == VECTOR_DELETED:
        return Remove(record.offset, d["id"])
    return None

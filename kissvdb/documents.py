"""The document store's state machine: decide document commands, apply durable doc events.

Same two rules as kissvdb/kv.py, which this mirrors:
1. `decide()` never writes. It checks a command against durable state plus the in-flight overlay
   and returns the event to log (`doc_upserted` / `doc_deleted`), None for a no-op, or raises a
   KissError. Time comes in as `now_ms`; replay never reads the clock (TTL expiry is itself a
   logged `doc_deleted` with reason "ttl", decided against the exact version the sweeper saw).
2. `apply()` only sees durable events, in offset order, so the cache holds only durable state.

Documents are keyed by (collection, id). Each has a revision that starts at 1 and grows by one
per put; a delete (or expiry) removes it and the next put starts again at 1, as the original's
doc store did (it rode on KV revisions). The full set lives in state.sqlite (kissvdb/docstore.py);
this class keeps a bounded LRU cache of it with the same pin/dirty rules as KvState.

Validation (contract §3.4, in its order): collection length, then collection name characters
(`[A-Za-z0-9_.-]`, no leading dot: a name that could escape a directory is refused), id length,
then document size.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from kissvdb.errors import InvalidArgument, PayloadTooLarge, RevisionMismatch
from kissvdb.events import EventRecord, RawJson
from kissvdb.kv import expires_at_ms

DOC_UPSERTED = "doc_upserted"
DOC_DELETED = "doc_deleted"
DOC_EVENT_TYPES = (DOC_UPSERTED, DOC_DELETED)

# Path segments a document id may not take: static routes under /v1/doc/{collection}/ win over
# an id (contract §1.4), so a document with such an id could not be reached.
RESERVED_IDS = frozenset({"find", "_index"})

_COLLECTION_RE = re.compile(r"[A-Za-z0-9_.\-]+")

DocKey = tuple[str, str]  # (collection, id)


@dataclass(frozen=True, slots=True)
class DocItem:
    collection: str
    id: str
    doc: bytes  # canonical JSON text
    revision: int
    expires_at_ms: int | None
    mod_offset: int  # offset of the document's last write

    def live(self, now_ms: int) -> bool:
        return self.expires_at_ms is None or self.expires_at_ms > now_ms


@dataclass(frozen=True, slots=True)
class DocLimits:
    max_collection_len: int = 64
    max_id_len: int = 128
    max_json_bytes: int = 65536
    max_doc_find: int = 100


# Commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocPut:
    collection: str
    id: str
    doc: RawJson
    ttl_ms: int | None = None
    if_revision: int | None = None


@dataclass(frozen=True, slots=True)
class DocDelete:
    collection: str
    id: str
    if_revision: int | None = None


@dataclass(frozen=True, slots=True)
class DocExpire:
    """Delete for TTL, only if the document is still exactly the version the sweeper saw."""

    collection: str
    id: str
    mod_offset: int


@dataclass(slots=True)
class DocDecision:
    key: DocKey
    type: str
    data: dict
    after: DocItem | None  # mod_offset filled in when durable


# Changes handed to the doc store ---------------------------------------------------------

PUT = 0
DEL = 1


def check_collection(collection: str, limits: DocLimits) -> None:
    if len(collection.encode("utf-8")) > limits.max_collection_len:
        raise InvalidArgument("collection too long", field="collection")
    if not _COLLECTION_RE.fullmatch(collection) or collection.startswith("."):
        raise InvalidArgument(
            "invalid collection name: use letters, digits, '_', '-' and '.', not starting with '.'",
            field="collection",
        )


def check_doc_key(collection: str, id_: str, limits: DocLimits) -> None:
    check_collection(collection, limits)
    if len(id_.encode("utf-8")) > limits.max_id_len:
        raise InvalidArgument("id too long", field="id")
    if not id_:
        raise InvalidArgument("id must not be empty", field="id")


def check_put_shape(cmd: DocPut, limits: DocLimits) -> None:
    check_doc_key(cmd.collection, cmd.id, limits)
    if len(cmd.doc) > limits.max_json_bytes:
        raise PayloadTooLarge("doc too large", field="doc")


def event_to_change(record: EventRecord) -> tuple | None:
    """The state.sqlite change for a doc event, or None for events of other models."""
    data = record.data
    if record.type == DOC_UPSERTED:
        return (PUT, data["collection"], data["id"], bytes(data["doc"]), data["revision"],
                data.get("expires_at_ms"), record.offset)
    if record.type == DOC_DELETED:
        return (DEL, data["collection"], data["id"])
    return None


class DocState:
    """Decides document commands and applies durable doc events. Synchronous; one owner."""

    def __init__(self, limits: DocLimits, cache_items: int):
        self.limits = limits
        self.cache_items = cache_items
        self._cache: OrderedDict[DocKey, DocItem | None] = OrderedDict()
        self._pins: dict[DocKey, int] = {}
        self._dirty: dict[DocKey, int] = {}
        self._inflight: dict[DocKey, tuple[DocItem | None, object]] = {}

    # -- reads ---------------------------------------------------------------------------

    def lookup(self, key: DocKey) -> tuple[bool, DocItem | None]:
        try:
            item = self._cache[key]
        except KeyError:
            return False, None
        self._cache.move_to_end(key)
        return True, item

    def missing(self, keys) -> list[DocKey]:
        return [k for k in keys if k not in self._cache and k not in self._inflight]

    def pin(self, keys) -> None:
        for k in keys:
            self._pins[k] = self._pins.get(k, 0) + 1

    def unpin(self, keys) -> None:
        for k in keys:
            n = self._pins.get(k, 0) - 1
            if n <= 0:
                self._pins.pop(k, None)
            else:
                self._pins[k] = n

    def loaded(self, items: dict[DocKey, DocItem | None]) -> None:
        for key, item in items.items():
            if key not in self._cache:  # a newer apply already put the key here
                self._cache[key] = item
        self._evict()

    def _evict(self) -> None:
        excess = len(self._cache) - self.cache_items
        if excess <= 0:
            return
        for key in list(self._cache.keys())[: excess + 64]:
            if excess <= 0:
                break
            if key in self._pins or key in self._dirty:
                continue
            del self._cache[key]
            excess -= 1

    # -- decide ----------------------------------------------------------------------------

    def _current(self, key: DocKey, now_ms: int) -> DocItem | None:
        if key in self._inflight:
            item = self._inflight[key][0]
        else:
            item = self._cache[key]  # KeyError means the actor forgot to load: a bug
        if item is not None and not item.live(now_ms):
            return None
        return item

    def decide(self, command, now_ms: int) -> DocDecision | None:
        if isinstance(command, DocPut):
            return self._decide_put(command, now_ms)
        if isinstance(command, DocDelete):
            return self._decide_delete(command, now_ms)
        if isinstance(command, DocExpire):
            return self._decide_expire(command, now_ms)
        raise TypeError(f"not a document command: {command!r}")

    def _decide_put(self, cmd: DocPut, now_ms: int) -> DocDecision:
        check_put_shape(cmd, self.limits)
        expires = expires_at_ms(now_ms, cmd.ttl_ms)
        key = (cmd.collection, cmd.id)
        cur = self._current(key, now_ms)
        if cmd.if_revision is not None and (cur is None or cur.revision != cmd.if_revision):
            raise RevisionMismatch("if_revision mismatch", field="if_revision")
        revision = cur.revision + 1 if cur is not None else 1
        data = {"collection": cmd.collection, "id": cmd.id, "revision": revision, "doc": cmd.doc,
                "expires_at_ms": expires}
        after = DocItem(cmd.collection, cmd.id, bytes(cmd.doc), revision, expires, 0)
        return DocDecision(key, DOC_UPSERTED, data, after)

    def _decide_delete(self, cmd: DocDelete, now_ms: int) -> DocDecision | None:
        check_doc_key(cmd.collection, cmd.id, self.limits)
        key = (cmd.collection, cmd.id)
        cur = self._current(key, now_ms)
        if cmd.if_revision is not None and (cur is None or cur.revision != cmd.if_revision):
            raise RevisionMismatch("if_revision mismatch", field="if_revision")
        if cur is None:
            return None
        data = {"collection": cmd.collection, "id": cmd.id, "revision": cur.revision, "reason": "explicit"}
        return DocDecision(key, DOC_DELETED, data, None)

    def _decide_expire(self, cmd: DocExpire, now_ms: int) -> DocDecision | None:
        key = (cmd.collection, cmd.id)
        if key in self._inflight:
            return None  # a write is on its way; the next sweep looks again
        item = self._cache.get(key)
        if item is None or item.mod_offset != cmd.mod_offset:
            return None
        if item.expires_at_ms is None or item.expires_at_ms > now_ms:
            return None
        data = {"collection": cmd.collection, "id": cmd.id, "revision": item.revision, "reason": "ttl"}
        return DocDecision(key, DOC_DELETED, data, None)

    # -- in-flight overlay ---------------------------------------------------------------

    def begin(self, decision: DocDecision, token: object) -> None:
        self._inflight[decision.key] = (decision.after, token)

    def finish(self, key: DocKey, token: object) -> None:
        entry = self._inflight.get(key)
        if entry is not None and entry[1] is token:
            del self._inflight[key]

    def drop_inflight(self) -> None:
        self._inflight.clear()

    # -- apply -----------------------------------------------------------------------------

    def apply(self, record: EventRecord) -> tuple | None:
        change = event_to_change(record)
        if change is None:
            return None
        key = (change[1], change[2])
        if change[0] == PUT:
            self._cache[key] = DocItem(change[1], change[2], change[3], change[4], change[5], record.offset)
        else:
            self._cache[key] = None
        self._cache.move_to_end(key)
        self._dirty[key] = record.offset
        return change

    def committed(self, keys_offsets: list[tuple[DocKey, int]]) -> None:
        for key, offset in keys_offsets:
            if self._dirty.get(key) == offset:
                del self._dirty[key]
        self._evict()

    def statistics(self) -> dict:
        return {"cached": len(self._cache), "dirty": len(self._dirty), "inflight": len(self._inflight)}

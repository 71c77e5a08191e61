"""The document store's state machine: decide document commands, apply durable doc events.

Same two rules as kissvdb/kv/state.py, which this mirrors:
1. `decide()` never writes. It checks a command against durable state plus the in-flight overlay
   and returns the event to log (`doc_upserted` / `doc_deleted`), None for a no-op, or raises a
   KissError. Time comes in as `now_ms`; replay never reads the clock (TTL expiry is itself a
   logged `doc_deleted` with reason "ttl", decided against the exact version the sweeper saw).
2. `apply()` only sees durable events, in offset order, so the cache holds only durable state.

Documents are keyed by (collection, id). Each has a revision that starts at 1 and grows by one
per put; a delete (or expiry) removes it and the next put starts again at 1, as the original's
doc store did (it rode on KV revisions). The full set lives in state.sqlite (kissvdb/documents/table.py);
this class decides against a bounded cache of it (kissvdb/statedb/cache.py, shared with KvState).

Validation (contract §3.4, in its order): collection length, then collection name characters
(`[A-Za-z0-9_.-]`, no leading dot: a name that could escape a directory is refused), id length,
then document size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kissvdb.errors import InvalidArgument, PayloadTooLarge, RevisionMismatch
from kissvdb.events import DOC_DELETED, DOC_UPSERTED, EventRecord, RawJson
from kissvdb.kv.state import expires_at_ms
from kissvdb.statedb.cache import CachedState


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


class DocState(CachedState):
    """Decides document commands and applies durable doc events. Synchronous; one owner."""

    # -- decide ----------------------------------------------------------------------------

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

    # -- apply -----------------------------------------------------------------------------

    def apply(self, record: EventRecord) -> tuple | None:
        change = event_to_change(record)
        if change is None:
            return None
        key = (change[1], change[2])
        item = DocItem(change[1], change[2], change[3], change[4], change[5], record.offset) if change[0] == PUT else None
        self._applied(key, item, record.offset)
        return change

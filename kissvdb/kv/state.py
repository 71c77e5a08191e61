"""The key-value state machine: decide commands, apply durable events, cache durable state.

Two rules hold here, and nowhere else:
1. `decide()` never writes. It checks a command against durable state plus the in-flight
   overlay (writes queued to the WAL but not yet durable) and returns the event to log, or
   raises a KissError. Time comes in as `now_ms`; replay never reads the clock.
2. `apply()` only ever sees durable events, in offset order. The cache therefore holds only
   durable state, and reads served from it are never dirty.

The full KV set lives in state.sqlite (see statestore.py); this class keeps a bounded LRU cache
of it. A key must be loaded (cached) before a command on it can be decided; the actor loads the
missing ones from state.sqlite first. Keys that are loading or whose latest applied change is
not yet committed to state.sqlite are pinned in the cache, which is what makes a load result
safe to insert: if any write touched the key meanwhile, the key is already cached and the
(older) load result is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from kissvdb.errors import Forbidden, InvalidArgument, PayloadTooLarge, RevisionMismatch
from kissvdb.events import STATE_DELETED, STATE_UPDATED, EventRecord, RawJson
from kissvdb.statedb.cache import CachedState


# The largest accepted `ttl_ms`: 2**53 - 1 (about 285,000 years), the largest integer every JSON
# client reads exactly (JavaScript's Number.MAX_SAFE_INTEGER). It keeps `now + ttl_ms` far
# inside the signed 64-bit INTEGER that state.sqlite stores `expires_at_ms` in. Checked in
# decide(), before the WAL: a logged expiry that state.sqlite refuses would fail every apply
# and every replay.
TTL_MS_MAX = (1 << 53) - 1


def expires_at_ms(now_ms: int, ttl_ms: int | None) -> int | None:
    """The expiry time of a write made at `now_ms` with `ttl_ms`, or None without a TTL.

    Raises InvalidArgument (field `ttl_ms`) when `ttl_ms` is over TTL_MS_MAX.
    """
    if ttl_ms is None:
        return None
    if ttl_ms > TTL_MS_MAX:
        raise InvalidArgument("ttl_ms too large", field="ttl_ms")
    return now_ms + ttl_ms


# StateItem and the commands are NamedTuples rather than frozen dataclasses: as immutable, but
# built 4x faster (a frozen dataclass sets each field through object.__setattr__), and a tuple
# of str/bytes/int/None is untracked by the cycle collector, so a large cache of items costs
# nothing at each garbage collection. Every put builds several of them.


class StateItem(NamedTuple):
    key: str
    value: bytes  # canonical JSON text; exact bytes, as orjson.Fragment/loads require
    revision: int
    expires_at_ms: int | None
    mod_offset: int  # offset of the key's last write (etcd's mod_revision)

    def live(self, now_ms: int) -> bool:
        return self.expires_at_ms is None or self.expires_at_ms > now_ms


# Commands (imperative) -------------------------------------------------------------------


class Put(NamedTuple):
    key: str
    value: RawJson
    ttl_ms: int | None = None
    if_revision: int | None = None


class Delete(NamedTuple):
    key: str
    if_revision: int | None = None  # CAS, as Put's: 409 unless the live revision is this one


class Expire(NamedTuple):
    """Delete `key` for TTL, but only if it is still exactly the version the sweeper saw."""

    key: str
    mod_offset: int


class BatchPut(NamedTuple):
    ops: tuple[Put, ...]


class Along(NamedTuple):
    """A Put or Delete logged in ONE WAL write after `events` ((ts_ms, type, data) of another
    model): the vector collection events and their `vector:<name>:manifest` key, so the two
    are durable together or not at all. The Delete may be a no-op; the events are logged
    anyway. Answers the records of the write, in order."""

    command: Put | Delete
    events: tuple


# Keys the server writes for itself (the vector collection manifests, contract §3.5): users
# read them; a user's put, delete or batch put on one answers 403 and writes nothing.
READ_ONLY_PREFIX = "vector:"


def check_user_writable(key: str, field: str = "key") -> None:
    if key.startswith(READ_ONLY_PREFIX):
        raise Forbidden(f"key {key!r} is read-only: keys under {READ_ONLY_PREFIX!r} are written by the server",
                        field=field)


@dataclass(slots=True)
class Decision:
    """One event to log, the key it touches and the key's item once it is durable."""

    key: str
    type: str
    data: dict
    after: StateItem | None  # mod_offset filled in when durable


# A change handed to state.sqlite is the StateItem to store, or the key (a str) to delete. The
# item stored is the one the cache holds and the writer's caller receives: one object per put.


@dataclass(frozen=True, slots=True)
class KvLimits:
    max_key_len: int = 512
    max_json_bytes: int = 65536


def check_put_shape(key: str, value: RawJson, limits: KvLimits) -> None:
    """The contract's checks, in its order: key length, then value size."""
    if len(key.encode("utf-8")) > limits.max_key_len:
        raise InvalidArgument("key too long", field="key")
    if len(value) > limits.max_json_bytes:
        raise PayloadTooLarge("value too large", field="value")


def check_key(key: str, limits: KvLimits) -> None:
    if len(key.encode("utf-8")) > limits.max_key_len:
        raise InvalidArgument("key too long", field="key")


def event_to_change(record: EventRecord) -> StateItem | str | None:
    """The state.sqlite change for a KV event (see above), or None for events of other models."""
    data = record.data
    if record.type == STATE_UPDATED:
        return StateItem(data["key"], bytes(data["value"]), data["revision"], data["expires_at_ms"], record.offset)
    if record.type == STATE_DELETED:
        return data["key"]
    return None


class KvState(CachedState):
    """Decides KV commands and applies durable KV events. Synchronous; one owner."""

    # -- decide ----------------------------------------------------------------------------

    def decide(self, command, now_ms: int) -> Decision | None:
        """The event `command` would log, None for a no-op, or raise a KissError."""
        if isinstance(command, Put):
            return self._decide_put(command, now_ms)
        if isinstance(command, Delete):
            check_key(command.key, self.limits)
            cur = self._current(command.key, now_ms)
            if command.if_revision is not None and (cur is None or cur.revision != command.if_revision):
                raise RevisionMismatch("if_revision mismatch", field="if_revision")
            if cur is None:
                return None
            return Decision(command.key, STATE_DELETED, {"key": command.key, "reason": "explicit"}, None)
        if isinstance(command, Expire):
            return self._decide_expire(command, now_ms)
        raise TypeError(f"not a KV command: {command!r}")

    def _decide_put(self, cmd: Put, now_ms: int) -> Decision:
        check_put_shape(cmd.key, cmd.value, self.limits)
        expires = expires_at_ms(now_ms, cmd.ttl_ms)
        cur = self._current(cmd.key, now_ms)
        if cmd.if_revision is not None and (cur is None or cur.revision != cmd.if_revision):
            raise RevisionMismatch("if_revision mismatch", field="if_revision")
        revision = cur.revision + 1 if cur is not None else 1
        data = {"key": cmd.key, "revision": revision, "value": cmd.value, "expires_at_ms": expires}
        # The overlay's item: later decisions read its revision and expiry, nobody is served it.
        return Decision(cmd.key, STATE_UPDATED, data, StateItem(cmd.key, cmd.value, revision, expires, 0))

    def _decide_expire(self, cmd: Expire, now_ms: int) -> Decision | None:
        if cmd.key in self._inflight:
            return None  # a write is on its way; the next sweep looks again
        item = self._cache.get(cmd.key)
        if item is None or item.mod_offset != cmd.mod_offset:
            return None
        if item.expires_at_ms is None or item.expires_at_ms > now_ms:
            return None
        return Decision(cmd.key, STATE_DELETED, {"key": cmd.key, "reason": "ttl"}, None)

    # -- apply -----------------------------------------------------------------------------

    def apply(self, record: EventRecord) -> StateItem | str | None:
        """Apply one durable event to the cache; return the state.sqlite change (for a put,
        the durable item itself)."""
        change = event_to_change(record)
        if change is None:
            return None
        if type(change) is str:
            self._applied(change, None, record.offset)
        else:
            self._applied(change.key, change, record.offset)
        return change

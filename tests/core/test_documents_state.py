"""DocState (kissvdb/documents/state.py) without an event loop: decide/apply against a dict model,
the contract's checks in order, CAS, TTL expiry against the exact version, the in-flight overlay.
"""

from __future__ import annotations

import os
import random

import pytest

from kissvdb.documents.state import (
    DOC_DELETED,
    DOC_UPSERTED,
    DocDelete,
    DocExpire,
    DocLimits,
    DocPut,
    DocState,
    event_to_change,
)
from kissvdb.errors import InvalidArgument, PayloadTooLarge, RevisionMismatch
from kissvdb.events import EventRecord, RawJson, decode_payload, encode_payload

SEED = int(os.environ.get("DOC_SEED", "4242"))


def fresh(keys=()) -> DocState:
    state = DocState(DocLimits(), cache_items=1000)
    state.loaded({k: None for k in keys})
    return state


def commit(state: DocState, decision, offset: int, ts: int = 0) -> EventRecord:
    """Log (encode/decode like the WAL) and apply one decision."""
    record = decode_payload(offset, encode_payload(ts, decision.type, decision.data))
    state.apply(record)
    return record


def test_put_revisions_and_delete_reset():
    key = ("c", "d")
    state = fresh([key])
    d = state.decide(DocPut("c", "d", RawJson(b'{"a":1}')), 0)
    assert d.type == DOC_UPSERTED and d.data["revision"] == 1
    commit(state, d, 1)
    d = state.decide(DocPut("c", "d", RawJson(b'{"a":2}'), if_revision=1), 0)
    assert d.data["revision"] == 2
    commit(state, d, 2)
    with pytest.raises(RevisionMismatch):
        state.decide(DocPut("c", "d", RawJson(b"{}"), if_revision=1), 0)
    d = state.decide(DocDelete("c", "d"), 0)
    assert d.type == DOC_DELETED and d.data == {"collection": "c", "id": "d", "revision": 2, "reason": "explicit"}
    commit(state, d, 3)
    assert state.decide(DocDelete("c", "d"), 0) is None
    with pytest.raises(RevisionMismatch):
        state.decide(DocDelete("c", "d", if_revision=2), 0)
    assert state.decide(DocPut("c", "d", RawJson(b"1")), 0).data["revision"] == 1


@pytest.mark.parametrize(
    "cmd, error, message",
    [
        (DocPut("c" * 65, "d" * 129, RawJson(b"1" * 70000)), InvalidArgument, "collection too long"),
        (DocPut("c", "d" * 129, RawJson(b"1" * 70000)), InvalidArgument, "id too long"),
        (DocPut("c", "d", RawJson(b"1" * 65537)), PayloadTooLarge, "doc too large"),
        (DocPut(".c", "d", RawJson(b"1")), InvalidArgument, None),
        (DocPut("c/d", "d", RawJson(b"1")), InvalidArgument, None),
        (DocDelete("c", "d" * 129), InvalidArgument, "id too long"),
    ],
)
def test_checks_in_contract_order(cmd, error, message):
    state = fresh([(cmd.collection, cmd.id)])
    with pytest.raises(error) as info:
        state.decide(cmd, 0)
    if message:
        assert info.value.message == message


def test_ttl_expiry_is_decided_against_the_exact_version():
    key = ("c", "d")
    state = fresh([key])
    d = state.decide(DocPut("c", "d", RawJson(b"1"), ttl_ms=100), 1000)
    assert d.data["expires_at_ms"] == 1100
    rec = commit(state, d, 5)
    assert state.decide(DocExpire("c", "d", 5), 1099) is None  # not yet due
    assert state.decide(DocExpire("c", "d", 4), 2000) is None  # another version
    e = state.decide(DocExpire("c", "d", rec.offset), 2000)
    assert e.data == {"collection": "c", "id": "d", "revision": 1, "reason": "ttl"}
    # a put in flight wins over a stale sweep
    again = state.decide(DocPut("c", "d", RawJson(b"2")), 2000)
    state.begin(again, token := object())
    assert state.decide(DocExpire("c", "d", rec.offset), 2000) is None
    state.finish(again.key, token)
    # an expired document is absent for CAS and delete
    with pytest.raises(RevisionMismatch):
        state.decide(DocPut("c", "d", RawJson(b"3"), if_revision=1), 2000)
    assert state.decide(DocDelete("c", "d"), 2000) is None


def test_inflight_overlay_is_seen_by_later_decisions():
    state = fresh([("c", "d")])
    first = state.decide(DocPut("c", "d", RawJson(b"1")), 0)
    state.begin(first, token := object())
    second = state.decide(DocPut("c", "d", RawJson(b"2"), if_revision=1), 0)
    assert second.data["revision"] == 2
    state.drop_inflight()
    assert state.decide(DocPut("c", "d", RawJson(b"2")), 0).data["revision"] == 1
    assert token  # used


def test_events_round_trip_through_the_wal_payload():
    state = fresh([("c", "d")])
    d = state.decide(DocPut("c", "d", RawJson(b'{"a":[1,2]}'), ttl_ms=5), 10)
    record = commit(state, d, 7, ts=10)
    assert isinstance(record.data["doc"], RawJson)
    assert event_to_change(record) == (0, "c", "d", b'{"a":[1,2]}', 1, 15, 7)
    assert event_to_change(EventRecord(8, 0, "state_updated", {"key": "k"})) is None


def test_random_commands_against_a_dict_model():
    rng = random.Random(SEED)
    ids = [("c", f"d{i}") for i in range(5)] + [("e", "d0")]
    state = fresh(ids)
    model: dict[tuple[str, str], tuple[int, bytes]] = {}
    offset = 0
    for step in range(2000):
        key = rng.choice(ids)
        roll = rng.random()
        cur = model.get(key)
        where = f"seed={SEED} step={step}"
        if roll < 0.5:
            if_rev = None if rng.random() < 0.5 else (cur[0] if cur and rng.random() < 0.7 else rng.randrange(4))
            doc = RawJson(b'{"s":%d}' % step)
            ok = if_rev is None or (cur is not None and cur[0] == if_rev)
            try:
                d = state.decide(DocPut(*key, doc, if_revision=if_rev), 0)
            except RevisionMismatch:
                assert not ok, where
                continue
            assert ok, where
            offset += 1
            commit(state, d, offset)
            model[key] = ((cur[0] + 1) if cur else 1, bytes(doc))
            assert d.data["revision"] == model[key][0], where
        else:
            d = state.decide(DocDelete(*key), 0)
            assert (d is None) == (cur is None), where
            if d is not None:
                offset += 1
                commit(state, d, offset)
                del model[key]
        for k in ids:
            hit, item = state.lookup(k)
            assert hit
            assert (None if item is None else (item.revision, item.doc)) == model.get(k), where

"""KvState + StateStore against a dict model, driven by seeded random commands.

No event loop: commands are decided, given offsets as the WAL writer would, applied to the
cache and committed to a real state.sqlite. Some writes stay in flight for a while (the
overlay must make CAS see them), and the store is reopened from disk now and then.
"""

import random

import orjson
import pytest

from kissvdb.errors import InvalidArgument, PayloadTooLarge, RevisionMismatch
from kissvdb.events import EventRecord, RawJson
from kissvdb.kv.state import Delete, Expire, KvLimits, KvState, Put, StateItem
from kissvdb.statedb.file import StateStore, prefix_upper_bound


def raw(value) -> RawJson:
    return RawJson(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


class Harness:
    """Decide -> offset -> apply -> commit, the way the actors do it, minus the threads."""

    def __init__(self, path, cache_items=50):
        self.path = path
        self.store = StateStore(path)
        self.state = KvState(KvLimits(max_key_len=16, max_json_bytes=64), cache_items)
        self.offset = self.store.applied_offset("kv")
        self.queued = []  # decided, not yet durable: [(decision, token)]

    def load(self, keys):
        missing = self.state.missing(keys)
        if missing:
            self.state.pin(missing)
            self.state.loaded(self.store.get_many(missing))
            self.state.unpin(missing)

    def decide(self, command, now):
        self.state.pin([command.key])
        self.load([command.key])
        try:
            d = self.state.decide(command, now)
        finally:
            self.state.unpin([command.key])
        if d is not None:
            token = object()
            self.state.begin(d, token)
            self.queued.append((d, token, now))
        return d

    def flush(self):
        changes, touched = [], []
        for d, token, now in self.queued:
            self.offset += 1
            rec = EventRecord(self.offset, now, d.type, d.data)
            change = self.state.apply(rec)
            changes.append(change)
            touched.append((change[1], self.offset))
            self.state.finish(d.key, token)
        self.queued.clear()
        self.store.apply_kv(changes, self.offset)
        self.state.committed(touched)

    def reopen(self):
        self.flush()
        self.store.checkpoint()
        self.store.close()
        self.__init__(self.path, self.state.cache_items)

    def get(self, key, now):
        self.load([key])
        hit, item = self.state.lookup(key)
        if not hit:
            item = self.store.get_many([key])[key]
        return item if item is not None and item.live(now) else None


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_commands_match_dict_model(tmp_path, seed):
    rng = random.Random(seed)
    h = Harness(str(tmp_path / "state.sqlite"), cache_items=rng.choice([0, 5, 1000]))
    model: dict[str, tuple[object, int, int | None]] = {}  # key -> (value, revision, expires)
    keys = [f"k{i}" for i in range(30)]
    now = 1_000
    for step in range(1500):
        now += rng.randint(0, 20)
        key = rng.choice(keys)
        live = model.get(key)
        if live is not None and live[2] is not None and live[2] <= now:
            live = None
        op = rng.random()
        try:
            if op < 0.5:
                value = rng.randint(0, 100)
                ttl = rng.choice([None, None, None, 0, 5, 50])
                if_rev = rng.choice([None, None, (live[1] if live else 1), 7])
                d = h.decide(Put(key, raw(value), ttl, if_rev), now)
                if if_rev is not None and (live is None or live[1] != if_rev):
                    pytest.fail(f"seed {seed} step {step}: CAS should have failed")
                rev = live[1] + 1 if live else 1
                assert d.data["revision"] == rev, f"seed {seed} step {step}"
                model[key] = (value, rev, now + ttl if ttl is not None else None)
            elif op < 0.7:
                d = h.decide(Delete(key), now)
                assert (d is not None) == (live is not None), f"seed {seed} step {step}"
                model.pop(key, None)
            elif op < 0.8:
                item = h.get(key, now)
                if item is not None:
                    d = h.decide(Expire(key, item.mod_offset), now)
                    assert d is None, "a live key is never expired"
            else:
                h.flush()
        except RevisionMismatch:
            assert if_rev is not None and (live is None or live[1] != if_rev), f"seed {seed} step {step}"
        if rng.random() < 0.01:
            h.reopen()
        if rng.random() < 0.1:
            h.flush()
            for k in keys:
                m = model.get(k)
                m_live = m if m is not None and (m[2] is None or m[2] > now) else None
                item = h.get(k, now)
                if m_live is None:
                    assert item is None, f"seed {seed} step {step} key {k}"
                else:
                    assert item is not None and orjson.loads(bytes(item.value)) == m_live[0], f"seed {seed} step {step}"
                    assert item.revision == m_live[1]
    h.flush()
    listed = h.store.scan_prefix("k", 1000, now)
    expect = sorted(k for k, m in model.items() if m[2] is None or m[2] > now)
    assert [i.key for i in listed] == expect


def test_cas_sees_inflight_write(tmp_path):
    h = Harness(str(tmp_path / "s.sqlite"))
    h.decide(Put("a", raw(1)), 0)
    d = h.decide(Put("a", raw(2), if_revision=1), 0)  # rev 1 is only in flight
    assert d.data["revision"] == 2
    with pytest.raises(RevisionMismatch):
        h.decide(Put("a", raw(3), if_revision=1), 0)
    # nothing durable yet: reads do not see in-flight writes
    assert h.get("a", 0) is None
    h.flush()
    assert h.get("a", 0).revision == 2


def test_delete_cas_checks_the_live_revision_inflight_writes_included(tmp_path):
    h = Harness(str(tmp_path / "s.sqlite"))
    with pytest.raises(RevisionMismatch):
        h.decide(Delete("a", if_revision=1), 0)  # absent: no revision matches
    h.decide(Put("a", raw(1)), 0)
    h.decide(Put("a", raw(2)), 0)  # rev 2 is only in flight
    with pytest.raises(RevisionMismatch):
        h.decide(Delete("a", if_revision=1), 0)
    d = h.decide(Delete("a", if_revision=2), 0)
    assert d.type == "state_deleted" and d.data == {"key": "a", "reason": "explicit"}


def test_scan_start_after_is_strictly_after_in_byte_order(tmp_path):
    h = Harness(str(tmp_path / "s.sqlite"))
    for key in ["a", "a\x00", "ab", "b", "é", "\U0001f600"]:
        h.decide(Put(key, raw(key)), 0)
    h.flush()
    keys = lambda **kw: [i.key for i in h.store.scan_prefix(kw.pop("prefix", ""), 100, 0, **kw)]  # noqa: E731
    assert keys() == ["a", "a\x00", "ab", "b", "é", "\U0001f600"]
    assert keys(start_after="a") == ["a\x00", "ab", "b", "é", "\U0001f600"]
    assert keys(start_after="é") == ["\U0001f600"]
    assert keys(prefix="a", start_after="a\x00") == ["ab"]
    assert keys(prefix="b", start_after="a") == ["b"]
    assert keys(start_after="\U0001f600") == []


def test_expire_only_the_exact_version(tmp_path):
    h = Harness(str(tmp_path / "s.sqlite"))
    h.decide(Put("a", raw(1), ttl_ms=10), 0)
    h.flush()
    old = h.get("a", 0)
    h.decide(Put("a", raw(2), ttl_ms=10), 5)  # re-put in flight
    assert h.decide(Expire("a", old.mod_offset), 100) is None
    h.flush()
    assert h.decide(Expire("a", old.mod_offset), 100) is None  # stale version
    new = h.store.get_many(["a"])["a"]
    d = h.decide(Expire("a", new.mod_offset), 100)
    assert d.data == {"key": "a", "reason": "ttl"}


def test_limits_are_checked_before_anything(tmp_path):
    h = Harness(str(tmp_path / "s.sqlite"))
    with pytest.raises(InvalidArgument) as e:
        h.decide(Put("k" * 17, raw(1)), 0)
    assert e.value.field == "key" and e.value.message == "key too long"
    with pytest.raises(PayloadTooLarge) as e:
        h.decide(Put("k", raw("x" * 100)), 0)
    assert e.value.message == "value too large"
    assert h.queued == []


def test_ttl_zero_expires_at_now(tmp_path):
    h = Harness(str(tmp_path / "s.sqlite"))
    d = h.decide(Put("a", raw(1), ttl_ms=0), 50)
    assert d.data["expires_at_ms"] == 50
    h.flush()
    assert h.get("a", 50) is None


def test_prefix_scan_is_byte_ordered(tmp_path):
    h = Harness(str(tmp_path / "s.sqlite"))
    for k in ["b", "a\xff", "a", "ab", "a/z", "é", "a\U0001f600"]:
        h.decide(Put(k, raw(k)), 0)
    h.flush()
    got = [i.key for i in h.store.scan_prefix("a", 100, 0)]
    assert got == sorted([k for k in ["a\xff", "a", "ab", "a/z", "a\U0001f600"]], key=lambda s: s.encode())
    assert prefix_upper_bound(b"a\xff\xff") == b"b"
    assert prefix_upper_bound(b"") is None


def test_a_batch_is_stored_byte_exact_and_the_newest_write_of_a_key_wins(tmp_path):
    """One apply_kv batch: keys and values with NUL, non-ASCII and quote bytes come back
    exactly, NULL and 63-bit integers survive, and of two writes of one key in the batch
    the later one is what a reopened store holds (CAS and GET read revisions from it)."""
    path = str(tmp_path / "state.sqlite")
    store = StateStore(path)
    big = 2**63 - 1
    items = [
        StateItem("a\x00b", raw({"v": "nul \x00 and \"quotes\""}), 1, None, 10),
        StateItem("ключ/🔑", raw(["ü", 1.5e300, None]), 7, big, big),
        StateItem("dup", raw(1), 1, None, 12),
        StateItem("dup", raw(2), 2, 99, 13),
    ]
    store.apply_kv(items, 13)
    store.checkpoint()
    store.close()
    again = StateStore(path)
    got = again.get_many(["a\x00b", "ключ/🔑", "dup"])
    assert got["a\x00b"] == items[0]
    assert got["ключ/🔑"] == items[1]
    assert got["dup"] == items[3]
    assert type(got["dup"].value) is bytes and again.applied_offset("kv") == 13
    again.close()


def test_a_full_cache_evicts_least_recently_used_keys_but_never_pinned_ones():
    """Past `cache_items`, the least recently used keys go first; a key being decided (pinned)
    stays, so a decision never has to read it again mid-way."""
    state = KvState(KvLimits(max_key_len=16, max_json_bytes=64), cache_items=3)
    state.loaded({"a": None, "b": None, "c": None})
    state.lookup("a")  # used: now the most recent; order b, c, a
    state.pin(["b"])
    state.loaded({"d": None, "e": None})  # b is oldest but pinned: c and a go
    assert {k for k in "abcde" if k not in state.missing([k])} == {"b", "d", "e"}
    state.unpin(["b"])
    state.loaded({"f": None})  # b is the oldest and free now
    assert {k for k in "bdef" if k not in state.missing([k])} == {"d", "e", "f"}

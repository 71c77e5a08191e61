"""kissvdb/keys/store.py: keys are stored hashed, listed newest first, bootstrapped once."""

from __future__ import annotations

import hashlib
import re

from kissvdb.keys.store import KeyStore, key_hash


def test_keys_are_hashed_listed_and_deleted(tmp_path):
    store = KeyStore(str(tmp_path / "keys.sqlite"))
    a, key_a = store.create("a", "read", b"{}", 1000)
    b, key_b = store.create("b", "admin", b'{"x":1}', 2000)
    assert re.fullmatch(r"rk_live_[A-Za-z0-9_-]{43}", key_a) and key_a != key_b
    assert [k.name for k in store.list()] == ["b", "a"]
    assert store.hashes() == {key_hash(key_a): (a.id, "a", "read"), key_hash(key_b): (b.id, "b", "admin")}
    assert key_hash(key_a) == hashlib.sha256(key_a.encode()).hexdigest()
    raw = (tmp_path / "keys.sqlite").read_bytes() + (tmp_path / "keys.sqlite-wal").read_bytes()
    assert key_a.encode() not in raw  # only the hash is on disk
    assert store.delete(a.id) and not store.delete(a.id)
    assert [k.name for k in store.list()] == ["b"]
    store.close()


def test_bootstrap_happens_once_even_after_every_key_is_deleted(tmp_path):
    path = str(tmp_path / "keys.sqlite")
    key_file = tmp_path / "bootstrap-admin.key"
    store = KeyStore(path)
    assert store.bootstrap(1, str(key_file)) is True
    key = key_file.read_text().strip()
    assert oct(key_file.stat().st_mode & 0o777) == oct(0o600)
    assert store.hashes()[key_hash(key)][1:] == ("Admin", "admin")
    for k in store.list():
        store.delete(k.id)
    key_file.unlink()
    assert store.bootstrap(2, str(key_file)) is False
    store.close()
    assert KeyStore(path).bootstrap(3, str(key_file)) is False
    assert not key_file.exists()

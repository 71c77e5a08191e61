"""kissvdb/layout.py: collection directory names are injective, case-fold safe and never an
engine name; OWNED describes itself consistently."""

from __future__ import annotations

import random
import re

import pytest

from kissvdb import layout

ALPHABET = "abcXYZ019_.-"


def random_names(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    names = {"docs", "Docs", "DOCS", "dOcS", "registry.json", "collections", "_", "a-b.c", "x" * 64, "X" * 64}
    while len(names) < count:
        first = rng.choice("aZ9_")
        names.add(first + "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 12))))
    return sorted(names)


def test_directory_names_are_injective_reversible_and_case_fold_safe():
    names = random_names(seed=9, count=3000)
    dirs = [layout.collection_dir_name(n) for n in names]
    assert len(set(dirs)) == len(names)
    assert len({d.casefold() for d in dirs}) == len(names)  # apart on a case-insensitive file system
    for name, d in zip(names, dirs):
        assert d == d.lower() and not d.startswith(".") and "/" not in d and d not in (".", "..")
        assert len(d.encode()) <= layout.DIR_NAME_MAX_BYTES
        assert layout.collection_name_of(d) == name
        assert layout.is_collection_dir_name(d)


def test_long_names_get_a_hashed_directory_name():
    for name in ("X" * 101, "x" * 201, "A" * 255):
        d = layout.collection_dir_name(name)
        assert re.fullmatch(r"=[0-9a-f]{64}", d), d
        assert layout.collection_name_of(d) is None and layout.is_collection_dir_name(d)
    assert layout.collection_dir_name("X" * 100) == "+x" * 100  # the longest escaped form


@pytest.mark.parametrize("dir_name", ["Docs", "+1", "+", "a+", "++a", ".tmp-docs", ".dropped-3-docs", "..", ".",
                                      "-a", "a b", "=" + "0" * 63, "é"])
def test_foreign_directory_names_belong_to_no_collection(dir_name):
    assert layout.collection_name_of(dir_name) is None
    assert not layout.is_collection_dir_name(dir_name)


@pytest.mark.parametrize("name", ["", ".x", "..", "a/b", "+a", "=a", "é", "a b", "a\x00"])
def test_invalid_names_have_no_directory(name):
    with pytest.raises(ValueError):
        layout.collection_dir_name(name)


def test_every_owned_example_matches_its_own_entry():
    for owned in layout.OWNED:
        if owned.in_collection:
            found = layout.owner_of(f"vectors/collections/docs/{owned.example}", {"docs"})
        else:
            found = layout.owner_of(owned.example, set())
        assert found == owned, (owned, found)


def test_names_the_engine_writes_are_owned():
    for path in (layout.FORMAT_FILE, layout.LOCK_FILE, layout.STATE_DB, layout.KEYS_DB, "events-1234567.log",
                 f"{layout.USER_SQL_DIR}/{layout.USER_DB}-wal", f"{layout.VECTORS_DIR}/{layout.REGISTRY}",
                 "vectors/collections/+docs", "vectors/collections/.dropped-12-+docs/runs/run-000001.log"):
        assert layout.owner_of(path, {"+docs"}) is not None, path
    for path in ("notes.txt", "vectors/Docs", "vectors/collections/Docs", "vectors/collections/+docs/evil",
                 "sqlite/other.db"):
        assert layout.owner_of(path, {"+docs"}) is None, path

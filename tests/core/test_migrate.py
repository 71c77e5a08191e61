"""Data format 1 -> 2 (kissvdb/migrate.py): idempotent, and finished by the next open after a
crash at any point.

A crash leaves the directory in one of the states between the migration's renames; each state
is made here by doing the migration's own renames up to that point (real files, the format-1
fixture of tests/fixtures), then `DataDir.open` must end with exactly the tree a migration
without a crash makes. Format-1 names that collide with format 2's own paths (`collections`,
`registry.json` as a directory) and the leftovers a format-1 boot deleted are covered too.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from kissvdb import layout
from kissvdb.datadir import DATA_FORMAT_VERSION, DataDir
from kissvdb.vectors.collection import Collection
from kissvdb.vectors.store import VectorStore
from tests.core.vectors.helpers import small_params

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "format1-datadir.tar.gz"


def format1(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "data"


def snapshot(data: Path) -> dict[str, str | None]:
    out = {}
    for path in sorted(data.rglob("*")):
        if path.name != layout.LOCK_FILE:
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            out[path.relative_to(data).as_posix()] = digest
    return out


def crash_states(data: Path) -> list:
    """The migration's own steps, in order (each leaves a state a crash can leave)."""
    vectors, old = data / layout.VECTORS_DIR, data / layout.FORMAT1_VECTORS
    collections = vectors / layout.COLLECTIONS_DIR
    steps = [lambda: os.replace(vectors, old), lambda: os.makedirs(collections),
             lambda: os.replace(old / layout.REGISTRY, vectors / layout.REGISTRY)]
    for name in ("Ivf.Col-1", "flat", "hnsw_docs"):  # sorted, as the migration goes
        steps.append(lambda name=name: os.replace(old / name, collections / layout.collection_dir_name(name)))
    steps.append(lambda: (data / layout.FORMAT_FILE).write_text(f"kissvdb-format {DATA_FORMAT_VERSION}\n"))
    return steps


def test_migration_moves_collections_and_is_idempotent(tmp_path):
    data = format1(tmp_path)
    with DataDir.open(data) as d:
        assert (d.format_version, d.migrated_from) == (DATA_FORMAT_VERSION, 1)
    after = snapshot(data)
    assert "vectors/registry.json" in after and "vectors/collections/+ivf.+col-1/manifest.json" in after
    with DataDir.open(data) as d:
        assert d.migrated_from is None
    assert snapshot(data) == after
    store = VectorStore.open(str(data / layout.VECTORS_DIR), small_params())
    try:
        assert sorted(store.collections) == ["Ivf.Col-1", "flat", "hnsw_docs"] and not store.quarantined
    finally:
        store.close()


@pytest.mark.parametrize("crash_after", range(1, 8))
def test_a_crash_at_any_step_is_finished_by_the_next_open(tmp_path, crash_after):
    reference = snapshot(_migrated(format1(tmp_path / "reference")))
    data = format1(tmp_path / "crashed")
    steps = crash_states(data)
    assert crash_after <= len(steps)
    for step in steps[:crash_after]:
        step()
    DataDir.open(data).close()
    assert snapshot(data) == reference


def _migrated(data: Path) -> Path:
    DataDir.open(data).close()
    return data


def test_format1_names_that_format2_uses_itself_and_leftovers(tmp_path):
    data = tmp_path / "data"
    DataDir.open(data).close()
    (data / layout.FORMAT_FILE).write_text("kissvdb-format 1\n")
    vectors = data / layout.VECTORS_DIR
    for name in ("collections", "registry.json", "Docs"):  # registry.json as a collection: issue 9
        Collection.create(str(vectors / name), name, 3, "cosine", "FLAT", small_params()).close()
    for junk in (".tmp-x/runs", ".dropped-y-7/runs", "no-manifest/runs"):
        (vectors / junk).mkdir(parents=True)
    (vectors / ".registry.json.abc.tmp").write_text("{}")
    (vectors / "notes.txt").write_text("an operator's file\n")

    with DataDir.open(data) as d:
        assert d.migrated_from == 1
    store = VectorStore.open(str(vectors), small_params())
    try:
        assert sorted(store.collections) == ["Docs", "collections", "registry.json"] and not store.quarantined
    finally:
        store.close()
    assert sorted(os.listdir(vectors / layout.COLLECTIONS_DIR)) == ["+docs", "collections", "registry.json"]
    assert sorted(os.listdir(vectors)) == [layout.COLLECTIONS_DIR]  # no registry yet: replay from the start
    # What format 1 never served stays for its owner; what it deleted at open is gone.
    assert os.listdir(data / layout.FORMAT1_VECTORS) == ["notes.txt"]

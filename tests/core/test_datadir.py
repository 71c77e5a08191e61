"""DATA_DIR ownership: the exclusive lock, the FORMAT file, and atomic_write."""

import os

import pytest

from kissvdb.datadir import DATA_FORMAT_VERSION, DataDir
from kissvdb.errors import ConfigError, DataDirLocked
from kissvdb.fsutil import atomic_write, fsync_dir


def test_open_creates_dir_format_and_lock(tmp_path):
    path = tmp_path / "a" / "data"
    with DataDir.open(path) as data_dir:
        assert data_dir.path == str(path)
        assert (path / "FORMAT").read_text() == f"kissvdb-format {DATA_FORMAT_VERSION}\n"
        assert data_dir.format_version == DATA_FORMAT_VERSION and data_dir.migrated_from is None
        assert (path / "LOCK").read_text().strip() == str(os.getpid())
    assert data_dir.closed


def test_second_open_in_the_same_process_is_refused_until_close(tmp_path):
    # flock belongs to the open file description, so a second open() conflicts even here.
    first = DataDir.open(tmp_path)
    with pytest.raises(DataDirLocked) as info:
        DataDir.open(tmp_path)
    assert str(tmp_path) in str(info.value) and str(os.getpid()) in str(info.value)
    first.close()
    first.close()  # idempotent
    DataDir.open(tmp_path).close()


def test_newer_or_unknown_format_is_refused_and_lock_released(tmp_path):
    DataDir.open(tmp_path).close()
    (tmp_path / "FORMAT").write_text(f"kissvdb-format {DATA_FORMAT_VERSION + 1}\n")
    with pytest.raises(ConfigError, match="newer"):
        DataDir.open(tmp_path)
    (tmp_path / "FORMAT").write_text("kissvdb-format 0\n")
    with pytest.raises(ConfigError, match="older"):
        DataDir.open(tmp_path)
    (tmp_path / "FORMAT").write_text("something else\n")
    with pytest.raises(ConfigError, match="unrecognized"):
        DataDir.open(tmp_path)
    (tmp_path / "FORMAT").write_text(f"kissvdb-format {DATA_FORMAT_VERSION}\n")
    DataDir.open(tmp_path).close()  # the failed opens did not keep the lock


def test_create_false_never_creates_anything(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        DataDir.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ConfigError, match="not a kissvdb data directory"):
        DataDir.open(tmp_path, create=False)
    assert list(tmp_path.iterdir()) == []
    DataDir.open(tmp_path).close()
    DataDir.open(tmp_path, create=False).close()


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write(target, b"old")
    atomic_write(str(target), b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    fsync_dir(tmp_path)


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "f"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # fails inside the write, after the temp file exists
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]

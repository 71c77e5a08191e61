"""kill -9 of a real process at each step of a build (and of a remap): the previous index still
opens and answers, and the next open leaves no orphan directory or file.

The child either blocks inside the build and is killed from here (mid-add), or sends itself
SIGKILL at one exact step, which is the same kill at a moment a test can name.
"""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .helpers import clustered, open_index

N_OLD, N_NEW = 400, 3000

CHILD = textwrap.dedent("""
    import os, signal, sys, numpy as np
    from kissvdb.vectors.diskann import DiskAnnIndex, DiskAnnParams, files, index
    root, point = sys.argv[1], sys.argv[2]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    idx = DiskAnnIndex.open(root, 32, "cosine", DiskAnnParams(max_degree=16, build_threads=2, search_list_size=128))
    rows = np.random.default_rng(1).standard_normal((3000, 32)).astype(np.float32)

    def progress(done, total):
        if point == "mid-add":
            print("building", flush=True)
            sys.stdin.readline()  # blocks until the parent kills us

    if point == "before-rename":
        files.os.rename = die
    elif point == "before-current":
        files.write_current = die
    elif point == "before-old-removed":  # the new build is CURRENT; the old one not yet deleted
        real = index.shutil.rmtree
        index.shutil.rmtree = lambda p, *a, **k: (die() if os.path.basename(p).startswith("build-")
                                                  else real(p, *a, **k))
    if point == "mid-remap":
        files.write_manifest = die
        idx.remap(np.arange(400), np.arange(400) + 5000, epoch=1)
    else:
        idx.build(np.arange(100_000, 103_000), rows, progress=progress)
    print("finished", flush=True)
""")


def run_child(root, point):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(root), point], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    if point == "mid-add":
        assert p.stdout.readline().strip() == "building"  # inside the build, blocked
        os.kill(p.pid, signal.SIGKILL)
    out = p.stdout.read()
    assert p.wait(timeout=120) == -signal.SIGKILL, out
    assert "finished" not in out


def assert_clean(root):
    """One build, named by CURRENT, holding only its manifest's files."""
    names = set(os.listdir(root))
    builds = [n for n in names if n not in ("CURRENT", "params.json")]
    assert len(builds) == 1, names
    with open(os.path.join(root, "CURRENT")) as f:
        assert f.read().strip() == builds[0]
    idx = open_index(root)
    wanted = set(idx.graph.manifest["files"].values()) | {"manifest.json"}
    assert set(os.listdir(os.path.join(root, builds[0]))) == wanted


@pytest.mark.parametrize("point", ["mid-add", "before-rename", "before-current", "mid-remap"])
def test_killed_build_leaves_the_previous_index_serving(tmp_path, point):
    root = tmp_path / "d"
    old = clustered(N_OLD, seed=20)
    idx = open_index(root)
    idx.build(np.arange(N_OLD), old)
    expected = [idx.search(q, 10)[0].tolist() for q in old[:20]]
    run_child(root, point)
    leftovers = set(os.listdir(root)) - {"CURRENT", "params.json", idx.graph.name}
    if point in ("mid-add", "before-rename", "before-current"):
        assert leftovers  # the crash did leave something behind for open to clean
    again = open_index(root)
    assert again.status()["rows"] == N_OLD and again.id_epoch == 0
    assert [again.search(q, 10)[0].tolist() for q in old[:20]] == expected
    assert_clean(root)


def test_kill_after_the_switch_serves_the_new_index_and_drops_the_old(tmp_path):
    root = tmp_path / "d"
    idx = open_index(root)
    idx.build(np.arange(N_OLD), clustered(N_OLD, seed=20))
    old_name = idx.graph.name
    run_child(root, "before-old-removed")
    assert old_name in os.listdir(root)
    again = open_index(root)
    assert again.status()["rows"] == N_NEW and again.graph.name != old_name
    rows = np.random.default_rng(1).standard_normal((N_NEW, 32)).astype(np.float32)
    assert again.search(rows[5], 1)[0].tolist() == [100_005]
    assert_clean(root)


def test_open_removes_every_kind_of_leftover(tmp_path):
    root = tmp_path / "d"
    idx = open_index(root)
    idx.build(np.arange(50), clustered(50, seed=21))
    build = idx.graph.path
    os.makedirs(root / ".tmp-build-1-1")
    (root / ".tmp-build-1-1" / "rows.f32").write_bytes(b"x")
    os.makedirs(root / "build-5-5-5")
    (root / ".CURRENT.abc.tmp").write_bytes(b"build-5-5-5")
    with open(os.path.join(build, "ids-9.i64"), "wb") as f:
        f.write(b"\0" * 8)
    open_index(root)
    assert_clean(root)

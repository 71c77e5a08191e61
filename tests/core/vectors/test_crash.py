"""Kill simulation: files cut at arbitrary points, compaction interrupted at every step."""

import os
import random
import shutil

import numpy as np
import pytest

from kissvdb.errors import Corruption
from kissvdb.vectors.collection import Collection

from .helpers import apply_all, model_of, random_ops, small_params

DIM = 8


def assert_holds(c, model):
    assert c.info()["live_count"] == len(model.items)
    for vid, (vec, meta) in model.items.items():
        got = c.get(vid)
        assert got is not None and np.array_equal(got[0], vec) and got[1] == meta, vid
        assert vid in [h.id for h in c.search(vec, 3)] or np.linalg.norm(vec) == 0


@pytest.mark.parametrize("kind", ["FLAT", "HNSW", "IVF_FLAT_Q8"])
def test_uncheckpointed_tail_cut_anywhere_then_replayed(tmp_path, kind):
    params = small_params()
    d = str(tmp_path / "c")
    ops = random_ops(random.Random(1), 500, DIM, 120)
    c = Collection.create(d, "c", DIM, "cosine", kind, params)
    apply_all(c, ops[:300])
    c.checkpoint()
    apply_all(c, ops[300:450])
    for r in c.runs:
        r.log.flush()
    c.close()
    rng = random.Random(2)
    active = c.runs[-1].id
    snap = str(tmp_path / "snap")
    shutil.copytree(d, snap)
    for trial in range(6):
        shutil.rmtree(d)
        shutil.copytree(snap, d)
        for ext in ("log", "f32"):
            p = os.path.join(d, "runs", f"run-{active:06d}.{ext}")
            size = os.path.getsize(p)
            with open(p, "r+b") as f:
                f.truncate(max(0, size - rng.randrange(size + 1)) if trial else size)
        # The manifest's own sizes are the floor; cutting below them is covered elsewhere.
        try:
            c = Collection.open(d, params)
        except Corruption:
            continue
        apply_all(c, ops[300:])  # what the WAL replays: everything past the checkpoint
        assert_holds(c, model_of(ops))
        c.close()


def test_cut_inside_the_checkpointed_range_is_corruption(tmp_path):
    params = small_params()
    d = str(tmp_path / "c")
    c = Collection.create(d, "c", DIM, "cosine", "FLAT", params)
    apply_all(c, random_ops(random.Random(1), 50, DIM, 20))
    c.checkpoint()
    c.close()
    p = os.path.join(d, "runs", "run-000001.log")
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 3)
    with pytest.raises(Corruption) as e:
        Collection.open(d, params)
    assert e.value.path == p


@pytest.mark.parametrize("kind", ["FLAT", "HNSW", "IVF_FLAT_Q8"])
def test_compaction_killed_at_each_step_keeps_every_vector(tmp_path, kind):
    params = small_params(run_target_bytes=4 << 10, run_retention=2)
    d = str(tmp_path / "c")
    ops = random_ops(random.Random(4), 600, DIM, 100)
    c = Collection.create(d, "c", DIM, "cosine", kind, params)
    apply_all(c, ops)
    if kind == "IVF_FLAT_Q8":
        c.train_now()
    c.checkpoint()
    model = model_of(ops)
    before = str(tmp_path / "before")
    shutil.copytree(d, before)
    prep = c.prepare_compaction()
    assert prep is not None
    result = c.run_compaction(prep)
    # Kill 1: new run written (maybe partly), manifest not swapped.
    mid = str(tmp_path / "mid")
    shutil.copytree(d, mid)
    rng = random.Random(9)
    for ext in ("log", "f32"):
        p = os.path.join(mid, "runs", f"run-{prep['run_id']:06d}.{ext}")
        with open(p, "r+b") as f:
            f.truncate(rng.randrange(os.path.getsize(p) + 1))
    c.install_compaction(prep, result)
    c.close()
    # Kill 2: manifest swapped, old runs not yet unlinked.
    after = str(tmp_path / "after")
    shutil.copytree(d, after)
    for f in os.listdir(os.path.join(before, "runs")):
        if not os.path.exists(os.path.join(after, "runs", f)):
            shutil.copy(os.path.join(before, "runs", f), os.path.join(after, "runs", f))
    for where in (mid, after, d):
        c2 = Collection.open(where, params)
        assert_holds(c2, model)
        names = {e.entry()["file"] for e in c2.runs}
        on_disk = {f for f in os.listdir(os.path.join(where, "runs")) if f.endswith(".log")}
        assert on_disk == names  # orphans removed
        c2.close()


def test_compaction_beside_a_deleting_writer_thread(tmp_path):
    """run_compaction (no lock) reads live flags while the applier clears them: never an error,
    and every vector alive at the end is kept."""
    import threading

    from kissvdb.vectors.collection import Remove, Upsert

    params = small_params(run_target_bytes=16 << 10, run_retention=2)
    c = Collection.create(str(tmp_path / "c"), "c", DIM, "cosine", "FLAT", params)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((3000, DIM)).astype(np.float32)
    apply_all(c, [Upsert(i + 1, str(i), vecs[i], None) for i in range(3000)], batch=500)
    deleted = set()
    for round_ in range(6):
        prep = c.prepare_compaction(force=True)
        if prep is None:
            break
        victims = [str(i) for i in range(round_, 3000, 7) if str(i) not in deleted][:200]

        def writer():
            for j, vid in enumerate(victims):
                c.apply([Remove(10_000 + round_ * 1000 + j, vid)], 10_000 + round_ * 1000 + j)

        t = threading.Thread(target=writer)
        t.start()
        result = c.run_compaction(prep)
        t.join()
        c.install_compaction(prep, result)
        deleted.update(victims)
    assert c.info()["live_count"] == 3000 - len(deleted)
    for i in range(0, 3000, 97):
        assert (c.get(str(i)) is None) == (str(i) in deleted)

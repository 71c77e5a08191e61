"""Creating and losing a collection inside a real Engine.

Whatever can fail is checked before the WAL: a refusal (an occupied directory, a staging path
that cannot be made, a bad metric or index) leaves the WAL exactly where it was, and the same
creation succeeds once the obstacle is gone. A collection whose actor fails and cannot be
rebuilt from its files is quarantined (503) while the engine keeps serving the others, and its
WAL is kept, so repaired, it comes back with every acknowledged vector.
"""

import os

import hnswlib
import numpy as np
import pytest
import trio

from kissvdb import layout
from kissvdb.actors.boot import open_engine
from kissvdb.config import Settings
from kissvdb.errors import InvalidArgument, Unavailable
from kissvdb.vectors.state import Item
from tests.helpers import wait_until


def settings(tmp_path):
    return Settings(data_dir=str(tmp_path / "data"), api_key="k")


@pytest.mark.parametrize("obstacle", ["final", "staging"])
async def test_an_obstacle_on_disk_refuses_the_creation_before_the_wal(tmp_path, obstacle):
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as e:
            collections = os.path.join(e.settings.data_dir, layout.VECTORS_DIR, layout.COLLECTIONS_DIR)
            dir_name = layout.collection_dir_name("Things")
            path = os.path.join(collections, dir_name if obstacle == "final" else layout.STAGING_PREFIX + dir_name)
            with open(path, "w") as f:
                f.write("not ours\n")
            before = e.durable_offset
            with pytest.raises(Unavailable) as info:
                await e.vector_create("Things", 3, "cosine", "FLAT")
            assert info.value.field == "collection"
            assert e.durable_offset == before
            assert await e.vector_list() == []
            os.unlink(path)
            await e.vector_create("Things", 3, "cosine", "FLAT")
            assert [c["collection"] for c in await e.vector_list()] == ["Things"]


async def test_a_bad_metric_or_index_never_reaches_the_wal(tmp_path):
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as e:
            before = e.durable_offset
            for metric, index, field in (("euclid", "FLAT", "metric"), ("cosine", "ANNOY", "index")):
                with pytest.raises(InvalidArgument) as info:
                    await e.vector_create("c", 3, metric, index)
                assert info.value.field == field
            assert e.durable_offset == before
            assert os.listdir(os.path.join(e.settings.data_dir, layout.VECTORS_DIR, layout.COLLECTIONS_DIR)) == []


async def test_a_collection_that_cannot_be_rebuilt_is_quarantined_and_the_engine_keeps_serving(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((60, 4)).astype(np.float32)
    s = settings(tmp_path)
    manifest = os.path.join(s.data_dir, layout.VECTORS_DIR, layout.COLLECTIONS_DIR, "x", "manifest.json")
    with trio.fail_after(60):
        async with open_engine(s) as e:
            for name in ("x", "y"):
                await e.vector_create(name, 4, "cosine", "HNSW")
                await e.vector_upsert_batch(name, [Item(str(i), data[i], None) for i in range(20)])
            await e.checkpoint()
            await e.vector_upsert_batch("x", [Item(str(i), data[i], None) for i in range(20, 40)])  # WAL only
            with open(manifest, "rb") as f:
                original = f.read()
            with open(manifest, "wb") as f:
                f.write(b"{ damaged")
            # Break the mutable HNSW segment under the actor: its next apply raises, and the
            # rebuild from disk then fails on the damaged manifest.
            wrong = hnswlib.Index(space="ip", dim=5)
            wrong.init_index(max_elements=16)
            e.vectors.store.collections["x"].hnsw.mutable.index = wrong
            try:
                await e.vector_put("x", Item("trip", data[40], None), add=False)
            except Unavailable:
                pass  # refused before it was queued; acknowledged otherwise (it is durable)
            await wait_until(lambda: e.vectors.store.quarantined, timeout=20)
            with pytest.raises(Unavailable) as info:
                await e.vector_get("x", "1")
            assert info.value.field == "collection" and "'x'" in info.value.message
            assert {c["collection"]: c["status"] for c in await e.vector_list()} == {"x": "quarantined", "y": "ready"}
            assert np.array_equal((await e.vector_get("y", "3"))[0], data[3])
            await e.vector_upsert_batch("y", [Item("late", data[50], None)])
            await e.checkpoint()  # must not let retention or the registry move past x's checkpoint
        with open(manifest, "wb") as f:
            f.write(original)
        async with open_engine(s) as e:
            for i in range(40):
                assert np.array_equal((await e.vector_get("x", str(i)))[0], data[i])
            assert np.array_equal((await e.vector_get("y", "late"))[0], data[50])

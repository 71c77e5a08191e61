"""Vector actors inside a real Engine: searches concurrent with ingestion, background training,
drop with writes in flight, replay after restart. No timing assertions; waits are bounded polls."""

import numpy as np
import trio

from kissvdb.actors.boot import open_engine
from kissvdb.config import Settings
from kissvdb.errors import NotFound
from kissvdb.vectors.state import Item
from tests.helpers import wait_until

DIM = 16


def settings(tmp_path, **kw):
    return Settings(data_dir=str(tmp_path / "data"), api_key="k", **kw)


def vec(rng):
    return rng.standard_normal(DIM).astype(np.float32)


async def test_searches_run_beside_ingestion(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((1200, DIM)).astype(np.float32)
    async with open_engine(settings(tmp_path)) as e:
        await e.vector_create("c", DIM, "cosine", "HNSW")
        acked: set[str] = set()
        bad = []

        async def ingest():
            for s in range(0, len(data), 50):
                items = [Item(str(s + i), data[s + i], None) for i in range(50)]
                res = await e.vector_upsert_batch("c", items)
                assert all(r["status"] == "upserted" for r in res)
                acked.update(it.id for it in items)

        async def search():
            for i in range(60):
                floor = len(acked)  # acknowledged before the search: must all be searchable
                hits = await e.vector_search("c", data[(i * 37) % len(data)], 10)
                if len(hits) < min(10, floor):
                    bad.append((i, floor, len(hits)))
                await trio.sleep(0)

        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                n.start_soon(ingest)
                n.start_soon(search)
                n.start_soon(search)
        assert not bad
        for i in range(0, len(data), 97):
            assert (await e.vector_search("c", data[i], 1))[0].id == str(i)


async def test_ivf_trains_in_the_background_and_keeps_answering(tmp_path):
    with trio.fail_after(90):
        await _training_scenario(tmp_path)


async def _training_scenario(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((600, DIM)).astype(np.float32)
    async with open_engine(settings(tmp_path, ivf_min_train_vectors=300, ivf_retrain_min_deltas=1000)) as e:
        await e.vector_create("q", DIM, "cosine", "IVF_FLAT_Q8")
        for s in range(0, len(data), 100):
            await e.vector_upsert_batch("q", [Item(str(s + i), data[s + i], None) for i in range(100)])
        coll = e.vectors.store.collections["q"]
        await wait_until(lambda: coll.centroids is not None, timeout=30, describe=lambda: str(coll.info()))
        assert (await e.vector_info("q"))["ivf_trained"] is True
        hits = await e.vector_search("q", data[5], 3, nprobe=1000)
        assert hits[0].id == "5"
    async with open_engine(settings(tmp_path)) as e:  # reopened: trained index loaded, not retrained
        coll = e.vectors.store.collections["q"]
        assert coll.centroids is not None
        assert (await e.vector_search("q", data[7], 1, nprobe=1000))[0].id == "7"


async def test_drop_waits_for_accepted_writes_and_frees_the_name(tmp_path):
    rng = np.random.default_rng(3)
    with trio.fail_after(60):
        await _drop_scenario(tmp_path, rng)


async def _drop_scenario(tmp_path, rng):
    async with open_engine(settings(tmp_path)) as e:
        await e.vector_create("d", DIM, "dot", "FLAT")

        async def writer(prefix):
            for i in range(20):
                try:
                    await e.vector_put("d", Item(f"{prefix}{i}", vec(rng), None), add=False)
                except NotFound:
                    return  # dropped under us: refused, never half-written

        async with trio.open_nursery() as n:
            n.start_soon(writer, "a")
            n.start_soon(writer, "b")
            await trio.sleep(0)
            await e.vector_drop("d")
        assert await e.vector_list() == []
        await e.vector_create("d", DIM, "dot", "FLAT")
        assert (await e.vector_info("d"))["count"] == 0
    async with open_engine(settings(tmp_path)) as e:
        assert (await e.vector_info("d"))["count"] == 0


async def test_restart_replays_writes_the_checkpoint_missed(tmp_path):
    with trio.fail_after(60):
        await _replay_scenario(tmp_path)


async def _replay_scenario(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.standard_normal((300, DIM)).astype(np.float32)
    s = settings(tmp_path, snapshot_interval_secs=3600)
    async with open_engine(s) as e:
        await e.vector_create("r", DIM, "cosine", "HNSW")
        await e.vector_upsert_batch("r", [Item(str(i), data[i], b'{"i":%d}' % i) for i in range(200)])
        await e.checkpoint()
        await e.vector_upsert_batch("r", [Item(str(i), data[i], None) for i in range(200, 300)])
        await e.vector_delete("r", "3")
        applied_before = e.vectors.store.collections["r"].checkpointed_offset
    async with open_engine(s) as e:
        info = await e.vector_info("r")
        assert info["count"] == 299 and info["applied_offset"] > applied_before
        got = await e.vector_get("r", "7")
        assert np.array_equal(got[0], data[7]) and got[1] == b'{"i":7}'
        assert (await e.vector_search("r", data[250], 1))[0].id == "250"


async def test_concurrent_searches_are_batched_and_answer_like_single_ones(tmp_path):
    with trio.fail_after(60):
        await _batched_scenario(tmp_path)


async def _batched_scenario(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.standard_normal((900, DIM)).astype(np.float32)
    async with open_engine(settings(tmp_path)) as e:
        await e.vector_create("b", DIM, "cosine", "HNSW")
        for s in range(0, len(data), 150):
            await e.vector_upsert_batch("b", [Item(str(s + i), data[s + i], b'{"n":%d}' % (s + i))
                                              for i in range(150)])
        coll = e.vectors.store.collections["b"]
        got = {}

        async def one(i, k, meta):
            got[i] = await e.vector_search("b", data[i], k, include_meta=meta)

        async with trio.open_nursery() as n:
            for i in range(40):
                n.start_soon(one, i, 1 + i % 7, i % 2 == 0)
        actor = e.vectors.actors["b"]
        assert actor.search_batched == 40 and actor.search_batches < 40
        for i in range(40):
            want = coll.search(data[i], 1 + i % 7, include_meta=i % 2 == 0)
            assert [(h.id, h.meta) for h in got[i]] == [(h.id, h.meta) for h in want]
            assert np.allclose([h.score for h in got[i]], [h.score for h in want], atol=1e-6)


async def test_a_failing_apply_restarts_the_collection_from_disk_and_wal(tmp_path):
    import hnswlib

    from kissvdb.errors import Unavailable

    rng = np.random.default_rng(7)
    data = rng.standard_normal((300, DIM)).astype(np.float32)
    with trio.fail_after(30):
        async with open_engine(settings(tmp_path)) as e:
            await e.vector_create("x", DIM, "cosine", "HNSW")
            await e.vector_upsert_batch("x", [Item(str(i), data[i], None) for i in range(100)])
            await e.checkpoint()
            await e.vector_upsert_batch("x", [Item(str(i), data[i], None) for i in range(100, 200)])
            first = e.vectors.actors["x"]
            # Break the mutable HNSW segment under the actor: its next apply raises.
            wrong = hnswlib.Index(space="ip", dim=DIM + 1)
            wrong.init_index(max_elements=16)
            e.vectors.store.collections["x"].hnsw.mutable.index = wrong
            try:
                await e.vector_put("x", Item("trip", data[200], None), add=False)
            except Unavailable:
                pass  # refused before it was queued; acknowledged otherwise (it is durable)
            await wait_until(lambda: e.vectors.actors.get("x") not in (None, first) and not e.vectors.actors["x"].closed,
                             timeout=20)
            assert e.vectors.restarts == 1
            for i in range(200):
                assert np.array_equal((await e.vector_get("x", str(i)))[0], data[i])
            await e.vector_put("x", Item("after", data[201], None), add=False)
            assert (await e.vector_search("x", data[201], 1))[0].id == "after"

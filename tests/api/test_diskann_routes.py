"""The DiskANN routes (contract §3.8) and a DISKANN collection over HTTP, on a real Engine:
shapes, clamps, every error (each checked to store nothing), builds during writes, the
automatic rebuild, a restart serving the built index without a rebuild, and collections of
other kinds (IVF_FLAT_Q8 ones stay IVF)."""

import numpy as np

from tests.api.conftest import open_api
from tests.helpers import assert_error, wait_until

C = "/v1/vector/dk"
DIM = 8
N = 700  # above the exact-scan size (512): searches go through the graph
M = 2000


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


async def create(api, name="dk", index="DISKANN"):
    r = await api.post(f"/v1/vector/{name}", json={"dim": DIM, "metric": "cosine", "index": index})
    assert r.status_code == 200, r.content
    return r.json()


async def fill(api, rows: np.ndarray, *, first: int = 0, meta=None, name="dk"):
    for lo in range(0, len(rows), 256):
        items = [{"id": f"v{first + i}", "vector": rows[i].tolist(),
                  "meta": meta(first + i) if meta else {"n": first + i}} for i in range(lo, min(len(rows), lo + 256))]
        r = await api.post(f"/v1/vector/{name}/upsert_batch", json={"items": items})
        assert r.status_code == 200 and all(x["status"] == "upserted" for x in r.json()["results"]), r.content


async def search(api, vec, k=5, filters=None):
    body = {"vector": np.asarray(vec).tolist(), "k": k, "include_meta": True}
    if filters is not None:
        body["filters"] = filters
    r = await api.post(f"{C}/search", json=body)
    assert r.status_code == 200, r.content
    return r.json()["hits"]


async def wait_status(api, ok, what: str) -> dict:
    """GET status until `ok(status)`, through the suite's bounded poll (tests/helpers.py)."""
    seen: list[dict] = []

    async def reached() -> bool:
        seen.append((await api.get(f"{C}/diskann/status")).json())
        return ok(seen[-1])

    await wait_until(reached, timeout=60, describe=lambda: f"waiting for {what}; last status {seen[-1:]}")
    return seen[-1]


async def test_create_and_status_before_any_build(api):
    assert await create(api) == {"collection": "dk", "dim": DIM, "metric": "cosine", "index": "DISKANN"}
    info = (await api.get(C)).json()
    assert info["index"] == "DISKANN"
    assert info["diskann"]["available"] is False and info["diskann"]["building"] is False
    listed = (await api.get("/v1/vector")).json()["collections"][0]
    assert listed["index"] == "DISKANN" and listed["diskann"]["available"] is False
    st = (await api.get(f"{C}/diskann/status")).json()
    assert st["available"] is False and st["last_built_ms"] == 0 and st["graph_files"] == []
    assert st["params"]["max_degree"] == 48 and st["params"]["search_list_size"] == 64
    assert st["params"]["build_threads"] >= 1
    # Not built yet: served exactly, every row found.
    rows = vectors(N)
    await fill(api, rows)
    hits = await search(api, rows[3], k=3)
    assert hits[0]["id"] == "v3" and len(hits) == 3


async def test_build_with_wait_then_search_and_tune(api):
    await create(api)
    rows = vectors(N)
    await fill(api, rows)
    r = await api.post(f"{C}/diskann/build", json={"max_degree": 16, "search_list_size": 10**6, "wait": True})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["ok"] is True
    assert body["params"]["max_degree"] == 16 and body["params"]["search_list_size"] == 65535  # clamped
    st = body["status"]
    assert st["available"] is True and st["building"] is False and st["rows"] == N
    assert st["last_built_ms"] > 0 and st["graph_files"] and all(f.startswith("diskann/") for f in st["graph_files"])
    assert st["params"] == body["params"]
    for i in (0, 17, 650):
        hits = await search(api, rows[i], k=4)
        assert hits[0]["id"] == f"v{i}" and len(hits) == 4
        assert hits[0]["meta"] == {"n": i}
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # tune clamps too; ?wait=true in the query waits as "wait": true does.
    r = await api.post(f"{C}/diskann/tune", json={"max_degree": 2, "build_threads": 0})
    assert r.json()["params"]["max_degree"] == 4 and r.json()["params"]["build_threads"] == 1
    r = await api.post(f"{C}/diskann/build?wait=true", json={"max_degree": 16, "build_threads": 10**6})
    assert r.json()["params"]["build_threads"] == 1024
    assert r.status_code == 200 and r.json()["status"]["params"]["max_degree"] == 16
    assert r.json()["status"]["available"] is True and r.json()["status"]["building"] is False
    # tune stores params, builds nothing.
    built = r.json()["status"]["last_built_ms"]
    r = await api.post(f"{C}/diskann/tune", json={"search_list_size": 96})
    assert r.status_code == 200
    t = r.json()
    assert t["ok"] is True and t["params"]["search_list_size"] == 96 and t["params"]["max_degree"] == 16
    assert t["status"]["available"] is True and t["status"]["last_built_ms"] == built
    st = (await api.get(f"{C}/diskann/status")).json()
    assert st["params"]["search_list_size"] == 96
    assert (await api.get(C)).json()["diskann"]["params"]["search_list_size"] == 96


async def test_bad_input_is_4xx_naming_the_field_and_stores_nothing(api):
    await create(api)
    await create(api, "ivf", "IVF_FLAT_Q8")
    await fill(api, vectors(10))
    before = (await api.get(f"{C}/diskann/status")).json()
    offset = api.engine.durable_offset
    cases = [
        ("build", {"data": b"[1]"}, 422, "body"),
        ("build", {"data": b"{not json"}, 400, None),
        ("build", {"json": {"max_degree": "x"}}, 422, "max_degree"),
        ("build", {"json": {"build_threads": -1}}, 422, "build_threads"),
        ("build", {"json": {"search_list_size": 1.5}}, 422, "search_list_size"),
        ("build", {"data": b"{\"max_degree\": 1180591620717411303424}"}, 422, "max_degree"),
        ("build", {"json": {"wait": "yes"}}, 422, "wait"),
        ("build", {"json": {"depth": 3}}, 422, "depth"),
        ("tune", {"json": {"wait": True}}, 422, "wait"),
        ("tune", {"json": {"max_degree": [4]}}, 422, "max_degree"),
        ("tune", {"data": b'"x"'}, 422, "body"),
    ]
    for route, kw, status, field in cases:
        r = await api.post(f"{C}/diskann/{route}", headers={"content-type": "application/json"}, **kw)
        assert_error(r, status, field=field)
    assert_error(await api.post(f"{C}/diskann/build?wait=maybe", json={}), 400, field="wait")
    for route in ("build", "tune"):
        assert_error(await api.post(f"/v1/vector/nope/diskann/{route}", json={}), 404, "not_found")
        assert_error(await api.post(f"/v1/vector/{'x' * 300}/diskann/{route}", json={}), 400)
        # Another index kind: 409 naming the collection.
        assert_error(await api.post(f"/v1/vector/ivf/diskann/{route}", json={}), 409, "conflict", field="collection")
    assert_error(await api.get("/v1/vector/nope/diskann/status"), 404, "not_found")
    after = (await api.get(f"{C}/diskann/status")).json()
    assert after == before and after["available"] is False
    assert api.engine.durable_offset == offset
    # status of another kind: nothing built, the configured params.
    ivf = (await api.get("/v1/vector/ivf/diskann/status")).json()
    assert ivf["available"] is False and ivf["params"]["max_degree"] == 48


async def test_build_during_writes_keeps_new_rows_and_filters(api):
    await create(api)
    rows = vectors(4000, seed=1)
    await fill(api, rows, meta=lambda i: {"even": i % 2 == 0})
    r = await api.post(f"{C}/diskann/build", json={})
    st = r.json()["status"]
    assert r.status_code == 200 and st["building"] is True and st["available"] is False
    # A second request while it runs answers the running build's status.
    again = (await api.post(f"{C}/diskann/build", json={})).json()
    assert again["ok"] is True and again["status"]["building"] in (True, False)
    new = vectors(50, seed=2)
    await fill(api, new, first=4000, meta=lambda i: {"even": i % 2 == 0})
    deleted = [f"v{i}" for i in range(0, 40)]
    r = await api.post(f"{C}/delete_batch", json={"ids": deleted})
    assert r.status_code == 200
    st = await wait_status(api, lambda s: s["available"] and not s["building"], "built")
    assert st["rows"] == 4000 or st["unindexed_rows"] >= 0
    for i in range(0, 50, 7):
        hits = await search(api, new[i], k=3)
        assert hits[0]["id"] == f"v{4000 + i}"  # written during the build: served from the segment
    for i in (0, 5, 39):
        hits = await search(api, rows[i], k=10)
        assert f"v{i}" not in [h["id"] for h in hits] and len(hits) == 10  # deleted: masked
    # A filter keeps min(k, matches): k > matches of a rare value gets all of them.
    await fill(api, vectors(3, seed=3), first=9000, meta=lambda i: {"rare": True})
    hits = await search(api, rows[100], k=10, filters={"rare": True})
    assert sorted(h["id"] for h in hits) == ["v9000", "v9001", "v9002"]
    hits = await search(api, rows[100], k=25, filters={"even": True})
    assert len(hits) == 25 and all(h["meta"]["even"] is True for h in hits)


async def test_rebuild_starts_by_itself_past_the_share(make_api):
    async with make_api(diskann_rebuild_share=0.1) as api:
        await create(api)
        await fill(api, vectors(N))
        r = await api.post(f"{C}/diskann/build", json={"wait": True})
        assert r.json()["status"]["rows"] == N and r.json()["status"]["unindexed_rows"] == 0
        await fill(api, vectors(50, seed=5), first=N)  # 50/750 < 0.1: no rebuild
        st = (await api.get(f"{C}/diskann/status")).json()
        assert st["rows"] == N and st["unindexed_rows"] == 50 and st["building"] is False
        await fill(api, vectors(60, seed=6), first=N + 50)  # 110/810 > 0.1: rebuild
        st = await wait_status(api, lambda s: s["rows"] == N + 110 and not s["building"], "rebuilt")
        assert st["unindexed_rows"] == 0 and st["masked_rows"] == 0


async def test_restart_serves_the_built_index_without_rebuilding(tmp_path):
    data = tmp_path / "data"
    rows = vectors(N)
    async with open_api(data) as api:
        await create(api)
        await fill(api, rows)
        built = (await api.post(f"{C}/diskann/build", json={"wait": True, "max_degree": 8})).json()["status"]
        await fill(api, vectors(5, seed=9), first=N)  # after the build: in the WAL tail / segment
        assert (await api.post(f"{C}/delete", json={"id": "v1"})).status_code == 200
    async with open_api(data) as api:
        st = await wait_status(api, lambda s: s["available"], "serving after the restart")
        assert st["building"] is False
        assert st["last_built_ms"] == built["last_built_ms"] and st["graph_files"] == built["graph_files"]
        assert st["params"]["max_degree"] == 8 and st["rows"] == N
        assert st["unindexed_rows"] == 5 and st["masked_rows"] >= 1
        assert (await search(api, rows[2], k=2))[0]["id"] == "v2"
        assert "v1" not in [h["id"] for h in await search(api, rows[1], k=5)]
        assert (await search(api, vectors(5, seed=9)[3], k=1))[0]["id"] == f"v{N + 3}"


async def test_ivf_collections_stay_ivf_across_a_restart(tmp_path):
    """Before DiskANN, INDEX_KIND=DISKANN created IVF_FLAT_Q8 collections and recorded that kind
    (the creation event's `index` and manifest.json say IVF_FLAT_Q8): they stay IVF."""
    data = tmp_path / "data"
    async with open_api(data) as api:
        await create(api, "old", "IVF_FLAT_Q8")
    async with open_api(data, index_kind="DISKANN") as api:
        assert (await api.get("/v1/vector/old")).json()["index"] == "IVF_FLAT_Q8"
        assert_error(await api.post("/v1/vector/old/diskann/build", json={}), 409, "conflict", field="collection")
        # New collections with no `index` get the configured DISKANN.
        r = await api.post("/v1/vector/new", json={"dim": DIM, "metric": "cosine"})
        assert r.json()["index"] == "DISKANN"


async def test_a_damaged_build_is_dropped_served_exactly_and_rebuilt(tmp_path):
    data = tmp_path / "data"
    rows = vectors(N)
    async with open_api(data) as api:
        await create(api)
        await fill(api, rows)
        built = (await api.post(f"{C}/diskann/build", json={"wait": True})).json()["status"]
    graph = next(f for f in built["graph_files"] if f.endswith(".usearch"))
    coll_dir = next(p for p in (data / "vectors" / "collections").iterdir() if (p / "diskann").is_dir())
    (coll_dir / graph).unlink()
    async with open_api(data) as api:
        assert (await search(api, rows[9], k=2))[0]["id"] == "v9"  # served exactly meanwhile
        st = await wait_status(api, lambda s: s["available"] and not s["building"], "rebuilt")
        assert st["last_built_ms"] > built["last_built_ms"] and st["rows"] == N
        assert (await search(api, rows[10], k=2))[0]["id"] == "v10"


async def test_compaction_and_drop_keep_the_index_right(make_api):
    async with make_api(diskann_rebuild_share=1.0) as api:  # no rebuild: the graph must stay right
        await compaction_and_drop(api)


async def compaction_and_drop(api):
    await create(api)
    rows = vectors(M)  # half of it live stays above the exact-scan size
    await fill(api, rows)
    await api.post(f"{C}/diskann/build", json={"wait": True})
    dead = [f"v{i}" for i in range(0, M, 2)]
    for lo in range(0, len(dead), 256):
        assert (await api.post(f"{C}/delete_batch", json={"ids": dead[lo:lo + 256]})).status_code == 200
    assert (await api.post(f"{C}/compact")).status_code == 200  # renumbers rows, keeps their vnos
    for i in (1, 301, 1999):
        hits = await search(api, rows[i], k=5)
        assert hits[0]["id"] == f"v{i}" and all(int(h["id"][1:]) % 2 == 1 for h in hits)
    st = (await api.get(f"{C}/diskann/status")).json()
    assert st["available"] and st["masked_rows"] == M // 2
    assert (await api.delete(C)).status_code == 200
    await create(api)  # the same name again: nothing of the old index is left
    st = (await api.get(f"{C}/diskann/status")).json()
    assert st["available"] is False and st["last_built_ms"] == 0


async def test_a_wait_past_the_request_deadline_is_408_and_the_build_carries_on(make_api):
    async with make_api(request_timeout_secs=1) as api:
        await create(api)
        await fill(api, vectors(6000, seed=7))
        # The widest graph on one thread: longer than the 1 s deadline.
        r = await api.post(f"{C}/diskann/build", json={"wait": True, "max_degree": 1024, "build_threads": 1})
        assert_error(r, 408, "timeout")
        st = await wait_status(api, lambda s: s["available"] and not s["building"], "the build done")
        assert st["rows"] == 6000 and st["params"]["max_degree"] == 1024

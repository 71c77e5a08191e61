"""Vectors in the crash harness (tests/e2e/test_crash.py).

Writers upsert batches (CBOR and JSON) and delete some of their own ids, one request at a time,
recording each acknowledged write. A compactor task keeps calling POST .../compact while small
run files and a low tombstone ratio make the server compact on its own too. At a seeded-random
moment the server gets SIGKILL; after a restart every acknowledged vector is found by `get`
(bit-identical) and as its own nearest neighbour by `search`, and every acknowledged delete
stays deleted. The write in flight at the kill may or may not have landed. E2E_SEED replays.
"""

from __future__ import annotations

import random

import cbor2
import httpx
import numpy as np


DIM = 8
WRITERS = 3
ENV = {"RUN_TARGET_BYTES": "4096", "RUN_RETENTION": "2", "COMPACTION_TRIGGER_TOMBSTONE_RATIO": "0.1",
       "IVF_MIN_TRAIN_VECTORS": "64", "IVF_RETRAIN_MIN_DELTAS": "200"}
COLLECTIONS = {"h": "HNSW", "q": "IVF_FLAT_Q8"}


class Writer:
    def __init__(self, wid: int, rng: random.Random):
        self.wid = wid
        self.rng = rng
        self.live: dict[tuple[str, str], np.ndarray] = {}  # (collection, id) -> vector, acknowledged
        self.deleted: set[tuple[str, str]] = set()
        self.inflight: set[tuple[str, str]] = set()  # touched by the request in flight
        self.n = 0
        self.acked = 0

    async def run(self, client: httpx.AsyncClient) -> None:
        while True:
            coll = self.rng.choice(sorted(COLLECTIONS))
            mine = [k for k in self.live if k[0] == coll]
            if mine and self.rng.random() < 0.2:
                key = self.rng.choice(mine)
                self.inflight = {key}
                r = await client.post(f"/v1/vector/{coll}/delete", json={"id": key[1]})
                assert r.status_code == 200, r.text
                del self.live[key]
                self.deleted.add(key)
            else:
                items = []
                for _ in range(self.rng.randrange(1, 8)):
                    if mine and self.rng.random() < 0.2:
                        vid = self.rng.choice(mine)[1]  # overwrite one of ours
                    else:
                        self.n += 1
                        vid = f"w{self.wid}-{self.n}"
                    vec = np.array([self.rng.gauss(0, 1) for _ in range(DIM)], np.float32)
                    items.append((vid, vec))
                self.inflight = {(coll, vid) for vid, _ in items}
                if self.rng.random() < 0.5:
                    body = cbor2.dumps({"items": [{"id": v, "vector": x.tobytes()} for v, x in items]})
                    r = await client.post(f"/v1/vector/{coll}/upsert_batch", content=body,
                                          headers={"Content-Type": "application/cbor"})
                else:
                    r = await client.post(f"/v1/vector/{coll}/upsert_batch",
                                          json={"items": [{"id": v, "vector": x.tolist()} for v, x in items]})
                assert r.status_code == 200, r.text
                assert all(x["status"] == "upserted" for x in r.json()["results"])
                for vid, vec in items:
                    self.live[(coll, vid)] = vec
                    self.deleted.discard((coll, vid))
            self.inflight = set()
            self.acked += 1


async def compactor(client: httpx.AsyncClient) -> None:
    while True:
        for coll in sorted(COLLECTIONS):
            r = await client.post(f"/v1/vector/{coll}/compact")
            assert r.status_code == 200, r.text


async def create_collections(client: httpx.AsyncClient) -> None:
    for name, kind in COLLECTIONS.items():
        r = await client.post(f"/v1/vector/{name}", json={"dim": DIM, "metric": "cosine", "index": kind})
        assert r.status_code == 200, r.text


async def verify(client: httpx.AsyncClient, writers: list[Writer], where: str) -> None:
    for w in writers:
        for (coll, vid), vec in w.live.items():
            if (coll, vid) in w.inflight:
                continue  # overwritten by the request in flight: either version is fine
            r = await client.get(f"/v1/vector/{coll}/get", params={"id": vid})
            assert r.status_code == 200, f"{where}: acknowledged {coll}/{vid} lost: {r.text}"
            got = np.array(r.json()["vector"], np.float32)
            assert np.array_equal(got, vec), f"{where}: {coll}/{vid} changed"
            r = await client.post(f"/v1/vector/{coll}/search", json={"vector": vec.tolist(), "k": 1})
            assert r.json()["hits"][0]["id"] == vid, f"{where}: {coll}/{vid} not its own neighbour"
        for coll, vid in w.deleted - w.inflight:
            r = await client.get(f"/v1/vector/{coll}/get", params={"id": vid})
            assert r.status_code == 404, f"{where}: deleted {coll}/{vid} came back"
        # The in-flight request's outcome is now known: adopt what the server says.
        for coll, vid in w.inflight:
            r = await client.get(f"/v1/vector/{coll}/get", params={"id": vid})
            if r.status_code == 200:
                w.live[(coll, vid)] = np.array(r.json()["vector"], np.float32)
                w.deleted.discard((coll, vid))
            else:
                w.live.pop((coll, vid), None)
                w.deleted.add((coll, vid))
        w.inflight = set()

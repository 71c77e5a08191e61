"""kissvdb's and Chroma's vector HTTP APIs behind one interface, so one client measures both.

A target knows its paths and body shapes and nothing else: bench/compare_http.py loads the same
vectors into both, measures recall@k with the same Python loop (`recall_at_k`) and throughput
with the same wrk scripts (request bodies prepared here, replayed by wrk). Vectors travel as JSON
numbers printed with 7 significant digits, the same text for both servers.

HNSW parameters are matched: M=16 and ef_construction=200 (kissvdb's defaults, set explicitly on
the Chroma collection: `max_neighbors`, `ef_construction`), cosine space, and the same search ef
(kissvdb: `ef` in each search body; Chroma: the collection's `hnsw.ef_search`, given when the
collection is created: chromadb 1.5.9 accepts a later change of `ef_search` and shows it in the
collection's configuration, but searches of an already loaded index keep the old value, as its
unchanged recall shows, so ChromaVectors has no `set_ef`).
"""

from __future__ import annotations

import json

import cbor2
import httpx
import numpy as np

M = 16
EF_CONSTRUCTION = 200
CHROMA_PREFIX = "/api/v2/tenants/default_tenant/databases/default_database"


def vector_json(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v.astype(np.float32).tolist()) + "]"


class KissvdbVectors:
    name = "kissvdb"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.client = httpx.Client(base_url=base_url, headers=self.headers, timeout=300)
        self.ef: dict[str, int] = {}

    def create(self, collection: str, dim: int, ef: int) -> None:
        resp = self.client.post(f"/v1/vector/{collection}", json={"dim": dim, "metric": "cosine", "index": "HNSW"})
        resp.raise_for_status()
        self.ef[collection] = ef

    def set_ef(self, collection: str, ef: int) -> None:
        self.ef[collection] = ef

    def load(self, collection: str, base: np.ndarray, batch: int = 256) -> None:
        """Rows as ids "0".."n-1", CBOR float32 batches (the fastest path in), then one compaction."""
        for s in range(0, len(base), batch):
            items = [{"id": str(i), "vector": base[i].astype(np.float32).tobytes()}
                     for i in range(s, min(s + batch, len(base)))]
            resp = self.client.post(f"/v1/vector/{collection}/upsert_batch", content=cbor2.dumps({"items": items}),
                                    headers={"Content-Type": "application/cbor"})
            resp.raise_for_status()
        self.client.post(f"/v1/vector/{collection}/compact").raise_for_status()

    def search_path(self, collection: str) -> str:
        return f"/v1/vector/{collection}/search"

    def search_body(self, collection: str, query: np.ndarray, k: int) -> str:
        return f'{{"vector":{vector_json(query)},"k":{k},"ef":{self.ef[collection]}}}'

    def hit_ids(self, answer: dict) -> list[str]:
        return [hit["id"] for hit in answer["hits"]]

    def upsert_path(self, collection: str) -> str:
        return f"/v1/vector/{collection}/upsert_batch"

    def upsert_template(self, vectors: np.ndarray) -> str:
        """A JSON upsert_batch body whose ids are `@ID@` marks (filled by wrk per request)."""
        return '{"items":[' + ",".join(f'{{"id":"@ID@","vector":{vector_json(v)}}}' for v in vectors) + "]}"


class ChromaVectors:
    name = "Chroma"

    def __init__(self, base_url: str) -> None:
        self.headers = {"Content-Type": "application/json"}
        self.client = httpx.Client(base_url=base_url, headers=self.headers, timeout=300)
        self.ids: dict[str, str] = {}

    def create(self, collection: str, dim: int, ef: int) -> None:
        hnsw = {"space": "cosine", "max_neighbors": M, "ef_construction": EF_CONSTRUCTION, "ef_search": ef}
        resp = self.client.post(f"{CHROMA_PREFIX}/collections",
                                json={"name": collection, "configuration": {"hnsw": hnsw}})
        resp.raise_for_status()
        self.ids[collection] = resp.json()["id"]

    def load(self, collection: str, base: np.ndarray, batch: int = 1000) -> None:
        for s in range(0, len(base), batch):
            rows = range(s, min(s + batch, len(base)))
            resp = self.client.post(self.upsert_path(collection),
                                    content=json.dumps({"ids": [str(i) for i in rows],
                                                        "embeddings": base[s:rows.stop].astype(np.float32).tolist()}))
            resp.raise_for_status()

    def search_path(self, collection: str) -> str:
        return f"{CHROMA_PREFIX}/collections/{self.ids[collection]}/query"

    def search_body(self, collection: str, query: np.ndarray, k: int) -> str:
        return f'{{"query_embeddings":[{vector_json(query)}],"n_results":{k},"include":["distances"]}}'

    def hit_ids(self, answer: dict) -> list[str]:
        return answer["ids"][0]

    def upsert_path(self, collection: str) -> str:
        return f"{CHROMA_PREFIX}/collections/{self.ids[collection]}/upsert"

    def upsert_template(self, vectors: np.ndarray) -> str:
        return ('{"ids":[' + ",".join('"@ID@"' for _ in vectors) + '],"embeddings":['
                + ",".join(vector_json(v) for v in vectors) + "]}")


def recall_at_k(target, collection: str, queries: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean recall@k of one search per query, sequential, over HTTP (ids are base row numbers)."""
    found = 0
    for query, expected in zip(queries, truth):
        resp = target.client.post(target.search_path(collection), content=target.search_body(collection, query, k))
        resp.raise_for_status()
        found += len({int(i) for i in target.hit_ids(resp.json())} & {int(i) for i in expected[:k]})
    return found / (len(queries) * k)

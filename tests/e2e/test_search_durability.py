"""/search documents survive a crash (issue 11): a real `kissvdb serve`, real `kill -9`.

Documents are ingested, one is replaced and one deleted, the server is killed with SIGKILL and
started again: searches give the same answers. The FTS index is then made to lose what it held:
- its SQLite WAL removed after the kill (what a power cut may do under synchronous=NORMAL): the
  index reverts to its last checkpoint and boot replays the rest from the server's WAL;
- its file deleted: boot rebuilds it from the `_search` collection.
Periodic checkpoints are pushed out of the way (SNAPSHOT_INTERVAL_SECS=3600).
"""

from __future__ import annotations

import httpx

from kissvdb import layout

from .server import ServerProcess, parse_metrics

DOCS = [
    {"id": 1, "vector": [1, 0, 0], "content": "the quick brown fox", "metadata": {"category": "animal", "group_id": 1,
                                                                                 "processed_at": 1}},
    {"id": 2, "vector": [0, 1, 0], "content": "a lazy dog sleeps", "metadata": {"category": "animal"}},
    {"id": 3, "vector": [0, 0, 1], "content": "stock markets fall", "metadata": {"category": "news"}},
    {"id": 4, "vector": [1, 1, 0], "content": "the fox returns", "metadata": {"category": "animal", "group_id": 1,
                                                                             "processed_at": 2}},
]
QUERIES = [
    {"query": "TEST_VEC:1,0,0", "top_k": 10},
    {"query": "fox dog markets", "mode": "keyword"},
    {"query": "fox", "mode": "hybrid", "vector": [0, 1, 0]},
    {"query": "TEST_VEC:1,0,0", "filters": {"category": "animal", "version_policy": "latest"}},
    {"query": "TEST_VEC:1,1,1", "group_by": "category", "group_limit": 1},
]


def answers(c: httpx.Client) -> list[list[tuple[int, str]]]:
    out = []
    for body in QUERIES:
        reply = c.post("/search", json=body)
        assert reply.status_code == 200, reply.text
        out.append([(r["document"]["id"], r["document"]["content"]) for r in reply.json()["results"]])
    return out


def metric(c: httpx.Client, name: str) -> int:
    reply = c.get("/v1/metrics")
    assert reply.status_code == 200, reply.text
    return int(parse_metrics(reply.text)[name])


def test_search_documents_survive_kill_9_and_the_index_catches_up(tmp_path):
    data_dir = tmp_path / "data"
    index = data_dir / layout.SEARCH_DB
    server = ServerProcess(data_dir, env={"SNAPSHOT_INTERVAL_SECS": "3600"})
    with server:
        def client() -> httpx.Client:
            return httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30.0)

        with client() as c:
            assert c.post("/search/ingest", json={"document": DOCS[0]}).status_code == 200
            assert c.post("/search/ingest", json={"documents": DOCS[1:]}).status_code == 200
            replaced = dict(DOCS[1], content="a lazy dog wakes up")
            assert c.post("/search/ingest", json={"document": replaced}).status_code == 200
            assert c.post("/search/delete", json={"id": 3}).json() == {"deleted": True}
            before = answers(c)
            assert (2, "a lazy dog wakes up") in before[0] and all(3 not in [i for i, _ in a] for a in before)
            assert before[3] == [(4, "the fox returns"), (2, "a lazy dog wakes up")]
            durable = metric(c, "kissvdb_wal_durable_offset")
            assert metric(c, "kissvdb_search_applied_offset") == durable

        server.kill9()
        server.start()
        with client() as c:
            assert answers(c) == before
            assert metric(c, "kissvdb_search_documents") == 3

        # The index loses its commits since its last checkpoint: replayed from the WAL.
        with client() as c:
            assert c.post("/search/ingest", json={"document": DOCS[2]}).status_code == 200  # 3 is back
            before = answers(c)
            assert (3, "stock markets fall") in before[1]
        server.kill9()
        for suffix in ("-wal", "-shm"):
            index.with_name(index.name + suffix).unlink(missing_ok=True)
        server.start()
        with client() as c:
            assert answers(c) == before
            assert metric(c, "kissvdb_search_applied_offset") == metric(c, "kissvdb_wal_durable_offset")

        # The index file is gone: rebuilt from the collection.
        server.kill9()
        for suffix in ("", "-wal", "-shm"):
            index.with_name(index.name + suffix).unlink(missing_ok=True)
        server.start()
        with client() as c:
            assert answers(c) == before
            assert metric(c, "kissvdb_search_documents") == 4
        assert any("search index rebuilt from collection _search: 4 documents" in line for line in server.log_lines())
        server.stop()

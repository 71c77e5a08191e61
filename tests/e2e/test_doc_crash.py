"""Document crash safety, end to end: SIGKILL a real server during concurrent document writes.

Writer tasks each own a few documents and run seeded puts, CAS puts (`?if_revision=`), stale CAS
puts (409, nothing written) and deletes, one request at a time. At a seeded-random moment the
server is killed with SIGKILL and restarted on the same data directory. Then, per writer, its
documents (read with `find` over its own collection, and each with GET) must be exactly the
state after its acknowledged operations, or after those plus the one in flight at the kill:
every acknowledged document is present with its acknowledged revision. Set E2E_SEED to replay.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import httpx
import trio

from .server import ServerProcess

WRITERS = 5
DOCS_PER_WRITER = 4
CYCLES = 2
KILL_AFTER_S = (0.3, 1.2)
CYCLE_TIMEOUT_S = 45.0
HTTP_TIMEOUT_S = 10.0

Model = dict[str, tuple[int, dict]]  # id -> (revision, doc)


@dataclass
class Op:
    kind: str  # put | cas | cas_stale | delete
    id: str
    doc: dict | None = None
    if_revision: int | None = None


def apply_op(model: Model, op: Op) -> Model:
    after = dict(model)
    if op.kind in ("put", "cas"):
        prev = model.get(op.id)
        after[op.id] = ((prev[0] + 1) if prev else 1, op.doc)
    elif op.kind == "delete":
        after.pop(op.id, None)
    return after


@dataclass
class Writer:
    wid: int
    rng: random.Random
    model: Model = field(default_factory=dict)
    seq: int = 0
    acked: int = 0
    inflight: Op | None = None

    @property
    def collection(self) -> str:
        return f"crash-w{self.wid}"

    def next_op(self) -> Op:
        self.seq += 1
        id_ = f"d{self.rng.randrange(DOCS_PER_WRITER)}"
        doc = {"w": self.wid, "seq": self.seq, "nested": {"pad": "x" * self.rng.randrange(0, 300)}}
        cur = self.model.get(id_)
        roll = self.rng.random()
        if cur is None:
            return Op("put", id_, doc) if roll < 0.8 else Op("delete", id_)
        if roll < 0.35:
            return Op("put", id_, doc)
        if roll < 0.75:
            return Op("cas", id_, doc, cur[0])
        if roll < 0.85:
            return Op("cas_stale", id_, doc, cur[0] + 1 + self.rng.randrange(3))
        return Op("delete", id_)

    async def run(self, client: httpx.AsyncClient, seed: int) -> None:
        while True:
            op = self.next_op()
            self.inflight = op
            path = f"/v1/doc/{self.collection}/{op.id}"
            try:
                if op.kind == "delete":
                    resp = await client.delete(path)
                else:
                    params = {"if_revision": op.if_revision} if op.if_revision is not None else None
                    resp = await client.put(path, json=op.doc, params=params)
            except httpx.TransportError:
                return  # died with `op` in flight
            self.inflight = None
            where = f"seed={seed} writer={self.wid} op={op}"
            if resp.status_code == 503:
                continue
            after = apply_op(self.model, op)
            if op.kind == "cas_stale":
                assert resp.status_code == 409, f"{where}: {resp.status_code} {resp.text}"
            elif op.kind == "delete":
                assert resp.status_code == 200 and resp.json() == {"deleted": op.id in self.model}, where
            else:
                assert resp.status_code == 200, f"{where}: {resp.status_code} {resp.text}"
                ack = resp.json()
                assert (ack["id"], ack["revision"], ack["doc"]) == (op.id, after[op.id][0], op.doc), where
            self.model = after
            self.acked += 1


async def read_state(client: httpx.AsyncClient, collection: str) -> Model:
    state: Model = {}
    cursor = None
    while True:
        body = {"limit": 2, "cursor": cursor}
        resp = await client.post(f"/v1/doc/{collection}/find", json=body)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        for d in page["documents"]:
            state[d["id"]] = (d["revision"], d["doc"])
            one = await client.get(f"/v1/doc/{collection}/{d['id']}")
            assert one.status_code == 200 and (one.json()["revision"], one.json()["doc"]) == state[d["id"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return state


def client_for(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=HTTP_TIMEOUT_S,
                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


async def test_acknowledged_documents_survive_sigkill(tmp_path):
    seed = int(os.environ.get("E2E_SEED", random.randrange(1 << 32)))
    print(f"E2E_SEED={seed}")
    rng = random.Random(seed)
    writers = [Writer(w, random.Random(rng.randrange(1 << 32))) for w in range(WRITERS)]
    server = ServerProcess(tmp_path / "data")
    with server:
        for cycle in range(CYCLES):
            kill_after_s = rng.uniform(*KILL_AFTER_S)
            with trio.fail_after(CYCLE_TIMEOUT_S):
                clients = [client_for(server) for _ in writers]
                try:
                    async with trio.open_nursery() as nursery:
                        for writer, client in zip(writers, clients):
                            nursery.start_soon(writer.run, client, seed)
                        await trio.sleep(kill_after_s)  # the crash moment, not a wait for a condition
                        await trio.to_thread.run_sync(server.kill9)
                finally:
                    for client in clients:
                        await client.aclose()
                assert sum(w.acked for w in writers) > 0, f"seed={seed}: nothing acknowledged"
                await trio.to_thread.run_sync(server.start)
                async with client_for(server) as client:
                    for w in writers:
                        actual = await read_state(client, w.collection)
                        with_inflight = apply_op(w.model, w.inflight) if w.inflight else w.model
                        assert actual in (w.model, with_inflight), (
                            f"seed={seed} cycle={cycle} writer={w.wid} inflight={w.inflight}\n"
                            f" actual {actual}\n acked  {w.model}")
                        w.model = actual
                        w.inflight = None

        # A graceful stop drains and checkpoints; everything is still there after it.
        with trio.fail_after(CYCLE_TIMEOUT_S):
            code = await trio.to_thread.run_sync(server.stop)
            assert code == 0, f"graceful stop exited with {code}"
            await trio.to_thread.run_sync(server.start)
            async with client_for(server) as client:
                for w in writers:
                    assert await read_state(client, w.collection) == w.model, f"seed={seed} writer={w.wid}"

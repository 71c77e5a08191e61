"""Documents in the crash harness (tests/e2e/test_crash.py).

Writer tasks each own a few documents and run seeded puts, CAS puts (`?if_revision=`), stale CAS
puts (409, nothing written) and deletes, one request at a time. At a seeded-random moment the
server is killed with SIGKILL and restarted on the same data directory. Then, per writer, its
documents (read with `find` over its own collection, and each with GET) must be exactly the
state after its acknowledged operations, or after those plus the one in flight at the kill:
every acknowledged document is present with its acknowledged revision. Set E2E_SEED to replay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx


WRITERS = 5
DOCS_PER_WRITER = 4

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


async def verify(client: httpx.AsyncClient, writers: list[Writer], seed: int, cycle: int) -> None:
    for w in writers:
        actual = await read_state(client, w.collection)
        with_inflight = apply_op(w.model, w.inflight) if w.inflight else w.model
        assert actual in (w.model, with_inflight), (
            f"seed={seed} cycle={cycle} writer={w.wid} inflight={w.inflight}\n"
            f" actual {actual}\n acked  {w.model}")
        w.model = actual
        w.inflight = None

"""KV keys in the crash harness (tests/e2e/test_crash.py).

Several writer tasks each own a few keys and run a seeded sequence of puts, CAS puts
(`if_revision`), stale CAS puts (must answer 409 and write nothing) and deletes, one request at
a time, recording every verdict in order. At a seeded-random moment the server is killed with
SIGKILL and restarted on the same data directory. Then, for every writer:

- every write it saw acknowledged is there, with the revision the ack carried;
- its keys hold exactly the state after a prefix of its own sequence: either all acknowledged
  operations, or those plus the one that was in flight when the server died (which may or may
  not have reached the log). Nothing else: no lost ack, no reordering, no phantom write.

The cycle repeats on the same directory, so revisions must also continue correctly across
restarts (contract §5.1: +1 per put, back to 1 after a delete). Set E2E_SEED to replay a run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx


WRITERS = 6
KEYS_PER_WRITER = 4

Model = dict[str, tuple[int, dict]]  # key -> (revision, value) of the writer's live keys


@dataclass
class Op:
    seq: int
    kind: str  # put | cas | cas_stale | cas_absent | delete
    key: str
    value: dict | None = None
    if_revision: int | None = None


def apply_op(model: Model, op: Op) -> Model:
    """The writer's model after `op` succeeded (contract §3.3 / §5.1)."""
    after = dict(model)
    if op.kind in ("put", "cas"):
        previous = model.get(op.key)
        after[op.key] = ((previous[0] + 1) if previous else 1, op.value)
    elif op.kind == "delete":
        after.pop(op.key, None)
    # cas_stale / cas_absent change nothing: they must be refused with 409
    return after


@dataclass
class Writer:
    wid: int
    rng: random.Random
    model: Model = field(default_factory=dict)
    seq: int = 0
    acked: list[tuple[Op, object]] = field(default_factory=list)  # this cycle, in order
    inflight: Op | None = None
    refused_503: int = 0

    @property
    def prefix(self) -> str:
        return f"crash/w{self.wid}/"

    def next_op(self) -> Op:
        self.seq += 1
        key = f"{self.prefix}k{self.rng.randrange(KEYS_PER_WRITER)}"
        value = {"w": self.wid, "seq": self.seq, "pad": "x" * self.rng.randrange(0, 200)}
        current = self.model.get(key)
        roll = self.rng.random()
        if current is None:
            if roll < 0.7:
                return Op(self.seq, "put", key, value)
            if roll < 0.85:
                return Op(self.seq, "delete", key)  # absent: answers deleted=false, no event
            return Op(self.seq, "cas_absent", key, value, if_revision=self.rng.choice([0, 1, 2]))
        if roll < 0.35:
            return Op(self.seq, "put", key, value)
        if roll < 0.75:
            return Op(self.seq, "cas", key, value, if_revision=current[0])
        if roll < 0.85:
            return Op(self.seq, "cas_stale", key, value, if_revision=current[0] + 1 + self.rng.randrange(3))
        return Op(self.seq, "delete", key)

    async def run(self, client: httpx.AsyncClient, seed: int) -> None:
        """Issue operations one at a time until the server goes away."""
        while True:
            op = self.next_op()
            self.inflight = op
            try:
                if op.kind == "delete":
                    resp = await client.delete(f"/v1/state/{op.key}")
                else:
                    body: dict = {"value": op.value}
                    if op.if_revision is not None:
                        body["if_revision"] = op.if_revision
                    resp = await client.put(f"/v1/state/{op.key}", json=body)
            except httpx.TransportError:
                return  # the server died with `op` in flight: its outcome is unknown
            self.inflight = None
            where = f"seed={seed} writer={self.wid} op={op}"
            if resp.status_code == 503:
                # Refused before it was queued (contract: overload) -> nothing was written.
                self.refused_503 += 1
                continue
            expected_after = apply_op(self.model, op)
            if op.kind in ("cas_stale", "cas_absent"):
                assert resp.status_code == 409, f"{where}: {resp.status_code} {resp.text}"
                body = resp.json()  # the contract's shape; kissvdb may add the offending `field`
                assert (body["error"], body["message"]) == ("revision_mismatch", "if_revision mismatch"), where
            elif op.kind == "delete":
                assert resp.status_code == 200, f"{where}: {resp.status_code} {resp.text}"
                assert resp.json() == {"deleted": op.key in self.model}, f"{where}: {resp.text}"
            else:
                assert resp.status_code == 200, f"{where}: {resp.status_code} {resp.text}"
                ack = resp.json()
                assert ack["key"] == op.key, where
                assert ack["revision"] == expected_after[op.key][0], f"{where}: ack {ack}, model {self.model.get(op.key)}"
                assert ack["expires_at_ms"] is None, where
            self.model = expected_after
            self.acked.append((op, resp.json()))


async def read_writer_state(client: httpx.AsyncClient, prefix: str) -> Model:
    resp = await client.get("/v1/state", params={"prefix": prefix, "limit": 1000})
    assert resp.status_code == 200, resp.text
    items = resp.json()
    assert [item["key"] for item in items] == sorted(item["key"] for item in items), "list not in key order"
    state: Model = {}
    for item in items:
        assert item["key"].startswith(prefix)
        state[item["key"]] = (item["revision"], item["value"])
        # a single GET must agree with the listing
        one = await client.get(f"/v1/state/{item['key']}")
        assert one.status_code == 200, one.text
        assert (one.json()["revision"], one.json()["value"]) == state[item["key"]]
    return state


async def verify(client: httpx.AsyncClient, writers: list[Writer], seed: int, cycle: int) -> int:
    """Check every writer's keys; return how many in-flight writes turned out to have landed."""
    landed = [0]
    for writer in writers:
        actual = await read_writer_state(client, writer.prefix)
        without_inflight = writer.model
        with_inflight = apply_op(writer.model, writer.inflight) if writer.inflight else writer.model
        where = (
            f"seed={seed} cycle={cycle} writer={writer.wid} acked={len(writer.acked)} "
            f"last_acked={writer.acked[-1][0] if writer.acked else None} inflight={writer.inflight}"
        )
        # Every acknowledged write is there with its revision, unless a later op of the same
        # writer (acknowledged or in flight) replaced it.
        assert actual in (without_inflight, with_inflight), (
            f"{where}\n actual:           {actual}\n expected (acked): {without_inflight}\n"
            f" or with inflight: {with_inflight}"
        )
        if actual != without_inflight:
            landed[0] += 1  # the write in flight at the kill reached the log
        writer.model = actual  # the in-flight op's outcome is now known
        writer.inflight = None
        writer.acked = []
    return landed[0]

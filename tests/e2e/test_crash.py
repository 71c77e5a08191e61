"""Crash safety, end to end, for every data model at once: SIGKILL a real server under
concurrent writes of KV keys, documents and vectors, restart it on the same data directory,
and check each model. One harness; each model brings its writers and its check:

- KV (tests/e2e/crash_kv.py): writers own a few keys each and run seeded puts, CAS puts, stale
  CAS puts (409, nothing written) and deletes; their keys hold exactly the state after their
  acknowledged operations, or those plus the one in flight at the kill; revisions continue
  correctly across restarts.
- Documents (tests/e2e/crash_docs.py): the same over documents, read back with `find` and GET.
- Vectors (tests/e2e/crash_vectors.py): batch upserts (CBOR and JSON) and deletes while a task
  keeps compacting and small run files make the server compact on its own; every acknowledged
  vector is found bit-identical and as its own nearest neighbour, every acknowledged delete
  stays deleted.

All three write into the one WAL at once, so a kill lands between writes of different models
too. The cycle repeats, then a graceful stop must keep everything. Set E2E_SEED to replay.
"""

from __future__ import annotations

import os
import random

import httpx
import trio

from . import crash_docs, crash_kv, crash_vectors
from .server import ServerProcess

CYCLES = 3
KILL_AFTER_S = (0.3, 1.2)  # seeded-random moment of the SIGKILL after the writers start
CYCLE_TIMEOUT_S = 90.0
HTTP_TIMEOUT_S = 20.0


def client_for(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=HTTP_TIMEOUT_S,
                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


class Models:
    """Every model's writers, seeded from one generator."""

    def __init__(self, rng: random.Random):
        def sub() -> random.Random:
            return random.Random(rng.randrange(1 << 32))

        self.kv = [crash_kv.Writer(w, sub()) for w in range(crash_kv.WRITERS)]
        self.docs = [crash_docs.Writer(w, sub()) for w in range(crash_docs.WRITERS)]
        self.vectors = [crash_vectors.Writer(w, sub()) for w in range(crash_vectors.WRITERS)]

    def acked(self) -> tuple[int, int, int]:
        """Acknowledged writes so far: KV this cycle (its check resets them), the others in all."""
        return (sum(len(w.acked) for w in self.kv), sum(w.acked for w in self.docs),
                sum(w.acked for w in self.vectors))

    def tasks(self, seed: int):
        """(coroutine function, args) of every writer, and the compactor last."""
        out = [(w.run, (seed,)) for w in self.kv + self.docs]
        out += [(w.run, ()) for w in self.vectors]
        out.append((crash_vectors.compactor, ()))
        return out

    async def verify(self, server: ServerProcess, seed: int, cycle: int) -> None:
        async with client_for(server) as client:
            await crash_kv.verify(client, self.kv, seed, cycle)
            await crash_docs.verify(client, self.docs, seed, cycle)
            await crash_vectors.verify(client, self.vectors, f"seed={seed} cycle={cycle}")


async def run_until_killed(server: ServerProcess, models: Models, seed: int, kill_after_s: float) -> None:
    tasks = models.tasks(seed)
    clients = [client_for(server) for _ in tasks]
    try:
        async with trio.open_nursery() as nursery:
            for (fn, args), client in zip(tasks, clients):
                nursery.start_soon(fn, client, *args)
            await trio.sleep(kill_after_s)  # the crash moment, not a wait for a condition
            await trio.to_thread.run_sync(server.kill9)
            nursery.cancel_scope.cancel()
    except* (httpx.TransportError, httpx.RemoteProtocolError):
        pass  # the vector writers and the compactor meet the kill as a transport error
    finally:
        for client in clients:
            await client.aclose()


async def test_acknowledged_writes_of_every_model_survive_sigkill(tmp_path):
    seed = int(os.environ.get("E2E_SEED", random.randrange(1 << 32)))
    print(f"E2E_SEED={seed}")
    rng = random.Random(seed)
    models = Models(rng)
    server = ServerProcess(tmp_path / "data", env=crash_vectors.ENV)
    with server:  # started here; killed (and its log dumped on failure) on the way out
        async with client_for(server) as client:
            await crash_vectors.create_collections(client)
        for cycle in range(CYCLES):
            kill_after_s = rng.uniform(*KILL_AFTER_S)
            with trio.fail_after(CYCLE_TIMEOUT_S):
                before = models.acked()
                await run_until_killed(server, models, seed, kill_after_s)
                acked = tuple(now - (was if i else 0) for i, (now, was) in enumerate(zip(models.acked(), before)))
                print(f"cycle {cycle}: killed after {kill_after_s:.2f}s; acknowledged (kv, docs, vectors) {acked}")
                assert sum(acked) > 0, f"seed={seed} cycle={cycle}: nothing acknowledged before the kill"
                await trio.to_thread.run_sync(server.start)
                await models.verify(server, seed, cycle)
        # A graceful stop after all that keeps everything too, and exits cleanly.
        with trio.fail_after(CYCLE_TIMEOUT_S):
            code = await trio.to_thread.run_sync(server.stop)
            assert code == 0, f"graceful stop exited with {code}"
            await trio.to_thread.run_sync(server.start)
            for w in models.kv + models.docs:
                w.inflight = None
            await models.verify(server, seed, CYCLES)

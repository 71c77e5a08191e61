"""The API-key actor: owns keys.sqlite (kissvdb/keystore.py) on its own thread, and the
in-memory hash -> (id, name, role) map that every request's auth check reads.

A create or delete commits durably first (synchronous=FULL), then updates the map, then answers:
so a revoked key is refused from the next request on, and a key that was answered is already
accepted. Changes are never WAL events, so the change stream never carries them.
"""

from __future__ import annotations

import hashlib
import logging

import trio

from kissvdb.errors import InvalidArgument, NotFound
from kissvdb.keystore import ROLES, ApiKey, KeyStore

from kissvdb.actors.threads import DedicatedThread

log = logging.getLogger("kissvdb.auth")


class KeyService:
    def __init__(self, path: str, *, clock):
        self.path = path
        self.clock = clock
        self.thread: DedicatedThread | None = None
        self.store: KeyStore | None = None
        self._by_hash: dict[str, tuple[str, str, str]] = {}
        self._lock = trio.Lock()

    async def open(self) -> None:
        self.thread = DedicatedThread("kissvdb-keys")
        self.store = await self.thread.run(KeyStore, self.path)
        bootstrap = await self.thread.run(self.store.bootstrap, self.clock())
        if bootstrap is not None:
            # Shown once, as the original did; only its hash is kept.
            log.warning("bootstrap admin API key (shown once, store it now): %s", bootstrap)
        self._by_hash = await self.thread.run(self.store.hashes)

    def lookup(self, token: str) -> tuple[str, str, str] | None:
        """(id, name, role) of a stored key, or None. Called on every request: a dict lookup."""
        return self._by_hash.get(hashlib.sha256(token.encode("utf-8")).hexdigest())

    async def create(self, name: str, role: str, permissions: bytes) -> tuple[ApiKey, str]:
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}", field="role")
        async with self._lock:
            with trio.CancelScope(shield=True):  # once committed, the map must learn it
                item, key = await self.thread.run(self.store.create, name, role, permissions, self.clock())
                self._by_hash = await self.thread.run(self.store.hashes)
        return item, key

    async def delete(self, key_id: str) -> None:
        async with self._lock:
            with trio.CancelScope(shield=True):
                deleted = await self.thread.run(self.store.delete, key_id)
                self._by_hash = await self.thread.run(self.store.hashes)
        if not deleted:
            raise NotFound("key id not found")

    async def list(self) -> list[ApiKey]:
        return await self.thread.run(self.store.list)

    async def aclose(self) -> None:
        if self.thread is None:
            return
        if self.store is not None:
            await self.thread.run(self.store.close)
            self.store = None
        await self.thread.aclose()

"""The API-key actor: owns keys.sqlite (kissvdb/keys/store.py) on its own thread, and the
in-memory hash -> (id, name, role) map that every request's auth check reads.

A create or delete commits durably first (synchronous=FULL), then updates the map, then answers:
so a revoked key is refused from the next request on, and a key that was answered is already
accepted. Changes are never WAL events, so the change stream never carries them.
"""

from __future__ import annotations

import hashlib
import logging
import os

import trio

from kissvdb.errors import InvalidArgument, NotFound, PayloadTooLarge
from kissvdb.keys.store import KEY_NAME_BYTES_MAX, KEY_PERMISSIONS_BYTES_MAX, ROLES, ApiKey, KeyStore
from kissvdb.layout import BOOTSTRAP_KEY_FILE

from kissvdb.actors.threads import DedicatedThread

log = logging.getLogger("kissvdb.auth")


class KeyService:
    """Owns the key store; `on_revoke(key_id)` is called once a deleted key is refused (the
    engine ends the change streams opened with it, before the delete is answered)."""

    def __init__(self, path: str, *, clock, on_revoke=None, durable: bool = True, keys_max: int = 1000):
        self.path = path
        self.clock = clock
        self.keys_max = keys_max  # MAX_API_KEYS: stored keys, the bootstrap key included
        self.on_revoke = on_revoke
        self.durable = durable
        self.thread: DedicatedThread | None = None
        self.store: KeyStore | None = None
        self._by_hash: dict[str, tuple[str, str, str]] = {}
        self._lock = trio.Lock()

    async def open(self) -> None:
        self.thread = DedicatedThread("kissvdb-keys")
        self.store = await self.thread.run(KeyStore, self.path)
        key_file = os.path.join(os.path.dirname(os.path.abspath(self.path)), BOOTSTRAP_KEY_FILE)
        minted = await self.thread.run(
            lambda: self.store.bootstrap(self.clock(), key_file, fsync=self.durable))
        if minted:
            # The original printed the key; a log is no place for a secret. Only the path.
            log.warning("bootstrap admin API key written to %s (readable by this user only); "
                        "read it, store it elsewhere, then delete the file", key_file)
        self._by_hash = await self.thread.run(self.store.hashes)

    def lookup(self, token: str) -> tuple[str, str, str] | None:
        """(id, name, role) of a stored key, or None. Called on every request: a dict lookup."""
        return self._by_hash.get(hashlib.sha256(token.encode("utf-8")).hexdigest())

    async def create(self, name: str, role: str, permissions: bytes) -> tuple[ApiKey, str]:
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}", field="role")
        if len(name.encode("utf-8", "surrogatepass")) > KEY_NAME_BYTES_MAX:
            raise InvalidArgument(f"name too long (at most {KEY_NAME_BYTES_MAX} bytes)", field="name")
        if len(permissions) > KEY_PERMISSIONS_BYTES_MAX:
            raise PayloadTooLarge(f"permissions too large (at most {KEY_PERMISSIONS_BYTES_MAX} bytes of JSON)",
                                  field="permissions")
        async with self._lock:
            if len(self._by_hash) >= self.keys_max:
                raise InvalidArgument(f"too many API keys (MAX_API_KEYS is {self.keys_max}); delete one first")
            with trio.CancelScope(shield=True):  # once committed, the map must learn it
                item, key = await self.thread.run(self.store.create, name, role, permissions, self.clock())
                self._by_hash = await self.thread.run(self.store.hashes)
        return item, key

    async def delete(self, key_id: str) -> None:
        async with self._lock:
            with trio.CancelScope(shield=True):
                deleted = await self.thread.run(self.store.delete, key_id)
                self._by_hash = await self.thread.run(self.store.hashes)
                if deleted and self.on_revoke is not None:
                    ended = self.on_revoke(key_id)
                    if ended:
                        log.info("key %s revoked: ended %d change stream(s) opened with it", key_id, ended)
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

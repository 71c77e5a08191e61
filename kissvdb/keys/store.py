"""API keys: stored hashed in DATA_DIR/keys.sqlite, with roles.

Where and why here: keys are our state, never the user's SQL database (the original kept them
in a table `/v1/sql/*` could read and write). They are also not WAL events: the change stream
must never carry them, and replaying them buys nothing. Instead every change is its own
SQLite transaction with synchronous=FULL, durable before the request is answered.

Stored per key: id (uuid4), SHA-256 hex of the key, name, role, permissions (JSON text, kept
as given, not interpreted), created_at_ms. The plain key (`rk_live_` + 43 base64url chars of
32 random bytes, as the original) is returned once at creation and never stored.

Roles (enforced by the HTTP layer, api/auth.py):
- `admin`: everything, including key management;
- `write` (and `user`, the original's default, which means write): every data route;
- `read`: GET routes, find, search, `/v1/sql/query` and the change stream.

Bootstrap: the first time a data directory is opened, an admin key named `Admin` is created
and written to a file readable by the owner only (DATA_DIR/bootstrap-admin.key, mode 0600),
never to the log; a `bootstrapped` flag keeps it from being made again (even after every key is
deleted: the static API_KEY remains an admin key). The file is written before the key is
committed, so a crash in between leaves a file whose key is not valid yet, and the next start
mints a new one over it.

Never used from two threads at once: an actor owns it on a dedicated thread.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from dataclasses import dataclass

import apsw

from kissvdb.fsutil import atomic_write

ROLES = ("admin", "write", "user", "read")
# A key's name and permissions are listed whole by GET /v1/auth/keys: with MAX_API_KEYS keys at
# these sizes the list is under 5 MB.
KEY_NAME_BYTES_MAX = 256
KEY_PERMISSIONS_BYTES_MAX = 4096
ROLE_LEVEL = {"read": 1, "write": 2, "user": 2, "admin": 3}
KEY_PREFIX = "rk_live_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys(
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    role: str
    permissions: bytes  # JSON text
    created_at_ms: int


def key_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_key(random_bytes=os.urandom) -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(random_bytes(32)).rstrip(b"=").decode("ascii")


class KeyStore:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.conn = apsw.Connection(path)
        self.conn.setbusytimeout(5000)
        self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
        self.conn.execute("PRAGMA synchronous=FULL")  # every key change is durable at commit
        with self.conn:
            self.conn.execute(SCHEMA)

    def create(self, name: str, role: str, permissions: bytes, now_ms: int,
               random_bytes=os.urandom) -> tuple[ApiKey, str]:
        key = new_key(random_bytes)
        item = ApiKey(str(uuid.uuid4()), name, role, permissions, now_ms)
        with self.conn:
            self.conn.execute("INSERT INTO api_keys VALUES (?,?,?,?,?,?)",
                              (item.id, key_hash(key), name, role, permissions.decode("utf-8"), now_ms))
        return item, key

    def delete(self, key_id: str) -> bool:
        with self.conn:
            self.conn.execute("DELETE FROM api_keys WHERE id=?", (key_id,))
            return self.conn.changes() > 0

    def list(self) -> list[ApiKey]:
        return [ApiKey(i, n, r, p.encode("utf-8"), c) for i, n, r, p, c in self.conn.execute(
            "SELECT id, name, role, permissions, created_at_ms FROM api_keys "
            "ORDER BY created_at_ms DESC, id")]

    def hashes(self) -> dict[str, tuple[str, str, str]]:
        """key_hash -> (id, name, role), for the in-memory checker."""
        return {h: (i, n, r) for h, i, n, r in self.conn.execute(
            "SELECT key_hash, id, name, role FROM api_keys")}

    def bootstrap(self, now_ms: int, key_file: str, random_bytes=os.urandom, *, fsync: bool = True) -> bool:
        """The first time only: create the `Admin` key, write it to `key_file` (0600) and
        return True. The key itself is never returned, so it cannot end up in a log."""
        row = self.conn.execute("SELECT value FROM meta WHERE name='bootstrapped'").fetchone()
        if row is not None:
            return False
        key = new_key(random_bytes)
        # mkstemp + rename: the file is created 0600 and is complete or absent after a crash.
        atomic_write(key_file, (key + "\n").encode("ascii"), fsync=fsync)
        with self.conn:
            self.conn.execute("INSERT INTO api_keys VALUES (?,?,?,?,?,?)",
                              (str(uuid.uuid4()), key_hash(key), "Admin", "admin", '{"allow":"*"}', now_ms))
            self.conn.execute("INSERT INTO meta VALUES ('bootstrapped', ?)", (str(now_ms),))
        return True

    def close(self) -> None:
        self.conn.close()

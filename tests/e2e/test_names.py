"""Nothing a user names maps onto a file the engine owns (issue 9, the "Names" class test).

Against a real `kissvdb serve`: KV keys, document ids, document collections, vector collections
and vector ids are named after every path the engine writes (generated from
`kissvdb.layout.OWNED`, not a hand list) plus `.`, `..`, NUL, `%2F`, `/`, escapes out of the
data directory, 255-byte, unicode and case-folded names. Every request is accepted or refused
with a 4xx naming the field. Then the server is stopped gracefully (its checkpoint is what a
collection named `registry.json` used to break) and must exit 0; every path in DATA_DIR must be
one `layout.OWNED` describes, with exactly one directory per accepted collection; nothing
outside DATA_DIR (decoy files named like engine files sit beside it) may have changed; and after
a restart, and again after a SIGKILL and restart, everything accepted reads back.

Requests go through http.client, which sends the path as written: `%2E%2E` and `..` reach the
server as such (httpx would normalize them away). A name holding `/` may also meet the
router's percent-decoding and land on no route (404/405): that writes nothing either.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path
from urllib.parse import quote

from kissvdb import layout

from .server import ServerProcess

ENV = {"MAX_COLLECTION_LEN": "255", "MAX_ID_LEN": "255"}
VECTOR = [0.25, -0.5, 1.0]
DECOYS = ("FORMAT", "state.sqlite", "registry.json", "outside", "collections/docs/manifest.json", "etc/passwd")


def hostile_names() -> list[str]:
    names = list(layout.owned_examples())
    names += [n.upper() for n in names if n.upper() not in names]
    names += [layout.collection_dir_name("Docs"), "=" + "0" * 64]  # what directory names look like
    names += ["../FORMAT", "../outside", "../../etc/passwd", "/abs", "a/b", "%2F", "%2E%2E", ".", "..",
              "\x00", "a\x00b", " ", "~", "x" * 255, "X" * 255, "é" * 127 + "a", "x" * 256,
              "ключ", "日本語", "🙂", "e\u0301", "Docs", "docs", "DOCS"]
    out: list[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return out


class Client:
    """One keep-alive http.client connection that sends paths exactly as given."""

    def __init__(self, server: ServerProcess):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        self.headers = {**server.headers, "Content-Type": "application/json"}

    def call(self, method: str, path: str, body=None) -> tuple[int, dict | list | None]:
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


def accepted(status: int, body, field: str, name: str, what: str) -> bool:
    """True when the write was accepted; otherwise assert it was refused the way it must be."""
    if status == 200:
        return True
    assert 400 <= status < 500, f"{what} {name!r}: {status} {body}"
    if "/" in name and status in (404, 405) and isinstance(body, dict) and "field" not in body:
        return False  # the router decoded %2F into a path separator: no route, nothing written
    assert isinstance(body, dict) and body.get("field") == field, f"{what} {name!r}: {status} {body}"
    return False


def write_everything(c: Client, names: list[str]) -> dict[str, list]:
    done: dict[str, list] = {"kv": [], "doc_id": [], "doc_coll": [], "vec_coll": [], "vec_id": []}
    status, body = c.call("POST", "/v1/vector/ids", {"dim": 3, "metric": "cosine"})
    assert status == 200, body
    for name in names:
        q = quote(name, safe="")
        if accepted(*c.call("PUT", f"/v1/state/{q}", {"value": {"name": name}}), "key", name, "key"):
            done["kv"].append(name)
        if accepted(*c.call("PUT", f"/v1/doc/names/{q}", {"name": name}), "id", name, "doc id"):
            done["doc_id"].append(name)
        if accepted(*c.call("PUT", f"/v1/doc/{q}/d", {"name": name}), "collection", name, "doc collection"):
            done["doc_coll"].append(name)
        if accepted(*c.call("POST", f"/v1/vector/{q}", {"dim": 3, "metric": "cosine"}), "collection", name,
                    "vector collection"):
            status, body = c.call("POST", f"/v1/vector/{q}/upsert", {"id": "v", "vector": VECTOR, "meta": {"n": name}})
            assert status == 200, (name, body)
            done["vec_coll"].append(name)
        if accepted(*c.call("POST", "/v1/vector/ids/upsert", {"id": name, "vector": VECTOR}), "id", name, "vector id"):
            done["vec_id"].append(name)
    return done


def read_everything(c: Client, done: dict[str, list]) -> None:
    for name in done["kv"]:
        status, body = c.call("GET", f"/v1/state/{quote(name, safe='')}")
        assert status == 200 and body["value"] == {"name": name}, (name, status, body)
    for name in done["doc_id"]:
        status, body = c.call("GET", f"/v1/doc/names/{quote(name, safe='')}")
        assert status == 200 and body["doc"] == {"name": name}, (name, status, body)
    for name in done["doc_coll"]:
        status, body = c.call("GET", f"/v1/doc/{quote(name, safe='')}/d")
        assert status == 200 and body["doc"] == {"name": name}, (name, status, body)
    for name in done["vec_coll"]:
        status, body = c.call("GET", f"/v1/vector/{quote(name, safe='')}/get?id=v")
        assert status == 200 and body["meta"] == {"n": name}, (name, status, body)
    for name in done["vec_id"]:
        status, body = c.call("GET", f"/v1/vector/ids/get?id={quote(name, safe='')}")
        assert status == 200 and body["id"] == name, (name, status, body)
    status, body = c.call("GET", "/v1/vector")
    assert status == 200
    listed = {e["collection"]: e["status"] for e in body["collections"]}
    assert listed == {n: "ready" for n in [*done["vec_coll"], "ids"]}


def tree(root: Path, skip: Path) -> dict[str, tuple]:
    """Every path under `root` except `skip`: kind, mode and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in dirnames + filenames:
            path = here / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            out[str(path.relative_to(root))] = (st.st_mode, st.st_size if digest else None, digest)
    return out


def unowned_paths(data_dir: Path, collections: list[str]) -> list[str]:
    expected_dirs = {layout.collection_dir_name(n) for n in collections}
    bad = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        for name in dirnames + filenames:
            rel = str((Path(dirpath) / name).relative_to(data_dir))
            if layout.owner_of(rel, expected_dirs) is None:
                bad.append(rel)
    found = set(os.listdir(data_dir / layout.VECTORS_DIR / layout.COLLECTIONS_DIR))
    if found != expected_dirs:
        bad.append(f"collection directories {sorted(found ^ expected_dirs)}")
    return bad


def test_hostile_names_never_reach_engine_files(tmp_path):
    root = tmp_path / "root"
    data_dir = root / "data"
    for decoy in DECOYS:
        (root / decoy).parent.mkdir(parents=True, exist_ok=True)
        (root / decoy).write_text(f"decoy {decoy}\n")
    before = tree(root, data_dir)
    names = hostile_names()
    server = ServerProcess(data_dir, env=ENV, log_path=tmp_path / "server.log")
    with server:
        c = Client(server)
        done = write_everything(c, names)
        c.close()
        assert server.stop() == 0
        assert "checkpoint failed" not in server.log(), "a checkpoint failed"
        assert json.loads((data_dir / "vectors" / layout.REGISTRY).read_text())["applied_offset"] > 0
        accepted_collections = [*done["vec_coll"], "ids"]
        assert unowned_paths(data_dir, accepted_collections) == []
        assert tree(root, data_dir) == before
        # Names that must have been accepted: the engine's own file names are fine as names.
        for name in ("registry.json", "collections", "manifest.json", "FORMAT", "state.sqlite", "Docs", "docs"):
            assert name in done["vec_coll"], name
        assert "x" * 255 in done["vec_coll"] and "X" * 255 in done["vec_coll"]  # hashed directory names
        for name in (".", "..", "\x00", "../FORMAT", "x" * 255, "é" * 127 + "a"):
            assert name in done["kv"] and name in done["doc_id"], name
        for restart in (server.start, lambda: (server.kill9(), server.start())):
            restart()
            c = Client(server)
            read_everything(c, done)
            c.close()
        server.stop()
    assert tree(root, data_dir) == before

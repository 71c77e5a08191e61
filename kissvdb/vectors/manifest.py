"""manifest.json: what a collection's directory holds, as of its last checkpoint.

The manifest is the commit point of every checkpoint and compaction: files it names are
complete and fsynced, everything else in the directory is an orphan of an interrupted
checkpoint or compaction and is deleted at open. It is replaced atomically (temp, fsync,
rename, fsync dir) and only after every file it names is durable.
"""

from __future__ import annotations

import json
import os

from kissvdb.errors import Corruption
from kissvdb.fsutil import atomic_write

MANIFEST = "manifest.json"
VERSION = 1


def load(directory: str) -> dict | None:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise Corruption(path, 0, f"manifest is not JSON: {exc}") from None
    if doc.get("version") != VERSION:
        raise Corruption(path, 0, f"unknown manifest version {doc.get('version')!r}")
    return doc


def save(directory: str, doc: dict, *, fsync: bool = True) -> None:
    doc = dict(doc, version=VERSION)
    atomic_write(os.path.join(directory, MANIFEST),
                 json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n", fsync=fsync)

"""The DiskANN directory: which build serves, how a new one replaces it, what a crash leaves.

Layout of `<collection>/diskann/`:
    CURRENT                 the name of the serving build (one line), replaced atomically
    params.json             params stored by `tune` (absent: the caller's defaults)
    build-<ms>-<n>/         one finished build:
        manifest.json       format, metric, dim, rows, built_at_ms, params, files, id_epoch
        graph.i8.usearch    the usearch graph (int8 rows + links), searched memory-mapped
        rows.f32            the unit float32 rows, row i = graph key i (exact re-rank)
        ids-<epoch>.i64     graph position -> the caller's row id (int64), rewritten by remap
    .tmp-build-<ms>-<pid>/  a build under way

Guarantee: a build becomes visible only by the atomic replacement of CURRENT, after every file of
the new build and the build directory itself are fsynced under their final name. A crash at any
moment leaves CURRENT naming the previous build (or none) with all its files intact. `clean`
(called by open) deletes everything else: temp builds, builds CURRENT does not name, and id files
the manifest does not name; so no orphan outlives the next open.

Never: deletes the build CURRENT names, or the files its manifest names.
"""

from __future__ import annotations

import json
import os
import shutil

from kissvdb.fsutil import atomic_write, fsync_dir

FORMAT = 1
CURRENT = "CURRENT"
PARAMS = "params.json"
MANIFEST = "manifest.json"
GRAPH = "graph.i8.usearch"
ROWS = "rows.f32"
TMP_PREFIX = ".tmp-build-"
BUILD_PREFIX = "build-"


class CorruptIndex(Exception):
    """A file CURRENT or a manifest names is missing or does not match the manifest."""


def ids_file(epoch: int) -> str:
    return f"ids-{epoch}.i64"


def read_current(root: str) -> str | None:
    try:
        with open(os.path.join(root, CURRENT)) as f:
            name = f.read().strip()
    except FileNotFoundError:
        return None
    if not name.startswith(BUILD_PREFIX) or "/" in name:
        raise CorruptIndex(f"{root}/{CURRENT} names {name!r}")
    return name


def write_current(root: str, name: str) -> None:
    atomic_write(os.path.join(root, CURRENT), (name + "\n").encode())


def read_manifest(build: str) -> dict:
    try:
        with open(os.path.join(build, MANIFEST), "rb") as f:
            m = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise CorruptIndex(f"{build}/{MANIFEST}: {e}") from e
    if m.get("format") != FORMAT:
        raise CorruptIndex(f"{build}/{MANIFEST}: format {m.get('format')!r}, expected {FORMAT}")
    return m


def write_manifest(build: str, manifest: dict) -> None:
    atomic_write(os.path.join(build, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())


def read_params(root: str) -> dict | None:
    try:
        with open(os.path.join(root, PARAMS), "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def write_params(root: str, params: dict) -> None:
    os.makedirs(root, exist_ok=True)
    atomic_write(os.path.join(root, PARAMS), json.dumps(params, sort_keys=True).encode())


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean(root: str) -> list[str]:
    """Delete what no live build needs (see the module docstring); returns the names removed."""
    if not os.path.isdir(root):
        return []
    keep = read_current(root)
    removed = []
    for name in sorted(os.listdir(root)):
        if name in (CURRENT, PARAMS, keep):
            continue
        if name.startswith((TMP_PREFIX, BUILD_PREFIX, f".{CURRENT}.", f".{PARAMS}.")):
            path = os.path.join(root, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
            removed.append(name)
    if keep:
        build = os.path.join(root, keep)
        wanted = set(read_manifest(build)["files"].values()) | {MANIFEST}
        for name in sorted(os.listdir(build)):
            if name not in wanted:
                os.unlink(os.path.join(build, name))
                removed.append(f"{keep}/{name}")
    if removed:
        fsync_dir(root)
    return removed


def publish(root: str, tmp: str, name: str) -> str:
    """Make the finished temp build `tmp` the serving one: fsync it, rename it to `name`, fsync
    the root, then replace CURRENT. Returns the build's final path."""
    for f in os.listdir(tmp):
        fsync_file(os.path.join(tmp, f))
    fsync_dir(tmp)
    final = os.path.join(root, name)
    os.rename(tmp, final)
    fsync_dir(root)
    write_current(root, name)
    return final

"""The dashboard's static files: `GET /static/{file}`, public, from a table fixed at start.

| route              | answer                                                          |
|--------------------|-----------------------------------------------------------------|
| GET /static/<file> | the packaged file, with its content type and ETag; 304 when the |
|                    | request's If-None-Match names that ETag; 404 for any other name |

The table (`AssetTable`) is built once from the files shipped in `kissvdb.api`'s `static/`
package data, by their relative path (`app.js`, `panels/keys.js`, `vendor/swagger-ui/LICENSE`).
A request is answered by an exact lookup of its path in that table, never by joining it onto a
directory: `..`, `%2F`, absolute paths and symlinks cannot reach any other file, because only
names in the table exist. HTML pages are not in it: they are served at `/` and `/docs` with the
page's Content-Security-Policy (api/routes/system.py). Files whose type is not in CONTENT_TYPES
(source maps, editor leftovers) are not served either.

Caching: `Cache-Control: no-cache` (a browser revalidates each time, so an upgraded server's
files are picked up at once) with a strong ETag (a hash of the bytes), so revalidation costs a
304 and no body.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from kissvdb.errors import NotFound

from ..http.messages import Response
from ..routing import Route

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".yaml": "text/yaml; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    "": "text/plain; charset=utf-8",  # LICENSE, NOTICE
}
ASSET_FILES_MAX = 200  # a runaway package-data glob fails the start, not the memory
CACHE_CONTROL = ("Cache-Control", "no-cache")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def _walk(directory: Traversable, prefix: str = ""):
    for entry in directory.iterdir():
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.is_file():
            yield f"{prefix}{entry.name}", entry


class AssetTable:
    """Relative path -> Asset, read once. Lookups never touch the file system."""

    def __init__(self, files: dict[str, Asset]):
        self.files = files

    @classmethod
    def packaged(cls) -> "AssetTable":
        return _packaged()

    @classmethod
    def from_directory(cls, directory: Traversable) -> "AssetTable":
        files: dict[str, Asset] = {}
        for name, entry in sorted(_walk(directory)):
            content_type = CONTENT_TYPES.get(_suffix(name.rsplit("/", 1)[-1]))
            if content_type is None or name.endswith(".html"):
                continue
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[name] = Asset(body, content_type, etag)
            if len(files) > ASSET_FILES_MAX:
                raise RuntimeError(f"more than {ASSET_FILES_MAX} static files under {directory}")
        return cls(files)

    def get(self, name: str) -> Asset:
        asset = self.files.get(name)
        if asset is None:
            raise NotFound("static file not found")
        return asset


@functools.cache
def _packaged() -> AssetTable:
    # Package data cannot change under a running process; reading and hashing it (2 MB, the
    # API viewer) once per process rather than once per app keeps test apps cheap.
    return AssetTable.from_directory(resources.files("kissvdb.api").joinpath("static"))


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    # A weak validator (W/"...") compares equal to its strong form for If-None-Match (RFC 9110).
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def routes(app) -> list[Route]:
    table = AssetTable.packaged()

    async def static_file(request, file: str):
        asset = table.get(file)
        headers = [("ETag", asset.etag), CACHE_CONTROL]
        if _not_modified(request.headers.get("If-None-Match"), asset.etag):
            return Response(b"", 304, headers)
        return Response(asset.body, 200, [("Content-Type", asset.content_type), *headers])

    return [Route("GET", "/static/{file:path}", static_file, "public", "static_file")]

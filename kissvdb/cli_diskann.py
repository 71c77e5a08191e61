"""`kissvdb diskann build|tune|status --collection NAME` (contract §8.2): the DiskANN control of
one DISKANN collection, from the command line.

Two ways, chosen by who holds DATA_DIR's lock:
- a server runs (it holds the lock, or `--url` is given): the command talks to it over HTTP
  (`/v1/vector/<c>/diskann/*`), at `--url` or at the address `serve` would use (BIND_ADDR /
  PORT_RUST_KISS_VDB, https when TLS_CERTFILE is set), with `--api-key` or API_KEY
  (RUSTKISS_API_KEY wins, as for serve). `build` starts the build, then polls the status and
  shows a progress bar until it is done (`--no-wait`: answer at once);
- no server: it takes the lock and works on the collection's directory itself, like `vacuum`.
  An offline build covers the checkpointed rows; rows still only in the WAL are searched from the
  index's mutable segment after the next start, as any row written after a build.

Prints the answer as JSON (the original printed a Rust debug struct). Exit codes: 0 done,
1 the server or the collection refused (message on stderr), 2 bad usage or no way to reach it.

Never imports the engine, the actors or the HTTP server (layers): the HTTP client is urllib.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from kissvdb.config import Settings
from kissvdb.errors import ConfigError, DataDirLocked

ACTIONS = ("build", "tune", "status")
POLL_S = 0.2
HTTP_TIMEOUT_S = 60.0
EXIT_OK, EXIT_PROBLEMS, EXIT_REFUSED = 0, 1, 2


def add_parser(sub, progress_cls, error) -> None:
    """The `diskann` subcommand; `progress_cls` and `error` are kissvdb.cli's Progress and
    message printer (passed down: nothing below the command line imports it)."""
    p = sub.add_parser(
        "diskann",
        help="build, tune or show a DISKANN collection's index (over HTTP, or offline)",
        description=__doc__.split("\n\n", 1)[1].split("\n\nNever")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--collection", required=True, metavar="NAME")
    p.add_argument("--max-degree", dest="max_degree", type=int, metavar="N", help="graph degree (4..1024)")
    p.add_argument("--build-threads", dest="build_threads", type=int, metavar="N", help="build threads (>= 1)")
    p.add_argument("--search-list", dest="search_list_size", type=int, metavar="N",
                   help="search beam width (8..65535)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="build: answer once the build has started")
    p.add_argument("--url", default=None, help="a running server's base URL (default: the settings' address)")
    p.add_argument("--api-key", dest="api_key", default=None, help="API key (default API_KEY)")
    p.add_argument("--data", "--data-dir", dest="data_dir", default=None,
                   help="data directory (default DATA_DIR or ./data)")
    p.set_defaults(func=lambda args: run(args, progress_cls, error))


def params_of(args) -> dict:
    out = {}
    for name in ("max_degree", "build_threads", "search_list_size"):
        value = getattr(args, name)
        if value is not None:
            if value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
            out[name] = value
    return out


def run(args, Progress, _error) -> int:
    try:
        settings = Settings.from_env(data_dir=args.data_dir)
        given = params_of(args)
    except (ConfigError, ValueError) as exc:
        _error(str(exc))
        return EXIT_REFUSED
    if args.url is None:
        from kissvdb.datadir import DataDir

        try:
            lock = DataDir.open(settings.data_dir, create=False)
        except DataDirLocked:
            pass  # a server holds it: ask the server
        except ConfigError as exc:
            _error(str(exc))
            return EXIT_REFUSED
        else:
            with lock:
                return offline(args, settings, given, Progress, _error)
    return over_http(args, settings, given, Progress, _error)


# ---- over HTTP ----------------------------------------------------------------------------------


def server_url(settings: Settings) -> str:
    host = settings.bind_addr
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_certfile else "http"
    return f"{scheme}://{host}:{settings.port}"


class HttpFailed(Exception):
    pass


def _call(base: str, key: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    ctx = None
    if base.startswith("https"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False  # a local server's own certificate: trust as serve's user would
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S, context=ctx) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        raise HttpFailed(f"{method} {path}: {exc.code} {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise HttpFailed(f"no server at {base} ({getattr(exc, 'reason', exc)}); start one, or stop it to "
                         "work offline") from None


def over_http(args, settings: Settings, given: dict, Progress, error) -> int:
    base = args.url or server_url(settings)
    key = args.api_key or settings.api_key
    path = f"/v1/vector/{urllib.parse.quote(args.collection, safe='')}/diskann"
    try:
        if args.action == "status":
            out = _call(base, key, "GET", f"{path}/status")
        elif args.action == "tune":
            out = _call(base, key, "POST", f"{path}/tune", given)
        else:
            out = _call(base, key, "POST", f"{path}/build", given)
            if args.wait and out["status"].get("building"):
                out = _watch(base, key, path, args.collection, Progress)
    except HttpFailed as exc:
        error(str(exc))
        return EXIT_PROBLEMS
    print(json.dumps(out, indent=1, sort_keys=True), flush=True)
    return EXIT_OK


def _watch(base: str, key: str, path: str, name: str, Progress) -> dict:
    """Poll the status until the build is done, showing its progress."""
    with Progress(f"diskann build {name}") as progress:
        while True:
            st = _call(base, key, "GET", f"{path}/status")
            if not st.get("building"):
                progress(1, 1)
                return {"ok": True, "params": st["params"], "status": st}
            p = st.get("progress") or {}
            progress(int(p.get("rows_done", 0)), int(p.get("rows_total", 0)) or 1)
            time.sleep(POLL_S)  # a CLI's poll interval, not a test's wait


# ---- offline ------------------------------------------------------------------------------------


def offline(args, settings: Settings, given: dict, Progress, error) -> int:
    from kissvdb.layout import COLLECTIONS_DIR, VECTORS_DIR, collection_dir_name, is_valid_collection_name
    from kissvdb.vectors.collection import Collection, VectorParams

    if not is_valid_collection_name(args.collection):
        error(f"not a collection name: {args.collection!r}")
        return EXIT_PROBLEMS
    path = os.path.join(settings.data_dir, VECTORS_DIR, COLLECTIONS_DIR, collection_dir_name(args.collection))
    if not os.path.exists(os.path.join(path, "manifest.json")):
        error(f"no vector collection {args.collection!r} in {settings.data_dir}")
        return EXIT_PROBLEMS
    coll = Collection.open(path, VectorParams.from_settings(settings))
    try:
        if coll.disk is None:
            error(f"collection {args.collection!r} has index {coll.kind}: DiskANN needs one created with "
                  "\"index\": \"DISKANN\"")
            return EXIT_PROBLEMS
        disk = coll.disk
        disk.reconcile()
        if args.action == "tune":
            disk.index.tune(given)
        elif args.action == "build":
            job = disk.begin_build(given)
            with Progress(f"diskann build {args.collection}") as progress:
                job.run(progress)
        st = disk.status()
        out = st if args.action == "status" else {"ok": True, "params": st["params"], "status": st}
    finally:
        coll.close()
    print(json.dumps(out, indent=1, sort_keys=True), flush=True)
    return EXIT_OK

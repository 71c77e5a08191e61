"""The `kissvdb` command: `serve` (the default), and the offline `check` and `repair`.

What this module owns: turning argv + environment into `Settings`, and the exit codes.
It never starts an event loop itself; `serve` hands the settings to `kissvdb.api.server.run`,
imported lazily inside `_serve` (the one place the core refers upward, so the core stays free of
trio/quart/hypercorn). `check` and `repair` take DATA_DIR's lock, so they refuse to run beside a
live server, and are synchronous.

Compatibility with the original (`rust-kiss-vdb`): no argument, `serve`, or a first argument
that is not a subcommand starts the server, and its global flags are accepted (`--port`,
`--data/--data-dir/--DATA_DIR`, `--bind/--host`, `--unsafe-bind`, `--sqlite/--sqlite-enabled`,
`--no-sqlite`). Unlike the original, a stray word (`kissvdb chekc data`) or a value that does
not parse is refused with exit code 2 instead of being ignored.

Exit codes: 0 success (or a clean stop), 1 problems found / operation failed or declined,
2 refused (bad flag or setting, DATA_DIR locked, unsafe bind, corrupt WAL at start).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Sequence

from kissvdb.config import SETTINGS, Setting, Settings
from kissvdb.errors import ConfigError, Corruption, DataDirLocked

COMMANDS = ("serve", "check", "repair", "vacuum", "diskann")

# Flags of the original that take a value: when looking for a stray `serve` word we must not
# mistake a flag's value (`--data serve`) for it.
_VALUE_FLAGS = frozenset(("--port", "--data", "--data-dir", "--DATA_DIR", "--bind", "--host", "--log-level"))

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_REFUSED = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kissvdb` console script and `python -m kissvdb`. Returns the exit code."""
    try:
        argv = route_argv(list(sys.argv[1:] if argv is None else argv))
    except UnknownCommand as exc:
        _error(f"unknown command {exc.args[0]!r} (commands: {', '.join(COMMANDS)}; flags alone mean serve)")
        return EXIT_REFUSED
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_REFUSED
    return args.func(args)


class UnknownCommand(Exception):
    """The first argument is a word that is not a command."""


def route_argv(argv: list[str]) -> list[str]:
    """Make `serve` explicit when the first argument is a flag rather than a subcommand.

    The original starts the server on any unrecognised first argument; a typo such as
    `kissvdb chekc data` would then start a server on ./data, so a first word that is not a
    command is refused instead (flags alone still mean `serve`).

    `kissvdb --port 1 serve` also works (the original recognises its flags anywhere in argv):
    the first bare `serve` word that is not a flag's value is moved to the front.
    """
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    if argv and not argv[0].startswith("-"):
        raise UnknownCommand(argv[0])
    rest = list(argv)
    i = 0
    while i < len(rest):
        if rest[i] == "serve":
            del rest[i]
            break
        i += 2 if rest[i] in _VALUE_FLAGS else 1
    return ["serve", *rest]


# --------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kissvdb",
        description="kissvdb: a local-first, event-sourced multi-model database over HTTP.",
        epilog="With no command, or when the first argument is a flag, `serve` runs. "
        "`kissvdb serve --help` lists every setting.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"kissvdb {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_wal_tools(sub)
    _add_vacuum(sub)

    from kissvdb import cli_diskann

    cli_diskann.add_parser(sub, Progress, _error)
    return parser


def _add_serve(sub) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the HTTP server (default)",
        description="Run the HTTP server. Flags override the environment variables listed below.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    serve.add_argument("--port", type=_port, dest="port", metavar="N",
                       help="port to listen on, 0 = any free port (env PORT_RUST_KISS_VDB)")
    serve.add_argument("--data", "--data-dir", "--DATA_DIR", dest="data_dir", metavar="PATH",
                       help="data directory (env DATA_DIR)")
    serve.add_argument("--bind", "--host", dest="bind_addr", metavar="IP",
                       help="address to listen on (env BIND_ADDR)")
    serve.add_argument("--unsafe-bind", dest="bind_addr", action="store_const", const="0.0.0.0",
                       help="listen on every interface (0.0.0.0); needs API_KEY set")
    serve.add_argument("--sqlite", "--sqlite-enabled", dest="sqlite_enabled", action="store_const",
                       const=True, help="enable user SQL and the API-key store (env SQLITE_ENABLED)")
    serve.add_argument("--no-sqlite", dest="sqlite_enabled", action="store_const", const=False,
                       help="disable user SQL and the API-key store")
    serve.add_argument("--server", dest="http_server", choices=("ours", "hypercorn"),
                       help="HTTP server: ours (HTTP/1.1, fastest) or hypercorn (HTTP/2, TLS) (env HTTP_SERVER)")
    serve.add_argument("--certfile", dest="tls_certfile", metavar="PEM",
                       help="serve HTTPS with this certificate (needs --server hypercorn) (env TLS_CERTFILE)")
    serve.add_argument("--keyfile", dest="tls_keyfile", metavar="PEM",
                       help="private key for --certfile (env TLS_KEYFILE)")
    serve.add_argument("--memory", action="store_true",
                       help="keep everything in memory: NOTHING IS DURABLE (tests and demos only)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                       help="log level for stderr (default info)")
    serve.set_defaults(func=_serve)


def _add_wal_tools(sub) -> None:
    check = sub.add_parser(
        "check",
        help="verify every WAL record of a stopped server's DATA_DIR",
        description="Read every WAL segment in DATA_DIR and verify headers and checksums. "
        "Takes DATA_DIR's lock, so it refuses to run beside a live server. "
        "Exit 0 when clean, 1 when problems were found.",
        allow_abbrev=False,
    )
    check.add_argument("data_dir", metavar="DATA_DIR")
    check.set_defaults(func=_check)

    repair = sub.add_parser(
        "repair",
        help="cut a damaged WAL at its first bad record (shows what is dropped first)",
        description="Plan a repair of DATA_DIR's WAL, print exactly what would be dropped, ask for "
        "confirmation (unless --yes), then apply it. Offsets are never reused afterwards. "
        "Takes DATA_DIR's lock, so it refuses to run beside a live server.",
        allow_abbrev=False,
    )
    repair.add_argument("data_dir", metavar="DATA_DIR")
    repair.add_argument("--truncate-at-first-bad", action="store_true", required=True,
                        help="drop the first bad record and everything after it (the only mode)")
    repair.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (required when stdin is not available)")
    repair.set_defaults(func=_repair)


def _add_vacuum(sub) -> None:
    vacuum = sub.add_parser(
        "vacuum",
        help="rewrite a vector collection's run files without dead records (server stopped)",
        description="Open one vector collection of a stopped server's DATA_DIR and rewrite its "
        "run files until no deleted or replaced record is left, then checkpoint it. Takes "
        "DATA_DIR's lock, so it refuses to run beside a live server. Events still only in the "
        "WAL are replayed by the next start, as usual.",
        allow_abbrev=False,
    )
    vacuum.add_argument("--collection", required=True, metavar="NAME")
    vacuum.add_argument("--data", "--data-dir", dest="data_dir", default=None,
                        help="data directory (default DATA_DIR or ./data)")
    vacuum.set_defaults(func=_vacuum)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0..65535: {port}")
    return port


def settings_help() -> str:
    """The settings table for `serve --help`: one `NAME=default` line per SETTINGS record."""
    lines = ["settings (environment variables; the flags above override them):"]
    for s in SETTINGS:
        assignment = f"{s.env}={default_text(s)}"
        if len(assignment) <= 38:
            lines.append(f"  {assignment:<38} {s.help}")
        else:
            lines.append(f"  {assignment}")
            lines.append(f"  {'':<38} {s.help}")
    lines.append("")
    lines.append("A value that does not parse is an error (exit 2), not a silent fallback.")
    return "\n".join(lines)


def default_text(setting: Setting) -> str:
    """A setting's default written as the environment value that means it."""
    value = setting.default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("kissvdb")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


# --------------------------------------------------------------------------------------------
# serve


def serve_settings(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """Settings for `serve`: the environment (default os.environ), then the flags on top."""
    return Settings.from_env(
        env,
        port=args.port,
        data_dir=args.data_dir,
        bind_addr=args.bind_addr,
        sqlite_enabled=args.sqlite_enabled,
        http_server=args.http_server,
        tls_certfile=args.tls_certfile,
        tls_keyfile=args.tls_keyfile,
        memory=True if args.memory else None,
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = serve_settings(args)
    except ConfigError as exc:
        _error(f"bad setting: {exc}")
        return EXIT_REFUSED
    from kissvdb.api.server import run  # the one upward import of the core; see module docstring

    return run(settings, log_level=args.log_level)


# --------------------------------------------------------------------------------------------
# check / repair


def _check(args: argparse.Namespace) -> int:
    def run() -> int:
        from kissvdb.wal.inspect import check

        with Progress("checking") as progress:
            report = check(args.data_dir, progress=progress)
        print(report.format(), flush=True)
        return EXIT_OK if report.ok else EXIT_PROBLEMS

    return _with_lock(args.data_dir, run, migrate=False)


def _repair(args: argparse.Namespace) -> int:
    def run() -> int:
        from kissvdb.wal.inspect import StalePlan, apply_repair, check, plan_repair

        with Progress("checking") as progress:
            plan = plan_repair(args.data_dir, progress=progress)
        if plan is None:
            print("nothing to repair: every WAL record checks out", flush=True)
            return EXIT_OK
        print(plan.describe(), flush=True)
        if not args.yes:
            answer = _ask("Type 'yes' to apply this repair: ")
            if answer is None:
                _error("no answer on stdin; nothing was changed. Rerun with --yes to confirm.")
                return EXIT_REFUSED
            if answer.strip().lower() not in ("yes", "y"):
                print("repair cancelled; nothing was changed", flush=True)
                return EXIT_PROBLEMS
        try:
            apply_repair(plan)
        except StalePlan as exc:
            _error(f"{exc}; nothing was changed")
            return EXIT_PROBLEMS
        print("repair applied; checking again:", flush=True)
        with Progress("checking") as progress:
            report = check(args.data_dir, progress=progress)
        print(report.format(), flush=True)
        return EXIT_OK if report.ok else EXIT_PROBLEMS

    return _with_lock(args.data_dir, run, migrate=False)


def _vacuum(args: argparse.Namespace) -> int:
    import os

    data_dir = args.data_dir or os.environ.get("DATA_DIR") or Settings().data_dir

    def run() -> int:
        from kissvdb.layout import COLLECTIONS_DIR, VECTORS_DIR, collection_dir_name, is_valid_collection_name
        from kissvdb.vectors.collection import Collection, VectorParams

        if not is_valid_collection_name(args.collection):
            _error(f"not a collection name: {args.collection!r}")
            return EXIT_PROBLEMS
        path = os.path.join(data_dir, VECTORS_DIR, COLLECTIONS_DIR, collection_dir_name(args.collection))
        if not os.path.exists(os.path.join(path, "manifest.json")):
            _error(f"no vector collection {args.collection!r} in {data_dir}")
            return EXIT_PROBLEMS
        params = VectorParams.from_settings(Settings.from_env())
        coll = Collection.open(path, params)
        try:
            before = coll.info()
            with Progress(f"vacuum {args.collection}") as progress:
                passes = coll.vacuum(progress=progress)
            after = coll.info()
        finally:
            coll.close()
        print(f"vacuumed {args.collection}: {passes} pass(es); records {before['total_records']} -> "
              f"{after['total_records']}, run bytes {before['file_len']} -> {after['file_len']}, "
              f"{after['live_count']} live vectors", flush=True)
        return EXIT_OK

    return _with_lock(data_dir, run)


def _with_lock(data_dir: str, body: Callable[[], int], *, migrate: bool = True) -> int:
    """Run `body` while holding DATA_DIR's lock; map the offline failures to exit codes.

    `migrate=False` for the commands that only read and cut the WAL, whose format every data
    format shares: they work on an old data directory without upgrading it."""
    from kissvdb.datadir import DataDir

    try:
        lock = DataDir.open(data_dir, create=False, migrate=migrate)  # never creates: a typo must not make a dir
    except DataDirLocked as exc:
        _error(f"{exc}. Stop that process first.")
        return EXIT_REFUSED
    except ConfigError as exc:  # missing directory, no FORMAT file, or a format we do not read
        _error(str(exc))
        return EXIT_REFUSED
    with lock:
        if lock.migrated_from is not None:
            print(f"migrated {data_dir} from data format {lock.migrated_from} to {lock.format_version}", flush=True)
        try:
            return body()
        except Corruption as exc:
            _error(str(exc))
            return EXIT_PROBLEMS
        except OSError as exc:
            _error(f"{data_dir}: {exc}")
            return EXIT_PROBLEMS


def _ask(prompt: str) -> str | None:
    """Read one line from stdin after printing `prompt` on stderr; None when stdin has nothing."""
    if sys.stdin is None or sys.stdin.closed:
        return None
    sys.stderr.write(prompt)
    sys.stderr.flush()
    try:
        line = sys.stdin.readline()
    except (OSError, ValueError):
        return None
    if not line:
        sys.stderr.write("\n")
        return None
    return line


class Progress:
    """A percentage line on stderr for long checks: the checker calls `progress(done, total)`.

    Quiet for the first PROGRESS_QUIET_S (a short check prints nothing). Then, on a terminal, it
    rewrites one line; elsewhere it prints a line every 10% so logs stay short.
    """

    PROGRESS_QUIET_S = 1.0

    def __init__(self, label: str, stream=None, clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.started = clock()
        self.last_step = -1
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.clock() - self.started < self.PROGRESS_QUIET_S:
            return
        percent = max(0, min(100, done * 100 // total)) if total > 0 else 100
        step = percent if self.tty else percent // 10
        if step == self.last_step:
            return
        self.last_step = step
        self.shown = True
        if self.tty:
            self.stream.write(f"\r{self.label}: {percent:3d}%")
        else:
            self.stream.write(f"{self.label}: {percent}%\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _error(message: str) -> None:
    print(f"kissvdb: {message}", file=sys.stderr, flush=True)

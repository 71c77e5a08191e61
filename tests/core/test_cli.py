"""The `kissvdb` command and the server process around the engine.

What a user sees at the command line is tested through `python -m kissvdb` subprocesses: exit
codes, stdin handling, locks held by another process, the listening line and signals. Pure
argument handling is tested in-process. Every subprocess wait is bounded (COMMAND_TIMEOUT_S, or
ServerProcess's own deadlines); nothing sleeps.

Tests that need a module another part of the tree provides (the WAL, the offline inspector, the
engine) skip with that module's name until it exists.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kissvdb import cli
from kissvdb.config import SETTINGS, Settings
from kissvdb.errors import ConfigError

COMMAND_TIMEOUT_S = 60.0

# Variables that would change what a test asks for if the developer's shell had them set.
_SCRUBBED = {s.env for s in SETTINGS} | {"RUSTKISS_API_KEY"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def kissvdb(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m kissvdb ARGS` to completion (bounded); stdin is closed unless `input`."""
    return subprocess.run(
        [sys.executable, "-m", "kissvdb", *map(str, args)],
        env=clean_env() if env is None else env,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def expected_default(value: object) -> str:
    """A default as the environment value that means it (independent of cli.default_text)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


# --------------------------------------------------------------------------------------------
# help and argument handling


def test_serve_help_lists_every_setting_with_env_name_default_and_help():
    result = kissvdb("serve", "--help")
    assert result.returncode == 0, result.stderr
    first_words = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    for setting in SETTINGS:
        assert f"{setting.env}={expected_default(setting.default)}" in first_words, setting.env
        assert setting.help in result.stdout, setting.env
    for flag in ("--port", "--data", "--data-dir", "--DATA_DIR", "--bind", "--host", "--unsafe-bind",
                 "--sqlite", "--sqlite-enabled", "--no-sqlite", "--memory"):
        assert flag in result.stdout, flag


def test_top_level_help_names_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in out


@pytest.mark.parametrize(
    "argv, routed",
    [
        ([], ["serve"]),
        (["--port", "1"], ["serve", "--port", "1"]),
        (["--port", "1", "serve"], ["serve", "--port", "1"]),  # the original reads flags anywhere
        (["--data", "serve"], ["serve", "--data", "serve"]),  # a flag's value is not the command
        (["check", "x"], ["check", "x"]),
        (["serve", "--memory"], ["serve", "--memory"]),
    ],
)
def test_no_command_or_a_leading_flag_means_serve(argv, routed):
    assert cli.route_argv(argv) == routed


def test_a_first_word_that_is_not_a_command_is_refused(capsys):
    assert cli.main(["chekc", "data"]) == 2
    assert "unknown command 'chekc'" in capsys.readouterr().err


def test_flags_override_environment_and_the_rest_comes_from_it():
    env = {"PORT_RUST_KISS_VDB": "9", "DATA_DIR": "from-env", "SQLITE_ENABLED": "1", "BIND_ADDR": "127.0.0.2",
           "MAX_K": "17"}
    args = cli.build_parser().parse_args(
        cli.route_argv(["--port", "7", "--data-dir", "from-flag", "--no-sqlite", "--memory"]))
    settings = cli.serve_settings(args, env)
    assert (settings.port, settings.data_dir, settings.sqlite_enabled, settings.memory) == (7, "from-flag", False, True)
    assert (settings.bind_addr, settings.max_k) == ("127.0.0.2", 17)

    args = cli.build_parser().parse_args(cli.route_argv(["--unsafe-bind", "--DATA_DIR", "d", "--sqlite"]))
    settings = cli.serve_settings(args, {"SQLITE_ENABLED": "off"})
    assert (settings.bind_addr, settings.data_dir, settings.sqlite_enabled) == ("0.0.0.0", "d", True)

    args = cli.build_parser().parse_args(cli.route_argv(["--host", "::1", "--data", "x"]))
    assert cli.serve_settings(args, {}).bind_addr == "::1"


@pytest.mark.parametrize("port", ["-1", "65536", "abc"])
def test_a_bad_port_flag_exits_2(port, capsys):
    assert cli.main(["serve", "--port", port]) == 2
    assert "--port" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, value",
    [("PORT_RUST_KISS_VDB", "abc"), ("INDEX_KIND", "NOT_AN_INDEX"), ("MAX_K", "1.5"),
     ("COMPACTION_TRIGGER_TOMBSTONE_RATIO", "lots")],
)
def test_an_unparseable_environment_value_refuses_to_start(name, value, tmp_path):
    result = kissvdb("serve", "--port", "0", "--data", tmp_path / "data", env=clean_env(**{name: value}))
    assert result.returncode == 2, result.stderr
    assert name in result.stderr
    assert "listening" not in result.stdout
    assert not (tmp_path / "data").exists()  # refused before touching anything


# --------------------------------------------------------------------------------------------
# binding and keys


def test_non_loopback_bind_with_the_default_key_refuses_to_start(tmp_path):
    for flags in (["--unsafe-bind"], ["--bind", "0.0.0.0"], ["--host", "10.11.12.13"]):
        result = kissvdb("serve", *flags, "--port", "0", "--data", tmp_path / "data")
        assert result.returncode == 2, (flags, result.stderr)
        assert "API_KEY" in result.stderr and "dev" in result.stderr, result.stderr
        assert "listening" not in result.stdout
    assert not (tmp_path / "data").exists()


def test_bind_rule():
    from kissvdb.api import server
    for host in ("127.0.0.1", "127.0.0.5", "::1", "localhost"):
        server.check_bind(Settings(bind_addr=host))  # loopback: `dev` is fine
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(ConfigError, match="API_KEY"):
            server.check_bind(Settings(bind_addr=host))
        server.check_bind(Settings(bind_addr=host, api_key="s3cret", api_key_from_env=True))
    with pytest.raises(ConfigError, match="not an IP address"):
        server.check_bind(Settings(bind_addr="example.invalid"))


# --------------------------------------------------------------------------------------------
# check and repair


def build_wal(data_dir: Path, records: int = 20) -> tuple[Path, list[int]]:
    """A real data directory with one WAL segment; returns its path and each record's byte position."""
    from kissvdb.datadir import DataDir
    from kissvdb.events import RawJson, encode_payload
    from kissvdb.wal.format import FRAME_OVERHEAD_BYTES, HEADER_BYTES
    from kissvdb.wal.log import WalLog

    DataDir.open(data_dir).close()
    wal = WalLog.open(str(data_dir), segment_max_bytes=1 << 20, fsync=False)
    try:
        wal.append([
            encode_payload(1_700_000_000_000 + i, "state_updated",
                           {"key": f"key-{i:03d}", "value": RawJson(b'{"n":%d}' % i), "revision": 1,
                            "expires_at_ms": None})
            for i in range(records)
        ])
        wal.sync()
    finally:
        wal.close()
    segment = data_dir / "events-000001.log"
    data = segment.read_bytes()
    positions, pos = [], HEADER_BYTES
    while pos < len(data):  # walk the frames by their length fields: [u32 len][u32 crc][payload]
        positions.append(pos)
        (length,) = struct.unpack_from("<I", data, pos)
        pos += FRAME_OVERHEAD_BYTES + length
    assert pos == len(data) and len(positions) == records
    return segment, positions


def flip_payload_byte(segment: Path, frame_position: int) -> None:
    data = bytearray(segment.read_bytes())
    data[frame_position + 8 + 2] ^= 0xFF  # inside the payload: the CRC no longer matches
    segment.write_bytes(bytes(data))


def test_check_passes_a_clean_wal(tmp_path):
    data_dir = tmp_path / "data"
    build_wal(data_dir)
    result = kissvdb("check", data_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_names_the_damage_and_repair_shows_asks_and_cuts(tmp_path):
    from kissvdb.wal.log import WalLog

    data_dir = tmp_path / "data"
    segment, positions = build_wal(data_dir)
    bad = positions[5]  # record 6 of 20: valid records follow it, so this is corruption, not a torn tail
    flip_payload_byte(segment, bad)
    damaged = segment.read_bytes()

    result = kissvdb("check", data_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    assert segment.name in result.stdout and str(bad) in result.stdout, result.stdout

    # No terminal and no --yes: the plan is shown, nothing is changed, and it says how to confirm.
    result = kissvdb("repair", data_dir, "--truncate-at-first-bad")
    assert result.returncode == 2, result.stdout + result.stderr
    assert segment.name in result.stdout
    assert "--yes" in result.stderr
    assert segment.read_bytes() == damaged

    # Declined at the prompt: nothing is changed.
    result = kissvdb("repair", data_dir, "--truncate-at-first-bad", input="no\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing was changed" in result.stdout
    assert segment.read_bytes() == damaged

    # The mode flag is required: repair never guesses what to drop.
    result = kissvdb("repair", data_dir, "--yes")
    assert result.returncode == 2 and "--truncate-at-first-bad" in result.stderr
    assert segment.read_bytes() == damaged

    result = kissvdb("repair", data_dir, "--truncate-at-first-bad", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert segment.name in result.stdout  # the plan names what it drops

    result = kissvdb("check", data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    wal = WalLog.open(str(data_dir), segment_max_bytes=1 << 20, fsync=False)
    try:
        assert wal.last_offset == 5  # records before the bad one survive; it and those after are gone
    finally:
        wal.close()


def test_repair_accepts_yes_typed_at_the_prompt(tmp_path):
    data_dir = tmp_path / "data"
    segment, positions = build_wal(data_dir)
    flip_payload_byte(segment, positions[3])
    result = kissvdb("repair", data_dir, "--truncate-at-first-bad", input="yes\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert kissvdb("check", data_dir).returncode == 0


def test_check_refuses_a_directory_that_is_not_a_data_dir(tmp_path):
    missing = tmp_path / "missing"
    result = kissvdb("check", missing)
    assert result.returncode == 2
    assert not missing.exists()  # an offline command never creates a data directory
    result = kissvdb("repair", tmp_path, "--truncate-at-first-bad", "--yes")  # exists, but no FORMAT
    assert result.returncode == 2, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# the DATA_DIR lock


def test_offline_commands_and_serve_refuse_a_locked_data_dir(tmp_path):
    from kissvdb.datadir import DataDir

    data_dir = tmp_path / "data"
    with DataDir.open(data_dir):  # this test process is the other owner
        for args in (["check", data_dir], ["repair", data_dir, "--truncate-at-first-bad", "--yes"]):
            result = kissvdb(*args)
            assert result.returncode == 2, (args, result.stdout, result.stderr)
            assert "lock" in result.stderr.lower(), result.stderr
            result = kissvdb("serve", "--port", "0", "--data", data_dir)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "lock" in result.stderr.lower() and "listening" not in result.stdout


def _server_process():
    from tests.e2e.server import ServerProcess

    return ServerProcess


def test_a_live_server_holds_the_lock_and_stops_cleanly_on_sigterm(tmp_path):
    import httpx

    ServerProcess = _server_process()
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        assert httpx.get(server.url("/v1/health"), timeout=10).status_code == 200
        put = httpx.put(server.url("/v1/state/k"), json={"value": 1}, headers=server.headers, timeout=10)
        assert put.status_code == 200, put.text

        second = kissvdb("serve", "--port", "0", "--data", data_dir)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "lock" in second.stderr.lower()
        repair = kissvdb("repair", data_dir, "--truncate-at-first-bad", "--yes")
        assert repair.returncode == 2 and "lock" in repair.stderr.lower()

        assert server.stop() == 0
        assert "stopping gracefully" in server.log()
    result = kissvdb("check", data_dir)  # lock released, and a graceful stop leaves a clean log
    assert result.returncode == 0, result.stdout + result.stderr


def test_memory_mode_says_nothing_is_durable(tmp_path):
    ServerProcess = _server_process()
    with ServerProcess(tmp_path / "data", extra_args=("--memory",)) as server:
        assert server.stop() == 0
    assert "NOTHING IS DURABLE" in server.log()


def test_progress_is_quiet_for_short_checks_and_terse_in_logs():
    import io

    now = [0.0]
    stream = io.StringIO()  # not a terminal: one line per 10%
    progress = cli.Progress("checking", stream, clock=lambda: now[0])
    progress(50, 100)
    assert stream.getvalue() == ""  # under PROGRESS_QUIET_S: a short check prints nothing
    now[0] = 5.0
    for done in range(0, 1001, 7):
        progress(done, 1000)
    progress(1000, 1000)
    assert stream.getvalue().splitlines() == [f"checking: {p}%" for p in range(0, 101, 10)]


def test_vacuum_rewrites_a_collection_offline(tmp_path, capsys):
    import random

    from kissvdb.cli import main
    from kissvdb.datadir import DataDir
    from kissvdb.layout import COLLECTIONS_DIR, collection_dir_name
    from kissvdb.vectors.collection import Collection
    from tests.core.vectors.helpers import apply_all, random_ops, small_params

    data = tmp_path / "data"
    DataDir.open(str(data)).close()
    path = data / "vectors" / COLLECTIONS_DIR / collection_dir_name("Docs")
    c = Collection.create(str(path), "Docs", 4, "cosine", "HNSW", small_params())
    apply_all(c, random_ops(random.Random(1), 300, 4, 50))
    c.checkpoint()
    c.close()
    assert main(["vacuum", "--collection", "Docs", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "vacuumed Docs" in out
    c = Collection.open(str(path), small_params())
    assert c.info()["deleted_count"] == 0
    c.close()
    assert main(["vacuum", "--collection", "docs", "--data", str(data)]) == 1  # names are case-sensitive
    assert main(["vacuum", "--collection", "nope", "--data", str(data)]) == 1
    assert main(["vacuum", "--collection", "../nope", "--data", str(data)]) == 1


def test_vacuum_upgrades_a_format1_data_dir_first(tmp_path, capsys):
    import random

    from kissvdb.cli import main
    from kissvdb.datadir import DATA_FORMAT_VERSION, DataDir
    from kissvdb.layout import COLLECTIONS_DIR, collection_dir_name
    from kissvdb.vectors.collection import Collection
    from tests.core.vectors.helpers import apply_all, random_ops, small_params

    data = tmp_path / "data"
    DataDir.open(str(data)).close()
    (data / "FORMAT").write_text("kissvdb-format 1\n")
    c = Collection.create(str(data / "vectors" / "Docs"), "Docs", 4, "cosine", "FLAT", small_params())
    apply_all(c, random_ops(random.Random(2), 200, 4, 40))
    c.checkpoint()
    c.close()
    assert main(["vacuum", "--collection", "Docs", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "migrated" in out and "vacuumed Docs" in out
    assert (data / "FORMAT").read_text() == f"kissvdb-format {DATA_FORMAT_VERSION}\n"
    assert (data / "vectors" / COLLECTIONS_DIR / collection_dir_name("Docs") / "manifest.json").is_file()

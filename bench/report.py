"""What every bench script shares: the machine line, progress on stderr, a printed table, and
the section it owns in docs/BENCHMARKS.md.

Each script owns one section of docs/BENCHMARKS.md, between `<!-- bench:NAME:start -->` and
`<!-- bench:NAME:end -->`; a new run replaces its own section and leaves the others alone, so the
file always holds the latest figures of every workload with the command that produced them.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "docs" / "BENCHMARKS.md"
HEADER = """# kissvdb benchmarks

Measured figures, each with the exact command that produced it and the machine it ran on.
Every script in `bench/` rewrites its own section below; targets come from issue 2 unless a
section names another issue, and every figure is reported whether it meets its target or not.
"""

if str(REPO) not in sys.path:  # bench scripts reuse the e2e server harness
    sys.path.insert(0, str(REPO))

_T0 = time.monotonic()


def progress(message: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - _T0:7.1f}s] {message}\n")
    sys.stderr.flush()


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu or platform.processor() or "?",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "commit": commit,
        "load": _loadavg(),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def command_line() -> str:
    args = " ".join(sys.argv[1:])
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return f".venv/bin/python {script}{(' ' + args) if args else ''}"


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    def line(r): return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) this script's section of docs/BENCHMARKS.md."""
    info = machine()
    section = (
        f"<!-- bench:{name}:start -->\n## {title}\n\n"
        f"Command: `{command_line()}`  \n"
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['os']}; "
        f"commit {info['commit']}; run {info['date']}; load average {info['load']} (1/5/15 min) when it "
        f"finished (the box is shared: other work competes for its {info['nproc']} CPUs).\n\n"
        f"{body.rstrip()}\n<!-- bench:{name}:end -->\n"
    )
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)}:start -->.*?<!-- bench:{re.escape(name)}:end -->\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS_MD.write_text(text)
    progress(f"wrote section '{name}' of {os.path.relpath(BENCHMARKS_MD, REPO)}")

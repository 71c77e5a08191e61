"""The wheel holds every module: pyproject.toml lists packages by hand, so a new subpackage
left out of it would install without its files and fail only on a user's machine.

Builds the wheel from a clean copy of the sources (pip, the package's own build backend), installs it with no dependencies in a
fresh venv whose only other path is this environment's site-packages (for trio, numpy ...; its
editable install of kissvdb is not active there), and imports every module of kissvdb/,
actors/ and api/ from outside the checkout. Each must come from the installed wheel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREES = {"kissvdb": REPO / "kissvdb", "kissvdb.actors": REPO / "actors", "kissvdb.api": REPO / "api"}


def module_names() -> list[str]:
    names = []
    for package, root in TREES.items():
        for path in sorted(root.rglob("*.py")):
            if ".venv" in path.parts or path.name == "__main__.py":  # __main__ runs the server
                continue
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            names.append(".".join([package, *parts]))
    return names


def clean_source(into: Path) -> Path:
    """The files a build reads, copied: a build in the checkout would reuse its stale build/."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, into / name)
    for tree in ("kissvdb", "actors", "api"):
        shutil.copytree(REPO / tree, into / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return into


def test_the_wheel_installs_every_module(tmp_path):
    dist = tmp_path / "dist"
    (tmp_path / "src").mkdir()
    source = clean_source(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("kissvdb-*.whl")
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    script = (
        "import importlib, json, sys\n"
        "out = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        out[name] = importlib.import_module(name).__file__\n"
        "    except Exception as exc:\n"
        "        out[name] = 'ERROR ' + repr(exc)\n"
        "print(json.dumps(out))\n"
    )
    names = module_names()
    run = subprocess.run([str(python), "-c", script, json.dumps(names)], cwd=tmp_path, check=True,
                         capture_output=True, text=True, timeout=300)
    files = json.loads(run.stdout)
    bad = {n: f for n, f in files.items() if f is None or not f.startswith(str(site))}
    assert not bad, f"not imported from the installed wheel: {bad}"
    assert len(files) == len(names) > 80

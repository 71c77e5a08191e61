"""The floors of the house, checked on the source (AST), not by convention.

- `kissvdb/` (the synchronous core) never imports trio, `kissvdb.actors` or `kissvdb.api`;
- `actors/` (kissvdb.actors, the Trio tasks) never imports `kissvdb.api`;
- `kissvdb.cli` (the command line) sits on top and nothing imports it;
- no import cycle between modules, counting every import (a function-level import that closes
  a cycle hides it, it does not remove it) except those under `if TYPE_CHECKING:`.

A new module is checked as soon as it exists: the walk covers every .py file of the three trees.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREES = {"kissvdb": REPO / "kissvdb", "kissvdb.actors": REPO / "actors", "kissvdb.api": REPO / "api"}
FORBIDDEN = {
    "kissvdb": ("trio", "kissvdb.actors", "kissvdb.api"),
    "kissvdb.actors": ("kissvdb.api",),
}


def modules() -> dict[str, Path]:
    """Every module of the three trees by its installed name (kissvdb.actors.kv ...)."""
    out = {}
    for package, root in TREES.items():
        for path in sorted(root.rglob("*.py")):
            if ".venv" in path.parts:
                continue
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


# The command line (`kissvdb` console script) is the roof, not the core: `kissvdb serve` starts
# the HTTP server. It may import every floor; nothing may import it.
ROOF = {"kissvdb.cli", "kissvdb.__main__"}


def floor_of(module: str) -> str:
    if module in ROOF:
        return "roof"
    for package in ("kissvdb.actors", "kissvdb.api"):
        if module == package or module.startswith(package + "."):
            return package
    return "kissvdb"


def _runtime_nodes(tree: ast.AST):
    """Every node, except under `if TYPE_CHECKING:` (annotations only: never imported at run time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports_of(module: str, path: Path) -> set[str]:
    """Every module `module` imports (absolute names), at any depth of its code."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import mod`
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {i for i in imports_of(m, p) if i in mods and i != m} for m, p in mods.items()}


def test_no_floor_imports_a_floor_above_it():
    mods = modules()
    bad = []
    for module, path in mods.items():
        for imported in imports_of(module, path):
            for prefix in FORBIDDEN.get(floor_of(module), ()):
                if imported == prefix or imported.startswith(prefix + "."):
                    bad.append(f"{module} imports {imported}")
        if any(i in ROOF for i in imports_of(module, path)) and module not in ROOF:
            bad.append(f"{module} imports the command line")
    assert not bad, "\n".join(sorted(set(bad)))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): the import cycles."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_sees_a_back_arrow_and_a_cycle(tmp_path):
    """The checks above can fail: a core module importing trio and two modules importing each
    other are reported."""
    core = tmp_path / "m.py"
    core.write_text("import trio\nfrom kissvdb.actors import kv\n")
    assert {"trio", "kissvdb.actors", "kissvdb.actors.kv"} <= imports_of("kissvdb.m", core)
    rel = tmp_path / "r.py"
    rel.write_text("from ..codec import require\nfrom . import app\nif TYPE_CHECKING:\n    from .x import y\n")
    assert {"kissvdb.api.codec", "kissvdb.api.codec.require", "kissvdb.api.routes.app"} <= imports_of(
        "kissvdb.api.routes.r", rel)
    assert "kissvdb.api.routes.x" not in imports_of("kissvdb.api.routes.r", rel)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The DiskANN package is synchronous core: no trio, no actors, no api (docs/architecture.md)."""

import ast
import os

import kissvdb.vectors.diskann as pkg

FORBIDDEN = ("trio", "kissvdb.actors", "kissvdb.api", "actors", "api")


def test_no_module_imports_an_upper_layer():
    root = os.path.dirname(pkg.__file__)
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(root, name)).read())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for m in mods:
                assert not any(m == f or m.startswith(f + ".") for f in FORBIDDEN), (name, m)

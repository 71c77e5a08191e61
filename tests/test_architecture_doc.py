"""docs/architecture.md names every module of the three floors (kissvdb/, actors/, api/) by
its path, so a module added without a place in the house plan fails here."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"


def test_every_module_is_in_docs_architecture_md():
    text = DOC.read_text()
    missing = []
    for tree in ("kissvdb", "actors", "api"):
        for path in sorted((REPO / tree).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if path.name == "__init__.py" or ".venv" in path.parts:
                continue
            if f"`{rel}`" not in text and f"({rel})" not in text:
                missing.append(rel)
    assert not missing, "docs/architecture.md does not name:\n" + "\n".join(missing)


def test_it_cites_no_file_outside_the_repo():
    assert "../DESIGN.md" not in DOC.read_text()

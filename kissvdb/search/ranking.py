"""What a `/search` request may return, and in which order: filters, versions, groups, top_k.

Pure functions over documents' metadata and ranked (id, score) lists, in the original's order
(contract §5.6):
1. filters: `category` and `status` equal a string, `language` equals one of a list (or a
   string); a document lacking a filtered field is excluded;
2. `version_policy: "latest"`, over the documents that passed the filters: among documents with
   a `group_id`, only the one with the largest `processed_at` (missing = 0) is kept, the first
   ingested winning ties; documents without `group_id` are all kept. Any other value keeps all;
3. rank (fusion.py), then, with `group_by`, keep the best `group_limit` hits per value of that
   metadata field (a document lacking it, or an unknown `group_by` name, is a group of its own),
   order groups by their best hit and flatten them; without it, the ranking as is;
4. cut to `top_k` items, not groups. `top_k: 0` or `group_limit: 0` -> no results.
"Ingested first" is the smaller `seq`: the WAL offset of the write that stored the document's
current version (re-ingesting an id makes it newer).
Never does: I/O.
"""

from __future__ import annotations

from typing import Callable, Iterable

from kissvdb.vectors.search import group

from .request import GROUP_FIELDS, Filters


def passes(metadata: dict, filters: Filters) -> bool:
    """Whether a document's metadata passes the `category`, `language` and `status` filters."""
    if filters.category is not None and metadata.get("category") != filters.category:
        return False
    if filters.status is not None and metadata.get("status") != filters.status:
        return False
    if filters.language is not None:
        language = metadata.get("language")
        if language is None or language not in filters.language:
            return False
    return True


def narrows(filters: Filters) -> bool:
    """Whether `filters` can exclude any document (else every document is allowed)."""
    return (filters.category is not None or filters.status is not None or filters.language is not None
            or filters.latest)


def allowed_ids(docs: Iterable[tuple[int, int, dict]], filters: Filters) -> set[int]:
    """The ids of (id, seq, metadata) documents that pass the filters and the version policy."""
    keep: set[int] = set()
    latest: dict[int, tuple[int, int, int]] = {}  # group_id -> (processed_at, -seq, id)
    for doc_id, seq, metadata in docs:
        if not passes(metadata, filters):
            continue
        gid = metadata.get("group_id") if filters.latest else None
        if gid is None:
            keep.add(doc_id)
            continue
        candidate = (metadata.get("processed_at", 0), -seq, doc_id)
        best = latest.get(gid)
        if best is None or candidate[:2] > best[:2]:
            latest[gid] = candidate
    keep.update(c[2] for c in latest.values())
    return keep


def group_key(doc_id: int, metadata: dict, group_by: str):
    """The group of a document under `group_by`: its field's value, or a group of its own."""
    if group_by in GROUP_FIELDS:
        value = metadata.get(group_by)
        if value is not None:
            return ("v", value)
    return ("own", doc_id)


def select(ranked: list[tuple[int, float]], top_k: int, group_by: str | None, group_limit: int,
           metadata_of: Callable[[int], dict], exhausted: bool = True) -> list[tuple[int, float]] | None:
    """The hits to answer, best first, from a ranking (best first). None: grouping needs a
    deeper ranking than `ranked` (it holds fewer than every candidate and a group that may
    still gain members comes before the first `top_k` items are complete)."""
    if top_k <= 0 or (group_by is not None and group_limit <= 0):
        return []
    if group_by is None:
        return ranked[:top_k]
    return group(ranked, top_k, group_limit, lambda i: group_key(i, metadata_of(i), group_by), exhausted)

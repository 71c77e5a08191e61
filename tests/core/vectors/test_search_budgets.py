"""What bounds a search's hold on its caller's thread and on the heap (issue 9, "Budgets").

- `cheap_search` (a search run on the event loop's own thread) says no once the HNSW walk is
  large: many segments, a large `k` or `ef`, a large dimension.
- A group_by over metas larger than PARSED_META_KEEP_BYTES answers as over small ones, without
  keeping those metas parsed on the heap (every garbage collection would walk them), and keeps
  only their group keys, for a bounded number of fields.
"""

from __future__ import annotations

import numpy as np
import orjson

from kissvdb.vectors.collection import (CHEAP_SEARCH_UNITS_MAX, GROUP_KEY_FIELDS_MAX, PARSED_META_KEEP_BYTES,
                                        _UNPARSED, Collection, HnswParams, Remove, Upsert)

from .helpers import apply_all, small_params

DIM = 64


def hnsw_collection(tmp_path, n: int, mutable_cap: int) -> Collection:
    hnsw = HnswParams(m=8, ef_construction=16, ef_search=64, mutable_cap=mutable_cap, threads=1)
    c = Collection.create(str(tmp_path / "h"), "h", DIM, "cosine", "HNSW", small_params(hnsw=hnsw))
    vectors = np.random.default_rng(3).standard_normal((n, DIM)).astype(np.float32)
    apply_all(c, [Upsert(i + 1, f"v{i:04d}", v, None) for i, v in enumerate(vectors)], batch=100)
    return c


def test_only_small_hnsw_walks_run_on_the_callers_thread(tmp_path):
    c = hnsw_collection(tmp_path, 600, mutable_cap=1000)
    assert c.segment_count() == 1
    assert c.cheap_search(None, None, 10)
    assert not c.cheap_search({"g": 1}, None, 10) and not c.cheap_search(None, "g", 10)
    # segments x max(k, ef) x dim past the budget: a worker thread's job.
    assert 64 * DIM <= CHEAP_SEARCH_UNITS_MAX < 1_000_000 * DIM
    assert not c.cheap_search(None, None, 10, ef=1_000_000)
    assert not c.cheap_search(None, None, CHEAP_SEARCH_UNITS_MAX // DIM + 1)
    many = hnsw_collection(tmp_path / "many", 600, mutable_cap=100)
    assert many.segment_count() == 6
    breadth = CHEAP_SEARCH_UNITS_MAX // (DIM * 6)
    assert many.cheap_search(None, None, breadth) and not many.cheap_search(None, None, breadth + 1)


def large_meta(group: int) -> bytes:
    return orjson.dumps({"g": group, "pad": [0] * PARSED_META_KEEP_BYTES}, option=orjson.OPT_SORT_KEYS)


def test_group_by_over_large_metas_keeps_group_keys_not_parsed_metas(tmp_path):
    c = Collection.create(str(tmp_path / "f"), "f", DIM, "cosine", "FLAT", small_params())
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    small = [orjson.dumps({"g": i % 7}) for i in range(150)]
    metas = small + [large_meta(i % 7) for i in range(150, 300)]
    apply_all(c, [Upsert(i + 1, f"v{i:03d}", v, metas[i]) for i, v in enumerate(vectors)])
    q = rng.standard_normal(DIM).astype(np.float32)

    def grouped() -> list[str]:
        return [h.id for h in c.search(q, 14, group_by="g", group_limit=2)]

    ranked = [h.id for h in c.search(q, 300)]
    per_group: dict[int, list[str]] = {}
    for vid in ranked:
        per_group.setdefault(int(vid[1:]) % 7, [])
        if len(per_group[int(vid[1:]) % 7]) < 2:
            per_group[int(vid[1:]) % 7].append(vid)
    order = sorted(per_group, key=lambda g: ranked.index(per_group[g][0]))
    want = [vid for g in order for vid in per_group[g]]
    assert grouped() == want
    assert grouped() == want  # the second time from the kept keys
    v = c.view
    assert all(v.parsed[row] is _UNPARSED for row in range(150, 300))
    assert any(v.parsed[row] is not _UNPARSED for row in range(150))
    for field in [f"f{j}" for j in range(GROUP_KEY_FIELDS_MAX + 2)]:
        c.search(q, 5, group_by=field)
    assert len(c._group_keys) == GROUP_KEY_FIELDS_MAX
    # A compaction renumbers rows: keys of the old numbering are not used for the new one.
    gen = c.view.gen
    c.apply([Remove(1000 + i, f"v{i:03d}") for i in range(0, 300, 3)], 1100)
    assert c.compact(force=True) and c.view.gen != gen
    survivors = [vid for vid in ranked if int(vid[1:]) % 3]
    per_group = {}
    for vid in survivors:
        per_group.setdefault(int(vid[1:]) % 7, [])
        if len(per_group[int(vid[1:]) % 7]) < 2:
            per_group[int(vid[1:]) % 7].append(vid)
    order = sorted(per_group, key=lambda g: survivors.index(per_group[g][0]))
    assert grouped() == [vid for g in order for vid in per_group[g]]

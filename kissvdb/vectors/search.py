"""Search planning: exact scan, HNSW or IVF_FLAT_Q8, with filters and groups.

Guarantee: a search returns min(k, number of live vectors matching the filter) hits. Never fewer
because filtering happened after an approximate search:
- the filter is evaluated first (a mask over rows); when few rows match (or the collection is
  small, or its index is not trained yet) the matching rows are scanned exactly;
- otherwise the index is searched with the mask as an acceptance test, widening (more HNSW
  candidates, more IVF lists) until it has k accepted hits; if it still has fewer, the matching
  rows are scanned exactly.
Scores are always the exact float32 cosine (approximate candidates are re-scored from the
float32 rows), so every path ranks identically: score desc, ties by id asc.

Groups (`group_by` + `group_limit`): the best `group_limit` hits per value of the top-level meta
field `group_by` (a vector without the field is a group of its own), groups ordered by their
best score, flattened, cut to k items: the original's `/search` semantics. Candidates are
fetched in growing ranked batches until the first groups covering k items are complete.
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from kissvdb.errors import RequestTimeout
from kissvdb.vectors.filters import Filter
from kissvdb.vectors.distance import F32, exact_scores, q8_dots, q8_query, top_rows, unit

SELECTIVE_FRACTION = 0.02  # matching fraction below which a filtered search scans exactly
# ...and matching rows up to which it does anyway: scanning 4,096 rows (~2 ms) beats widening a
# graph search until it has k hits among 2% of the rows (~8 ms on 100,000 x 384).
FILTERED_EXACT_ROWS = 4096
NEG = np.float32(-np.inf)
# Rows (or ranked candidates) between two looks at the deadline in the Python loops. A row's
# filter test compares at most IN_VALUES_MAX values: ~1 ms, so a look every ~16 ms at worst.
CHECK_EVERY_ROWS = 16


class Searcher:
    """Stateless planner over a collection; every call reads one `View`."""

    # -- entry point -------------------------------------------------------------------------

    def __init__(self, coll, *, blocking: bool = True, deadline: float | None = None):
        self.c = coll
        self.blocking = blocking
        self.deadline = deadline

    def check(self) -> None:
        """Stop a search past its request's deadline. Its caller has answered 408 and left it
        running in a worker thread: without this, a filter or group over many rows would hold
        that thread (and a search slot) for as long as the data makes it take."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RequestTimeout("search ran past its request's deadline")

    def _checked(self, fn):
        """`fn`, looking at the deadline every CHECK_EVERY_ROWS calls."""
        if self.deadline is None:
            return fn
        calls = [0]

        def checked(row):
            calls[0] += 1
            if not calls[0] % CHECK_EVERY_ROWS:
                self.check()
            return fn(row)

        return checked

    def search(self, vector, k: int, *, predicate=None, group_by: str | None = None, group_limit: int = 1,
               nprobe: int | None = None, ef: int | None = None, live_fast: bool = True,
               ids: set[str] | None = None):
        """[(row, score)] best first, plus the view they refer to (`live_fast=False`: skip the
        all-live graph shortcut, the caller found it does not apply; `ids`: only these may be hits)."""
        c = self.c
        v = c.view
        q = unit(np.asarray(vector, dtype=F32).reshape(-1))
        if v.n == 0 or k <= 0 or v.live_count == 0:
            return v, []
        if (live_fast and predicate is None and group_by is None and c.kind == "HNSW" and v.live_count == v.n
                and v.n > max(c.p.exact_max_rows, k)):
            # Nothing dead, nothing filtered: every graph hit is an answer (the common case).
            parts = c.hnsw.search_all_live(q, k, blocking=self.blocking, ef=ef)
            labels = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            scores = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
            vno = v.cols["vno"][: v.n]
            labels = labels.astype(np.int64)
            rows = np.searchsorted(vno, labels)
            # A graph may still hold labels of rows a compaction removed: then take the general path.
            if len(rows) and int(rows.max()) < v.n and np.array_equal(vno[rows], labels):
                sl = scores.tolist()
                if len(parts) == 1 and all(a > b for a, b in zip(sl, sl[1:])):
                    # One segment answers best first; with no tie the id order changes nothing.
                    return v, [(r, min(x, 1.0)) for r, x in zip(rows.tolist(), sl)]
                return v, top_rows(np.minimum(scores, np.float32(1)), rows, k, self._id_of(v))
        mask, matches = self._mask(v, predicate, ids)
        if matches == 0:
            return v, []
        if group_by is None:
            return v, self._ranked(v, q, k, mask, matches, nprobe, ef)
        if group_limit <= 0:
            return v, []
        want = max(k * group_limit, k) * 2
        key_of = self._checked(lambda r: self._group_key(v, r, group_by))
        while True:
            self.check()
            want = min(want, matches)
            pairs = self._ranked(v, q, want, mask, matches, nprobe, ef)
            exhausted = want >= matches or len(pairs) < want
            out = group(pairs, k, group_limit, key_of, exhausted)
            if out is not None:
                return v, out
            want *= 4

    def _group_key(self, v, row: int, field: str):
        return self.c.group_key(v, row, field, lambda meta: self._group_key_of(meta, row, field))

    @staticmethod
    def _group_key_of(meta, row: int, field: str):
        if isinstance(meta, dict) and field in meta:
            val = meta[field]
            if isinstance(val, (str, int, float, bool)) or val is None:
                return ("v", type(val).__name__ if isinstance(val, bool) else "", val)
            return ("j", orjson.dumps(val, option=orjson.OPT_SORT_KEYS))
        return ("row", row)

    # -- filter ------------------------------------------------------------------------------

    def _mask(self, v, predicate, ids: set[str] | None = None):
        # A copy: the applier clears live flags while searches run, and numpy's boolean indexing
        # and nonzero refuse an array that changes under them.
        live = v.cols["live"][: v.n].astype(bool)
        if ids is not None:  # the rows of the allowed ids, and live
            rows = [r for r in map(v.slot.get, ids) if r is not None and r < v.n]
            allowed = np.zeros(v.n, dtype=bool)
            allowed[np.asarray(rows, dtype=np.int64)] = True
            live &= allowed
        if predicate is None:
            return live, int(v.live_count) if ids is None else int(np.count_nonzero(live))
        pm = self.c.parsed_meta
        clauses = getattr(predicate, "clauses", False)
        if clauses is None:  # a filter that is not an object matches nothing
            return np.zeros(v.n, dtype=bool), 0
        mi = self.c.meta_index(v) if clauses is not False else None  # {} too: object metas
        if mi is not None:
            # Columns answer what they can in numpy; the filter's own tests check the rest,
            # on the rows that are left only.
            mask, rest = mi.evaluate(clauses, v.n, self._checked(lambda r: pm(v, r, keep=False)))
            mask &= live
            if not rest:
                return mask, int(np.count_nonzero(mask))
            rows = np.flatnonzero(mask)
            predicate = Filter(rest)
        else:
            rows = np.flatnonzero(live)
        mask = np.zeros(v.n, dtype=bool)
        metas = v.table.metas
        passes = self._checked(lambda r: metas[r] is not None and predicate(pm(v, r)))
        hits = [r for r in rows.tolist() if passes(r)]
        if hits:
            mask[np.asarray(hits, dtype=np.int64)] = True
        return mask, len(hits)

    # -- planning ----------------------------------------------------------------------------

    def _ranked(self, v, q, k: int, mask, matches: int, nprobe, ef):
        c = self.c
        filtered = matches < v.live_count
        exact = (c.kind == "FLAT" or matches <= max(c.p.exact_max_rows, k)
                 or (filtered and (matches < SELECTIVE_FRACTION * v.live_count or matches <= FILTERED_EXACT_ROWS)))
        want = min(k, matches)
        if not exact and c.kind == "HNSW":
            out = self._hnsw(v, q, k, mask, ef)
            if len(out) >= want:
                return out
        elif not exact and c.kind == "IVF_FLAT_Q8" and v.centroids is not None:
            out = self._ivf(v, q, k, mask, want, nprobe)
            if len(out) >= want:
                return out
        elif not exact and c.disk is not None:  # DISKANN: its graph + mutable segment, once built
            out = c.disk.ranked(v, q, k, mask, self._id_of(v))
            if out is not None and len(out) >= want:
                return out
        return self._exact(v, q, k, mask, matches)

    def _id_of(self, v):
        ids = v.table.ids
        return lambda r: ids[r]

    def _exact(self, v, q, k: int, mask, matches: int):
        c = self.c
        norm = v.cols["norm"]
        if matches * 4 < v.n:
            rows = np.flatnonzero(mask)
            scores = exact_scores(c._rows_f32(v, rows), norm[rows], q)
            return top_rows(scores, rows, k, self._id_of(v))
        # Dense: scan each run file contiguously.
        parts_s = []
        parts_r = []
        for i, start in enumerate(v.starts.tolist()):
            stop = v.starts[i + 1] if i + 1 < len(v.starts) else v.n
            stop = min(int(stop), v.n)
            if stop <= start:
                continue
            block = v.f32[i][: stop - start]
            s = exact_scores(block, norm[start:stop], q)
            m = mask[start:stop]
            parts_s.append(s[m])
            parts_r.append(np.flatnonzero(m) + start)
        if not parts_s:
            return []
        return top_rows(np.concatenate(parts_s), np.concatenate(parts_r), k, self._id_of(v))

    def _rescore(self, v, rows: np.ndarray, q, k: int):
        """Exact scores of distinct candidate rows (IVF positions never repeat a row)."""
        scores = exact_scores(self.c._rows_f32(v, rows), v.cols["norm"][rows], q)
        return top_rows(scores, rows, k, self._id_of(v))

    def _hnsw(self, v, q, k: int, mask, ef):
        c = self.c
        vno = v.cols["vno"][: v.n]

        def accept(labels):
            rows = np.searchsorted(vno, labels)
            ok = rows < v.n
            rows_c = np.where(ok, rows, 0)
            ok &= vno[rows_c] == labels
            ok &= mask[rows_c]
            return ok

        dead = v.n - v.live_count
        filtered = not bool(mask.all()) if dead == 0 else True
        margin = 0 if not filtered else k + 16
        parts = c.hnsw.search(q, k, accept, blocking=self.blocking, ef=ef, margin=margin)
        if not parts:
            return []
        labels = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        if len(labels) == 0:
            return []
        scores = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        rows = np.searchsorted(vno, labels)
        # HNSW reports 1 - distance on the unit vectors it holds: the same float32 cosine.
        return top_rows(np.minimum(scores, np.float32(1)), rows, k, self._id_of(v))

    def _ivf(self, v, q, k: int, mask, want: int, nprobe):
        c = self.c
        lists = v.lists
        qcodes = q8_query(q)
        cs = lists.nearest_lists(qcodes)
        nlist = len(cs)
        probe_n = min(nlist, nprobe or c.p.ivf_nprobe)
        order = None
        lst = v.cols["lst"]
        everything = v.live_count == v.n and bool(mask.all()) if v.n < 65536 else False
        while True:
            if probe_n >= nlist:
                probe = np.arange(nlist)
            elif order is None:
                probe = np.sort(np.argpartition(-cs, probe_n - 1)[:probe_n])  # scan memory in order
            else:
                probe = order[:probe_n]
            pos = lists.positions(probe)
            tail = lists.tail_rows(probe, lst, v.n)
            if everything and lists.csr_rows <= v.n and not len(tail):
                rows, ok, found = None, None, len(pos)  # rows are looked up for the best only
            else:
                rows = lists.order.take(pos)
                if lists.csr_rows > v.n and len(rows):  # a compaction shrank the rows meanwhile
                    keep = rows < v.n
                    pos, rows = pos[keep], rows[keep]
                if len(tail):
                    rows = np.concatenate([rows, tail])
                ok = None if everything else mask[rows]
                found = len(rows) if ok is None else int(ok.sum())
            if found >= want or probe_n >= nlist:
                break
            if order is None:
                order = np.argsort(-cs)
            probe_n = min(nlist, probe_n * 4)
        if found == 0:
            return []
        refine = max(c.p.q8_refine_topk, k)
        if found <= refine:
            cand = lists.order.take(pos) if rows is None else rows if ok is None else rows[ok]
            return self._rescore(v, cand, q, k)
        approx = lists.q8_scores(qcodes, pos)
        if len(tail):
            approx = np.concatenate([approx, q8_dots(qcodes, c._rows_q8(v, tail)) * v.cols["scale"][tail]])
        if ok is not None:
            approx[~ok] = NEG
        best = np.argpartition(-approx, refine - 1)[:refine]
        cand = lists.order.take(pos.take(best)) if rows is None else rows.take(best)
        if ok is not None:
            cand = cand[mask[cand]]
        return self._rescore(v, cand, q, k)


def group(pairs, k: int, group_limit: int, key_of, exhausted: bool):
    """Apply group semantics to ranked (row, score) pairs; None if more candidates are needed."""
    groups: dict = {}
    order: list = []
    for row, score in pairs:
        key = key_of(row)
        g = groups.get(key)
        if g is None:
            g = groups[key] = []
            order.append(key)
        if len(g) < group_limit:
            g.append((row, score))
    out = []
    for key in order:
        g = groups[key]
        if len(g) < group_limit and not exhausted:
            return None  # this group may still gain members from candidates not fetched yet
        out.extend(g)
        if len(out) >= k:
            return out[:k]
    if not exhausted:
        return None
    return out[:k]

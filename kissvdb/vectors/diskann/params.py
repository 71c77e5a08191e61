"""DiskANN parameters: the contract's three (API-CONTRACT §3.8), their clamps, and how each one
maps onto usearch, the library that builds and searches the graph (chosen in docs/BENCHMARKS.md,
"DiskANN: the choice and why").

The contract speaks Vamana: `max_degree` (R, a node's out-degree), `search_list_size` (L, the
beam width of a query) and `build_threads`. usearch builds an HNSW whose base layer holds up to
2 x `connectivity` neighbours per node (upper layers `connectivity`), so:
- `connectivity` = max_degree // 2: the base layer, where a search spends nearly all its steps,
  gets the degree the user asked for (default 48 -> connectivity 24, base degree 48);
- `expansion_add` (the construction beam, Vamana's L_build) = max(128, 2 x max_degree): usearch's
  own default 128 until the degree asks for more, as DiskANN advises L_build >= R;
- `expansion_search` = search_list_size. usearch searches with max(expansion, count), and the
  index asks for RERANK x k candidates, so the breadth is never below what a query needs.
- `build_threads` = usearch's `threads=` for `add` (it releases the GIL while it works).

Never reads the environment: defaults come from the caller (config's DISKANN_* settings).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

MAX_DEGREE_MIN, MAX_DEGREE_MAX = 4, 1024
SEARCH_LIST_MIN, SEARCH_LIST_MAX = 8, 65535
BUILD_THREADS_MIN, BUILD_THREADS_MAX = 1, 1024  # the max: kissvdb's cap on an input the contract leaves open
EXPANSION_ADD_MIN = 128  # usearch's default construction breadth
RERANK = 3  # graph candidates per wanted hit, re-ranked exactly from the float32 rows


@dataclass(frozen=True, slots=True)
class DiskAnnParams:
    max_degree: int = 48
    build_threads: int = max(1, os.cpu_count() or 1)
    search_list_size: int = 64

    def clamped(self) -> "DiskAnnParams":
        """The contract's clamps: max_degree in [4, 1024], build_threads >= 1,
        search_list_size in [8, 65535]; and build_threads <= 1024 (kissvdb's cap)."""
        return DiskAnnParams(
            max_degree=min(max(int(self.max_degree), MAX_DEGREE_MIN), MAX_DEGREE_MAX),
            build_threads=min(max(int(self.build_threads), BUILD_THREADS_MIN), BUILD_THREADS_MAX),
            search_list_size=min(max(int(self.search_list_size), SEARCH_LIST_MIN), SEARCH_LIST_MAX),
        )

    def merged(self, given: dict | None) -> "DiskAnnParams":
        """`given`'s values (a build/tune body; None or absent = keep ours), clamped."""
        given = {k: v for k, v in (given or {}).items() if v is not None and k in FIELDS}
        return DiskAnnParams(**{**asdict(self), **given}).clamped()

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def connectivity(self) -> int:
        return max(2, self.max_degree // 2)

    @property
    def expansion_add(self) -> int:
        return max(EXPANSION_ADD_MIN, 2 * self.max_degree)

    @property
    def expansion_search(self) -> int:
        return self.search_list_size


FIELDS = ("max_degree", "build_threads", "search_list_size")

"""The mutable segment: rows written after the serving build, searched exactly.

Small by design: the index's owner starts a rebuild once `stale_share` passes its threshold, and
the rows move into the next graph. Brute force over a few thousand unit rows costs less than a
graph search, and it is exact, so a write is searchable the moment `upsert` returns.

Storage: one float32 block and one id block grown by doubling, a slot per row; a delete marks
the slot dead (its id leaves `slot_of`) and the block is packed once half of it is dead. A search
reads `n` and the blocks once, so a concurrent append (into slots past `n`) never changes what it
sees; the owner serialises writers (the index's lock).
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
INITIAL_SLOTS = 64


class MutableSegment:
    def __init__(self, dim: int):
        self.dim = dim
        self.ids = np.zeros(INITIAL_SLOTS, np.int64)
        self.rows = np.zeros((INITIAL_SLOTS, dim), F32)
        self.dead = np.zeros(INITIAL_SLOTS, bool)
        self.n = 0
        self.slot_of: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.slot_of)

    def __contains__(self, row_id: int) -> bool:
        return row_id in self.slot_of

    def upsert(self, row_id: int, unit: np.ndarray) -> None:
        slot = self.slot_of.get(row_id)
        if slot is not None:
            self.rows[slot] = unit
            return
        if self.n == len(self.ids):
            self._grow()
        self.ids[self.n] = row_id
        self.rows[self.n] = unit
        self.dead[self.n] = False
        self.slot_of[row_id] = self.n
        self.n += 1

    def delete(self, row_id: int) -> bool:
        slot = self.slot_of.pop(row_id, None)
        if slot is None:
            return False
        self.dead[slot] = True
        if self.n >= 2 * INITIAL_SLOTS and 2 * len(self.slot_of) < self.n:
            self._pack()
        return True

    def items(self):
        """(ids, unit rows) of the live rows, copies."""
        live = np.flatnonzero(~self.dead[: self.n])
        return self.ids[live].copy(), self.rows[live].copy()

    def view(self):
        """(ids, rows, live mask) over the first n slots, as a search sees them."""
        n = self.n
        return self.ids[:n], self.rows[:n], ~self.dead[:n]

    def remap(self, mapping) -> None:
        """Rename row ids: `mapping(ids) -> new ids` (same length)."""
        if self.n == 0:
            return
        new = np.asarray(mapping(self.ids[: self.n].copy()), np.int64)
        ids = self.ids.copy()
        ids[: self.n] = new
        self.ids = ids
        self.slot_of = {int(ids[s]): s for s in range(self.n) if not self.dead[s]}

    def _grow(self) -> None:
        cap = 2 * len(self.ids)
        ids, rows, dead = np.zeros(cap, np.int64), np.zeros((cap, self.dim), F32), np.zeros(cap, bool)
        ids[: self.n], rows[: self.n], dead[: self.n] = self.ids[: self.n], self.rows[: self.n], self.dead[: self.n]
        # New blocks, then swap references: a search holding the old blocks keeps a valid view.
        self.ids, self.rows, self.dead = ids, rows, dead

    def _pack(self) -> None:
        ids, rows = self.items()
        cap = max(INITIAL_SLOTS, 2 * len(ids))
        new_ids, new_rows = np.zeros(cap, np.int64), np.zeros((cap, self.dim), F32)
        new_ids[: len(ids)], new_rows[: len(ids)] = ids, rows
        self.ids, self.rows, self.dead = new_ids, new_rows, np.zeros(cap, bool)
        self.n = len(ids)
        self.slot_of = {int(i): s for s, i in enumerate(ids)}

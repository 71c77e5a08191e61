"""What KV and documents decide against: an LRU cache of durable state plus an in-flight overlay.

- The cache holds only durable state (`applied` is fed durable events in offset order), bounded
  to `cache_items`; a key that is pinned (being loaded or decided) or dirty (applied but not yet
  committed to state.sqlite) is never evicted, so a read never misses a write it should see.
- The overlay holds what queued writes will do (`begin` with the write's token, `finish` when
  the WAL writer resolved it), so a decision sees every write decided before it.
- `current(key)` is the overlay's item if any, else the cache's, with expiry applied.
Synchronous; one owner (the model's actor). Subclasses decide and turn events into items.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice


class CachedState:
    def __init__(self, limits, cache_items: int):
        self.limits = limits
        self.cache_items = cache_items
        self._cache: OrderedDict = OrderedDict()  # key -> durable item or None (absent)
        self._pins: dict = {}  # key -> pin count (loading, or deciding)
        self._dirty: dict = {}  # key -> offset applied but not yet committed to sqlite
        self._inflight: dict = {}  # key -> (item after, token)

    # -- reads ---------------------------------------------------------------------------

    def lookup(self, key):
        """(hit, durable item) from the cache; expiry is the caller's business."""
        try:
            item = self._cache[key]
        except KeyError:
            return False, None
        self._cache.move_to_end(key)
        return True, item

    def missing(self, keys) -> list:
        """Keys a decision would need that are neither cached nor in flight."""
        return [k for k in keys if k not in self._cache and k not in self._inflight]

    def pin(self, keys) -> None:
        for k in keys:
            self._pins[k] = self._pins.get(k, 0) + 1

    def unpin(self, keys) -> None:
        for k in keys:
            n = self._pins.get(k, 0) - 1
            if n <= 0:
                self._pins.pop(k, None)
            else:
                self._pins[k] = n

    def loaded(self, items: dict) -> None:
        """Insert load results for keys pinned before the load was submitted."""
        for key, item in items.items():
            if key not in self._cache:  # a newer apply already put the key here
                self._cache[key] = item
        self._evict()

    def _evict(self) -> None:
        """Drop the least recently used keys past `cache_items`, skipping pinned and dirty ones.

        Looks at the oldest `excess + 64` keys only: this runs on every load and every commit,
        so it must not cost in proportion to the cache (copying every key took tens of ms per
        put once a large cache was full)."""
        excess = len(self._cache) - self.cache_items
        if excess <= 0:
            return
        victims = [k for k in islice(self._cache, excess + 64) if k not in self._pins and k not in self._dirty]
        for key in victims[:excess]:
            del self._cache[key]

    def _current(self, key, now_ms: int):
        if key in self._inflight:
            item = self._inflight[key][0]
        else:
            item = self._cache[key]  # KeyError means the actor forgot to load: a bug
        if item is not None and not item.live(now_ms):
            return None
        return item

    # -- in-flight overlay ---------------------------------------------------------------

    def begin(self, decision, token: object) -> None:
        """`decision` was queued to the WAL; later decisions must see it."""
        self._inflight[decision.key] = (decision.after, token)

    def finish(self, key, token: object) -> None:
        """The write `token` is resolved (durable or failed)."""
        entry = self._inflight.get(key)
        if entry is not None and entry[1] is token:
            del self._inflight[key]

    def drop_inflight(self) -> None:
        """Every queued write failed (WAL write error): forget what they would have done."""
        self._inflight.clear()

    @property
    def inflight_count(self) -> int:
        return len(self._inflight)

    # -- apply -----------------------------------------------------------------------------

    def _applied(self, key, item, offset: int) -> None:
        """A durable event set `key` to `item` (None: deleted); dirty until committed."""
        self._cache[key] = item
        self._cache.move_to_end(key)
        self._dirty[key] = offset

    def committed(self, keys_offsets: list) -> None:
        """state.sqlite committed these applies: the keys may be evicted again."""
        for key, offset in keys_offsets:
            if self._dirty.get(key) == offset:
                del self._dirty[key]
        self._evict()

    def statistics(self) -> dict:
        return {"cached": len(self._cache), "dirty": len(self._dirty), "inflight": len(self._inflight)}

"""The `/search` store at boot: opened (or discarded and rebuilt), then brought to the end of
the WAL with everything else.

Two ways to catch up, chosen before the one recovery pass (kissvdb/recovery.py) starts:
- replay: the store is fed the `_search` collection's events past its applied offset by the
  same pass that feeds every other materializer (`SearchReplay`), so boot still reads the WAL
  tail once;
- rebuild: when the store file is new (deleted, never made, or discarded because it was
  corrupt or of another format) or the WAL no longer holds the offset after its applied one
  (retention dropped it), the store takes no part in the pass; afterwards, once the vector
  collection holding the documents is at the end of the WAL, `rebuild` replaces the store's
  content with the collection's live rows (`SearchStore.reset`).
Never does: read the WAL itself, or touch the vector collection's files.
"""

from __future__ import annotations

import logging
import os

import apsw
import numpy as np

from kissvdb.events import VECTOR_COLLECTION_DELETED, VECTOR_EVENTS, EventRecord

from .changes import SEARCH_COLLECTION, changes, put_of_row
from .store import SearchStore

log = logging.getLogger("kissvdb.search")


def open_store(path: str) -> tuple[SearchStore, bool]:
    """The store at `path` and whether it is fresh (empty, to be rebuilt). A file that cannot
    be opened as our format (corrupt, another version) is discarded: it is only an index of
    what the WAL and the vector collection hold."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fresh = not os.path.exists(path)
    try:
        return SearchStore(path), fresh
    except (ValueError, apsw.Error) as exc:
        log.warning("search index %s cannot be used (%s): discarding it, it is rebuilt from the collection",
                    path, exc)
        SearchStore.discard(path)
        return SearchStore(path), True


def must_rebuild(store: SearchStore, fresh: bool, wal_first_offset: int, wal_last_offset: int) -> bool:
    """Whether the store cannot be caught up by replay: it is new, or the WAL no longer holds
    the offset right after its applied one."""
    if fresh:
        return True
    return store.applied_offset < wal_last_offset and store.applied_offset + 1 < wal_first_offset


class SearchReplay:
    """The store as a materializer of recovery.replay: the `_search` collection's events, one
    store transaction per read batch (with the batch's last offset, so an idle store moves on)."""

    types = frozenset(VECTOR_EVENTS + (VECTOR_COLLECTION_DELETED,))

    def __init__(self, store: SearchStore):
        self.store = store
        self.applied = store.applied_offset
        self.count = 0
        self._records: list[EventRecord] = []

    def feed(self, record: EventRecord) -> None:
        data = record.data
        if type(data) is dict and data.get("collection") == SEARCH_COLLECTION:
            self._records.append(record)

    def flush(self, last: int) -> None:
        records, self._records = self._records, []
        if last > self.store.applied_offset:
            self.count += len(records)
            self.store.apply(last, changes(records))

    def finish(self, upto: int) -> None:
        if upto > self.store.applied_offset:
            self.store.apply(upto, [])


def rebuild(store: SearchStore, collection, offset: int) -> int:
    """Replace the store's content with the live rows of `collection` (None: no documents),
    as applied up to `offset`. Returns how many documents it holds."""
    puts = []
    if collection is not None:
        v = collection.view
        live = v.cols["live"][: v.n]
        off = v.cols["off"]
        for row in np.flatnonzero(live).tolist():
            put = put_of_row(v.table.ids[row], v.table.metas[row], int(off[row]))
            if put is not None:
                puts.append(put)
    store.reset(offset, puts)
    log.info("search index rebuilt from collection %s: %d documents at offset %d", SEARCH_COLLECTION,
             len(puts), offset)
    return len(puts)

"""kissvdb.events.EVENT_TYPES names every event type a module writes, and the dashboard knows
them all (api/static/stream.js), so the Stream panel offers a filter for each."""

from __future__ import annotations

import re
from pathlib import Path

from kissvdb import documents, events
from kissvdb.actors import sql
from kissvdb.vectors import state as vectors

REPO = Path(__file__).resolve().parents[2]


def written_types() -> set[str]:
    found = {events.STATE_UPDATED, events.STATE_DELETED, documents.DOC_UPSERTED, documents.DOC_DELETED,
             sql.SQL_EXEC}
    found |= {value for name, value in vars(vectors).items() if name.startswith("VECTOR_") and type(value) is str
              and value.startswith("vector_")}
    return found


def test_every_written_type_is_listed_once():
    assert len(events.EVENT_TYPES) == len(set(events.EVENT_TYPES))
    assert written_types() == set(events.EVENT_TYPES)


def test_the_dashboard_lists_the_same_types():
    script = (REPO / "api" / "static" / "stream.js").read_text()
    listed = re.search(r"export const EVENT_TYPES = \[(.*?)\];", script, re.S).group(1)
    assert re.findall(r"'([a-z_]+)'", listed) == list(events.EVENT_TYPES)

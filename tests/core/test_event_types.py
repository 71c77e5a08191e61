"""kissvdb.events.EVENT_TYPES names every event type the engine writes (its constants are the only
place event names are spelled), and the dashboard knows them all (api/static/stream.js), so the
Stream panel offers a filter for each."""

from __future__ import annotations

import re
from pathlib import Path

from kissvdb import events

REPO = Path(__file__).resolve().parents[2]


def named_types() -> set[str]:
    """The values of events.py's upper-case string constants that name an event (not CBOR tags)."""
    return {value for name, value in vars(events).items()
            if name.isupper() and type(value) is str and re.fullmatch(r"[a-z]+(_[a-z]+)+", value)}


def test_every_named_type_is_listed_once():
    assert len(events.EVENT_TYPES) == len(set(events.EVENT_TYPES))
    assert named_types() == set(events.EVENT_TYPES)


def test_the_dashboard_lists_the_same_types():
    script = (REPO / "api" / "static" / "stream.js").read_text()
    listed = re.findall(r"'([a-z_]+)'", re.search(r"export const EVENT_TYPES = \[(.*?)\];", script, re.S).group(1))
    assert len(listed) == len(set(listed))
    assert set(listed) == set(events.EVENT_TYPES)

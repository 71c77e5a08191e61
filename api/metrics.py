"""Prometheus text for `/v1/metrics`, and the few counters only the HTTP layer can see.

Owns: `ApiMetrics` (requests answered 500) and `render_prometheus`, which
writes each series as `# TYPE <name> <type>` followed by `<name> <value>` (no HELP, no labels,
as the original). The original's five series are always present: when the engine does not
report one (e.g. `vector_ops_total` before vectors exist), it is written as 0.
Never does: read actor state itself; engine numbers come from `Engine.metrics()` only.
"""

from __future__ import annotations

from dataclasses import dataclass

# The original's series (contract §3.1), which clients may scrape by name.
REQUIRED_SERIES: tuple[tuple[str, str], ...] = (
    ("state_put_total", "counter"),
    ("state_delete_total", "counter"),
    ("vector_ops_total", "counter"),
    ("events_total", "counter"),
    ("sse_clients", "gauge"),
)


@dataclass(slots=True)
class ApiMetrics:
    internal_errors_total: int = 0  # requests answered 500 `internal`: each one is a bug

    def series(self) -> list[tuple[str, str, float]]:
        return [
            ("http_internal_errors_total", "counter", self.internal_errors_total),
        ]


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render_prometheus(
    engine_series: list[tuple[str, str, float]], api_series: list[tuple[str, str, float]]
) -> str:
    """Prometheus text exposition. Engine series win over API series of the same name."""
    seen: dict[str, tuple[str, float]] = {}
    for name, kind, value in engine_series:
        seen.setdefault(name, (kind, value))
    for name, kind, value in api_series:
        seen.setdefault(name, (kind, value))
    for name, kind in REQUIRED_SERIES:
        seen.setdefault(name, (kind, 0))
    lines = []
    for name, (kind, value) in seen.items():
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"

"""A short, seeded schemathesis run against a real `kissvdb serve` and the spec it serves.

The server runs as `kissvdb serve` on 127.0.0.1, port 0, on a fresh data dir; schemathesis reads
its `/openapi.yaml` and runs every phase (the spec's examples, boundary values and wrong methods,
property-based fuzzing, stateful sequences through inferred links) against every operation but
the change stream, which never ends. What is checked and what is left out is the repository's
schemathesis.toml, shared with the long run the README describes; this test only bounds the run
(a fixed seed, derandomized generation, no example database or failure cache, a few examples
per operation), so it is short and sends the same requests on every machine.

A failure is any 5xx but 503/507, a status, content type, header or body the spec does not give
for that route, a request the server never answered (a hang), or a non-zero
`http_internal_errors_total` at the end. The report names the seed, the operation, the check and
the request, so it replays.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, StopReason, events

from kissvdb.config import Settings
from tests.e2e.server import ServerProcess, parse_metrics

CONFIG_PATH = Path(__file__).resolve().parents[2] / "schemathesis.toml"

# The requests sent are a function of these two, the commit and the schemathesis version; set
# them to explore further (README).
SEED = int(os.environ.get("KISSVDB_FUZZ_SEED", "20261207"))
MAX_EXAMPLES = int(os.environ.get("KISSVDB_FUZZ_EXAMPLES", "5"))  # per operation, in each phase
# The server answers every request within its deadline, REQUEST_TIMEOUT_SECS (408 past it); the
# client waits longer, so a request it gives up on was never answered: a hang. The deadline stays
# at its default: a shorter one could turn a slow answer on a loaded box into a 408 the spec does
# not list for that route.
REQUEST_TIMEOUT_S = Settings().request_timeout_secs + 5.0
# A server that left this many requests unanswered will leave more: stop, so a failure is quick.
UNANSWERED_MAX = 3
FUZZ_COLLECTION = {"dim": 2, "metric": "cosine"}  # `fuzz`, from schemathesis.toml's dictionary


@dataclass(frozen=True)
class Finding:
    """One thing the run found, with what it takes to replay it."""

    operation: str
    what: str
    detail: str
    replay: str = ""

    def __str__(self) -> str:
        text = f"{self.operation}: {self.what}\n    {self.detail.strip()}"
        return text + (f"\n    replay: {self.replay.strip()}" if self.replay else "")


def fuzz_config(server: ServerProcess) -> SchemathesisConfig:
    """schemathesis.toml, bounded and pinned for a reproducible run against `server`."""
    config = SchemathesisConfig.from_path(CONFIG_PATH)
    config.update(seed=SEED, max_failures=None)
    config.cache.enabled = False  # replaying an earlier run's failures first would make runs differ
    config.output.sanitization.update(enabled=False)  # the key is this test's own: show it for replay
    project = config.projects.override
    project.update(base_url=server.url(""), headers=server.headers, request_timeout=REQUEST_TIMEOUT_S, workers=1)
    project.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    return config


def described(request) -> str:
    """A recorded request as `METHOD URL`, its headers and the start of its body."""
    headers = {name: ", ".join(values) for name, values in request.headers.items()}
    body = f" body {request.body[:300]!r}" if request.body else ""
    return f"{request.method} {request.uri} headers {headers}{body}"


def findings_of(event: events.EngineEvent) -> list[Finding]:
    """What one engine event says went wrong (nothing, for most events)."""
    if isinstance(event, events.FatalError):
        return [Finding("(run)", "fatal error", repr(event.exception))]
    if isinstance(event, events.NonFatalError):  # e.g. a request the server never answered
        detail = f"{type(event.value).__name__}: {event.value}"
        return [Finding(event.label, "error", detail, event.info.code_sample or "")]
    if isinstance(event, events.EngineFinished) and event.stop_reason != StopReason.COMPLETED:
        return [Finding("(run)", "stopped early", event.stop_reason.value)]
    if not isinstance(event, events.ScenarioFinished):
        return []
    found = [Finding(event.recorder.label, "no answer", "the request below got no response", described(i.request))
             for i in event.recorder.interactions.values() if i.response is None]
    for nodes in event.recorder.checks.values():
        for node in nodes:
            if node.status == Status.FAILURE and node.failure_info is not None:
                failure = node.failure_info.failure
                found.append(Finding(event.recorder.label, f"{node.name}: {failure.title}", failure.message,
                                     node.failure_info.code_sample))
    return found


def run_schemathesis(server: ServerProcess) -> tuple[list[Finding], int]:
    """Run every phase once; (findings, one per operation and kind, and the test cases sent)."""
    schema = schemathesis.openapi.from_url(server.url("/openapi.yaml"), config=fuzz_config(server))
    stream = schemathesis.engine.from_schema(schema).execute()
    found: dict[tuple[str, str], Finding] = {}
    cases = unanswered = 0
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
        if isinstance(event, events.NonFatalError):
            unanswered += 1
            if unanswered == UNANSWERED_MAX:
                stream.stop()
        for finding in findings_of(event):
            found.setdefault((finding.operation, finding.what), finding)
    return list(found.values()), cases


def test_schemathesis_finds_no_server_error_and_no_spec_mismatch(tmp_path):
    with ServerProcess(tmp_path / "data") as server:
        made = httpx.post(server.url("/v1/vector/fuzz"), json=FUZZ_COLLECTION, headers=server.headers, timeout=10)
        assert made.status_code == 200, made.text
        started = time.monotonic()
        findings, cases = run_schemathesis(server)
        elapsed = time.monotonic() - started
        metrics = parse_metrics(httpx.get(server.url("/v1/metrics"), headers=server.headers, timeout=10).text)
        assert server.running(), "the server died during the run"
    print(f"schemathesis: seed {SEED}, {MAX_EXAMPLES} examples per operation, {cases} cases in {elapsed:.1f}s")
    internal = metrics.get("http_internal_errors_total", 0)
    assert not findings and internal == 0, (
        f"schemathesis run with seed {SEED} (KISSVDB_FUZZ_SEED), {MAX_EXAMPLES} examples per operation "
        f"(KISSVDB_FUZZ_EXAMPLES): {len(findings)} finding(s), {internal:.0f} internal error(s) logged "
        f"by the server (its log: {server.log_path})\n\n" + "\n\n".join(map(str, findings))
    )

"""The WAL writer: the only task that appends to the log. Group commit, one fsync per batch.

Loop: take one `WalWrite`, drain whatever else is queued (up to `batch_bytes_max`), assign
offsets, append and fsync once in a worker thread, then publish: set each write's `done`
event (its owner applies and replies) and hand the records to the CDC broadcaster. Neither
call can block, so the writer never waits on an actor or a subscriber.

Failure rules (DESIGN "Write outcome"):
- append (write()) fails, e.g. ENOSPC: the log has cut the batch away, so its writes did not
  happen. They fail with a persistence error (507 for a full disk), the epoch moves on so that
  writes decided on top of them fail too, and a later write may succeed again.
- fsync fails: the outcome of the batch is unknown. Its writes fail with persistence_error
  "outcome unknown", every later write is refused, and `on_fatal` asks the server to stop.
  An fsync is never retried.
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass, field

import trio

from kissvdb.errors import PersistenceError
from kissvdb.events import EventRecord, encode_payload

log = logging.getLogger("kissvdb.wal")


@dataclass(eq=False, slots=True)
class WalWrite:
    """Events one request logs together; resolved as a unit."""

    events: list  # [(ts_ms, type, data)]
    epoch: int
    done: trio.Event = field(default_factory=trio.Event)
    records: list | None = None  # EventRecords once durable
    error: PersistenceError | None = None


@dataclass(frozen=True, slots=True)
class WalStats:
    durable_offset: int
    batches_total: int
    records_total: int
    bytes_total: int
    fsync_total: int
    fsync_seconds_total: float
    batch_records_max: int
    write_errors_total: int
    failed: bool


class _AppendFailed(Exception):
    def __init__(self, cause: OSError):
        self.cause = cause


class WalWriter:
    def __init__(self, wal_log, broadcaster, *, inbox_size: int, batch_bytes_max: int,
                 fsync_delay_s: float = 0.0, on_fatal=None):
        self.log = wal_log
        self.broadcaster = broadcaster
        self.send_channel, self._receive = trio.open_memory_channel(inbox_size)
        self.batch_bytes_max = batch_bytes_max
        self.fsync_delay_s = fsync_delay_s  # injected latency, for group-commit tests and benches
        self.on_fatal = on_fatal
        self.limiter = trio.CapacityLimiter(1)  # log mutations (append/sync/retain) one at a time
        self.durable_offset = wal_log.last_offset
        self.epoch = 0
        self.failed: PersistenceError | None = None
        self._batches = self._records = self._bytes = self._fsyncs = self._write_errors = 0
        self._fsync_seconds = 0.0
        self._batch_max = 0

    def statistics(self) -> WalStats:
        return WalStats(self.durable_offset, self._batches, self._records, self._bytes, self._fsyncs,
                        self._fsync_seconds, self._batch_max, self._write_errors, self.failed is not None)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with self._receive:
            while True:
                try:
                    first = await self._receive.receive()
                except trio.EndOfChannel:
                    return
                batch = [first]
                budget = self.batch_bytes_max
                while budget > 0:
                    try:
                        w = self._receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(w)
                    budget -= 256 * len(w.events)
                await self._commit(batch)

    def _append_and_sync(self, payloads: list[bytes]) -> tuple[int, int, float]:
        try:
            first, last = self.log.append(payloads)
        except PersistenceError:
            raise  # an fsync inside append (segment rotation) failed: outcome unknown
        except OSError as exc:
            raise _AppendFailed(exc) from exc
        if self.fsync_delay_s:
            time.sleep(self.fsync_delay_s)
        t0 = time.perf_counter()
        self.log.sync()  # OSError here is an fsync failure: fail-stop
        return first, last, time.perf_counter() - t0

    async def _commit(self, batch: list[WalWrite]) -> None:
        if self.failed is not None:
            for w in batch:
                self._resolve(w, error=self.failed)
            return
        live = []
        for w in batch:
            if w.epoch != self.epoch:
                self._resolve(w, error=PersistenceError(
                    "failed to persist event: an earlier write failed; retry", status=503))
            else:
                live.append(w)
        if not live:
            return
        payloads = [encode_payload(ts, t, d) for w in live for (ts, t, d) in w.events]
        try:
            first, last, fsync_s = await trio.to_thread.run_sync(
                self._append_and_sync, payloads, limiter=self.limiter)
        except _AppendFailed as failure:
            self._write_errors += 1
            self.epoch += 1
            disk_full = failure.cause.errno == errno.ENOSPC
            log.error("WAL write failed (%s); %d writes rejected, nothing was written", failure.cause, len(live))
            error = PersistenceError(
                "failed to persist event: no space left on device" if disk_full else "failed to persist event",
                status=507 if disk_full else 500)
            for w in live:
                self._resolve(w, error=error)
            return
        except (OSError, PersistenceError) as exc:  # fsync (or its cleanup) failed: fail-stop
            self.failed = PersistenceError("failed to persist event: fsync failed, outcome unknown",
                                           outcome_unknown=True)
            log.critical("WAL fsync failed (%s): refusing all writes and stopping", exc)
            for w in live:
                self._resolve(w, error=self.failed)
            if self.on_fatal is not None:
                self.on_fatal(exc)
            return
        self._batches += 1
        self._fsyncs += 1
        self._fsync_seconds += fsync_s
        self._records += len(payloads)
        self._bytes += sum(map(len, payloads))
        self._batch_max = max(self._batch_max, len(payloads))
        offset = first
        published = []
        for w in live:
            records = []
            for ts, t, d in w.events:
                records.append(EventRecord(offset, ts, t, d))
                offset += 1
            w.records = records
            published.extend(records)
        assert offset - 1 == last, (offset, last)
        self.durable_offset = last
        self.broadcaster.publish(published)
        for w in live:
            w.done.set()

    @staticmethod
    def _resolve(w: WalWrite, *, error: PersistenceError) -> None:
        w.error = error
        w.done.set()

    async def run_locked(self, fn, *args):
        """Run a log mutation (retention) in a thread, serialized with append/sync."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

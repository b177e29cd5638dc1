"""The Recorder: calls in on the hot path, counters, history and series out, off it.

What a call costs the invocation path: ``enter``/``leave`` (an int add each
on a dict) and ``call`` (one list append of the ``Call`` tuple). Everything
else happens in ``drain``, which the flush loop runs on every tick (1 s) and a
scrape or a series read runs before it reads: pending calls become Prometheus
totals (``Totals``), rows of the current minute (``Minute``), history records
and, with a tracer, spans. The flush then writes the records and the minutes
changed since the last write in one batch, trims each function's history to
``history_size`` every ``history_size // 10`` of its records (so a function
holds at most 10 % more than asked between trims), and the series
to the last ``SERIES_SECONDS`` once a minute.

A store out of reach does not stop the server: the batch stays pending (at
most ``max_pending`` records; the oldest go first, counted) and the next tick
retries it; minute rows are kept until written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from ember.lifecycle import Batched, BatchState, Tick
from ember.observe.base import HistoryPage, HistoryQuery, HistoryStore
from ember.observe.records import (
    BUCKETS,
    ERROR,
    SUCCESS,
    TIMEOUT,
    TIMEOUT_ERROR,
    Call,
    InvocationRecord,
    Minute,
    SeriesPoint,
    billed,
    bucket_of,
)

log = logging.getLogger("ember.observe")

Clock = Callable[[], float]
# Spans of drained calls (``tracing.Tracer.export``), given the wall-clock offset.
Export = Callable[[list[Call], float], None]

FLUSH_INTERVAL_SECONDS = 1.0
DRAIN_SLICE = 256  # calls counted between two turns of the event loop (about 1 ms)
MAX_PENDING = 100_000
# A day of minutes and a little more: the console plots the last 24 h.
SERIES_SECONDS = 25 * 3600


class Histogram:
    """Counts per bucket of ``records.DURATION_BOUNDS_MS`` and their sum (ms)."""

    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.sum_ms = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bucket_of(ms)] += 1
        self.sum_ms += ms


@dataclass
class Totals:
    """Everything ``/metrics`` counts since start (per node). Keys are storage keys."""

    # (function, qualifier, outcome) -> calls
    invocations: defaultdict[tuple[str, str, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    durations: defaultdict[str, Histogram] = field(default_factory=lambda: defaultdict(Histogram))
    inits: defaultdict[str, Histogram] = field(default_factory=lambda: defaultdict(Histogram))
    cold_starts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    # (function, reason) -> refused calls
    throttles: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    # The platform's own part of a call: the time before the sandbox ran it, Init excluded.
    overhead: Histogram = field(default_factory=Histogram)
    # Asynchronous invocation, per function.
    received: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    dropped: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    dead_letters: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    destination_failures: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    event_age: Histogram = field(default_factory=Histogram)


@dataclass(slots=True)
class FunctionTotals:
    """One function's counts since start on this node (``Recorder.snapshot``)."""

    function: str
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    cold_starts: int = 0
    concurrent: int = 0  # running now
    durations: list[int] = field(default_factory=list)  # per DURATION_BOUNDS_MS bucket


@dataclass(frozen=True, slots=True)
class RecorderStatistics:
    pending: int  # records drained, not yet written
    written: int  # records written since start
    dropped: int  # records lost: beyond max_pending, or after close
    failed_flushes: int  # flushes the store refused (retried on the next tick)


class Recorder(Batched):
    """See the module docstring. ``node`` names this node in its records. Its life
    (open, run, stop, close) is ``ember.lifecycle.Batched``'s."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        node: str,
        history_size: int,
        clock: Clock = time.time,
        tick: Tick | None = None,
        max_pending: int = MAX_PENDING,
        export: Export | None = None,
    ) -> None:
        if history_size < 1:
            raise ValueError(f"history size {history_size} must keep at least one record")
        super().__init__(tick or (lambda: asyncio.sleep(FLUSH_INTERVAL_SECONDS)), log, "history")
        self._store = store
        self._node = node
        self._history_size = history_size
        self._trim_every = max(1, history_size // 10)
        self._clock = clock
        self._max_pending = max_pending
        self._export = export
        # The hot path's only structures: appended to and counted into, nothing more.
        self._calls: list[Call] = []
        self.inflight: dict[str, int] = {}
        self.totals = Totals()
        # Invariant: in drain order; never longer than max_pending.
        self._records: list[InvocationRecord] = []
        # (function, minute) -> the minute's row; the dirty ones are written next flush.
        self._minutes: dict[tuple[str, int], Minute] = {}
        self._dirty: set[tuple[str, int]] = set()
        self._untrimmed: defaultdict[str, int] = defaultdict(int)
        self._series_trimmed = 0
        self._flushing = asyncio.Lock()
        self._written = self._dropped = 0

    # -- the hot path ---------------------------------------------------------

    def enter(self, function: str) -> int:
        """A call of ``function`` starts running; returns how many now run on this node."""
        inflight = self.inflight
        count = inflight.get(function, 0) + 1
        inflight[function] = count
        return count

    def leave(self, function: str) -> None:
        self.inflight[function] -= 1

    def call(self, call: Call) -> None:
        """A call finished (never blocks, never raises)."""
        self._calls.append(call)

    # -- counted where they happen (not per warm call) -------------------------

    def throttled(self, function: str, reason: str) -> None:
        """A call of ``function`` was refused with 429 for ``reason``."""
        self.totals.throttles[(function, reason)] += 1
        self._minute(function, self._clock()).throttles += 1

    def received(self, function: str) -> None:
        """An Event invoke of ``function`` was accepted (queued)."""
        self.totals.received[function] += 1

    def event_age(self, function: str, seconds: float) -> None:
        """An event is delivered ``seconds`` after it was queued (each attempt)."""
        self.totals.event_age.observe(seconds * 1000)

    def event_dropped(self, function: str) -> None:
        """An event was given up (retries or age exhausted, or its function deleted)."""
        self.totals.dropped[function] += 1

    def dead_lettered(self, function: str) -> None:
        self.totals.dead_letters[function] += 1

    def destination_failed(self, function: str) -> None:
        """A record for ``function``'s OnSuccess/OnFailure destination could not be sent."""
        self.totals.destination_failures[function] += 1

    # -- off the hot path -------------------------------------------------------

    def drain(self) -> None:
        """Turn pending calls into totals, minute rows, records and spans."""
        calls, self._calls = self._calls, []
        if calls:
            self._drain(calls)

    async def _drain_yielding(self) -> None:
        """``drain`` in slices, letting the event loop serve between them: a second's
        calls of a busy node take milliseconds to count, which one slice would hold
        every request for (p99 +3 ms at 1 client on 2 cores)."""
        calls, self._calls = self._calls, []
        for start in range(0, len(calls), DRAIN_SLICE):
            self._drain(calls[start : start + DRAIN_SLICE])
            if start + DRAIN_SLICE < len(calls):
                await asyncio.sleep(0)

    def _drain(self, calls: list[Call]) -> None:
        offset = self._clock() - time.perf_counter()
        for call in calls:
            self._count(call, offset)
        if self._export is not None:
            try:
                self._export(calls, offset)
            except Exception:
                log.exception("exporting the spans of %d calls failed", len(calls))

    def _count(self, call: Call, offset: float) -> None:
        # Runs for every call (in the flush loop): written for speed, one lookup each.
        totals = self.totals
        function = call.function
        duration_ms = (call.finished - call.acquired) * 1000
        bucket = bucket_of(duration_ms)
        if call.failure is None:
            outcome, error_type = SUCCESS, None
        else:
            error_type = _error_type(call.failure)
            outcome = TIMEOUT if error_type == TIMEOUT_ERROR else ERROR
        totals.invocations[(function, call.qualifier, outcome)] += 1
        durations = totals.durations[function]
        durations.counts[bucket] += 1
        durations.sum_ms += duration_ms
        overhead_ms = (call.acquired - call.started) * 1000
        if call.init_ms is not None:
            totals.cold_starts[function] += 1
            totals.inits[function].observe(call.init_ms)
            overhead_ms -= call.init_ms
        totals.overhead.observe(overhead_ms if overhead_ms > 0 else 0.0)
        start = call.started + offset
        minute = self._minute(function, start)
        minute.invocations += 1
        if outcome is not SUCCESS:
            minute.errors += 1
        if call.concurrent > minute.max_concurrency:
            minute.max_concurrency = call.concurrent
        minute.counts()[bucket] += 1
        self._keep(
            InvocationRecord(
                function,
                call.request_id,
                call.version,
                call.origin,
                start,
                duration_ms,
                billed(duration_ms),
                call.init_ms,
                outcome,
                error_type,
                call.memory_size_mb,
                call.memory_used_mb,
                call.sandbox_id,
                call.trace_id,
                self._node,
            )
        )

    def _minute(self, function: str, at: float) -> Minute:
        key = (function, int(at // 60))
        minute = self._minutes.get(key)
        if minute is None:
            minute = self._minutes[key] = Minute(function, key[1])
        self._dirty.add(key)
        return minute

    def _keep(self, record: InvocationRecord) -> None:
        if self._state is BatchState.CLOSED:
            self._dropped += 1
            return
        if len(self._records) >= self._max_pending:
            del self._records[0]
            self._dropped += 1
        self._records.append(record)

    async def flush(self) -> int:
        """Drain, then write the pending records and changed minutes; returns how many
        records were written. On failure both stay pending and the error propagates."""
        async with self._flushing:
            await self._drain_yielding()
            records, self._records = self._records, []
            dirty, self._dirty = self._dirty, set()
            minutes = [self._minutes[key] for key in dirty if key in self._minutes]
            try:
                await self._store.write(records, minutes)
            except BaseException:
                self._records = (records + self._records)[-self._max_pending :]
                self._dirty |= dirty
                raise
            self._written += len(records)
            await self._trim(records)
            return len(records)

    async def _trim(self, records: list[InvocationRecord]) -> None:
        for record in records:
            self._untrimmed[record.function] += 1
        due = [f for f, count in self._untrimmed.items() if count >= self._trim_every]
        if due:
            await self._store.trim(due, self._history_size)
            for function in due:
                del self._untrimmed[function]
        now_minute = int(self._clock() // 60)
        # Rows of minutes that are over and written are no longer needed here.
        for key in [k for k in self._minutes if k[1] < now_minute - 1 and k not in self._dirty]:
            del self._minutes[key]
        if now_minute != self._series_trimmed:
            self._series_trimmed = now_minute
            await self._store.trim_series(int(self._clock()) - SERIES_SECONDS)

    # -- reads (for the API and the console) ------------------------------------

    async def query(self, query: HistoryQuery, fresh: bool = False) -> HistoryPage:
        """Records already written (the last second's may not be yet), newest first; with
        ``fresh``, what is pending is written first, so a call the caller just made is
        listed (the console's history, refreshed after its Test invoke)."""
        if fresh:
            await self._flush_logged()
        return await self._store.query(query)

    async def find(self, request_id: str) -> list[InvocationRecord]:
        """Every record of ``request_id`` (an async event's attempts), newest first; a
        call still pending is written first, so a record the caller just saw is found."""
        await self._flush_logged()
        return await self._store.find(request_id)

    async def series(self, function: str, since: int, until: int) -> list[SeriesPoint]:
        """The per-minute series of ``function`` (a storage key) for [since, until), Unix
        seconds, oldest first, every node's rows merged (``records.SeriesPoint``):
        ``[SeriesPoint(time=1764990000, invocations=12, errors=1, throttles=0,
        p50_ms=5, p99_ms=25, max_concurrency=2), ...]``; minutes without calls
        are absent. Written within the last second, so this node's current minute
        is up to date."""
        await self._flush_logged()
        return await self._store.series(function, since, until)

    def snapshot(self) -> list[FunctionTotals]:
        """Every function's totals since start on this node (``ember top`` diffs two)."""
        self.drain()
        totals = self.totals
        rows: dict[str, FunctionTotals] = {}
        for (function, _, outcome), count in totals.invocations.items():
            row = rows.get(function) or rows.setdefault(function, FunctionTotals(function))
            row.invocations += count
            if outcome != SUCCESS:
                row.errors += count
        for (function, _), count in totals.throttles.items():
            row = rows.get(function) or rows.setdefault(function, FunctionTotals(function))
            row.throttles += count
        for function, row in rows.items():
            row.cold_starts = totals.cold_starts.get(function, 0)
            row.concurrent = self.inflight.get(function, 0)
            histogram = totals.durations.get(function)
            row.durations = list(histogram.counts) if histogram else [0] * BUCKETS
        return sorted(rows.values(), key=lambda row: row.function)

    def statistics(self) -> RecorderStatistics:
        return RecorderStatistics(len(self._records), self._written, self._dropped, self._failed)

    # -- the part's life ----------------------------------------------------------

    async def _open_store(self) -> None:
        await self._store.open()

    async def _close_store(self) -> None:
        await self._store.close()

    def _pending(self) -> int:
        return len(self._records)


def _error_type(body: bytes) -> str:
    """Lambda's errorType of an error body ("Unhandled" when it names none)."""
    try:
        error = orjson.loads(body)
        return str(error["errorType"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "Unhandled"

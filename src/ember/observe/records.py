"""The shapes observability keeps: one call as the service saw it, one stored record,
one minute of a function's series, and the fixed duration buckets they share."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import NamedTuple

# Where an invocation came from (InvokeCommand.origin, InvocationRecord.origin).
ORIGINS = ("sync", "async", "url", "mcp", "schedule", "esm")
# What became of a call that ran. A refused call (429) is a throttle, never a record.
SUCCESS, ERROR, TIMEOUT = "success", "error", "timeout"
OUTCOMES = (SUCCESS, ERROR, TIMEOUT)
TIMEOUT_ERROR = "Sandbox.Timedout"

# Upper bounds (milliseconds) of the per-minute duration histogram; one more bucket
# counts what is above the last. Roughly x2.5 apart: p50/p99 read from it are
# within one bucket's width, which is what a plot of a day needs.
DURATION_BOUNDS_MS: tuple[float, ...] = (
    1,
    2.5,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
)
BUCKETS = len(DURATION_BOUNDS_MS) + 1


class Call(NamedTuple):
    """One finished call, as the invocation service hands it over (built per call:
    a tuple, no work). Times are ``time.perf_counter()`` readings."""

    function: str  # the storage key of the function
    qualifier: str  # what the caller named: "$LATEST", a version or an alias
    version: str  # the version that ran
    request_id: str
    origin: str  # one of ORIGINS
    trace_id: str  # the X-Ray header the sandbox was given ("" : derived from request_id)
    started: float  # the service took the call
    admitted: float  # the throttle admitted it
    acquired: float  # a sandbox was leased (after Init on a cold start)
    finished: float  # the sandbox answered and was released
    init_ms: float | None  # Init's duration on a cold start, else None
    failure: bytes | None  # the error body of a failed call (its errorType is read later)
    memory_size_mb: int
    memory_used_mb: int
    sandbox_id: str
    concurrent: int  # calls of this function in flight on this node, this one included
    # The trace id came from the caller's headers (else ember made it: tracing.fresh).
    trace_given: bool = False


class InvocationRecord(NamedTuple):
    """One stored entry of the invocation history (``GET .../invocations``).

    A tuple, made once per call off the hot path; its fields are the stored columns
    in order (``sql.COLUMNS``), so the stores write it as it is."""

    function: str
    request_id: str
    version: str
    origin: str
    start: float  # Unix seconds
    duration_ms: float  # the sandbox's part: from the lease to the answer
    billed_ms: int  # Lambda's: the duration rounded up to the millisecond
    init_ms: float | None
    outcome: str  # one of OUTCOMES
    error_type: str | None
    memory_size_mb: int
    memory_used_mb: int
    sandbox_id: str
    trace_id: str  # "": the call came without one (``document`` derives the runtime's)
    node: str

    def document(self, iso: str) -> dict[str, object]:
        """The API's JSON shape; ``iso`` is ``start`` rendered by the caller."""
        return {
            "RequestId": self.request_id,
            "FunctionName": self.function,
            "Version": self.version,
            "Origin": self.origin,
            "Start": iso,
            "DurationMs": round(self.duration_ms, 3),
            "BilledDurationMs": self.billed_ms,
            "InitDurationMs": None if self.init_ms is None else round(self.init_ms, 3),
            "Outcome": self.outcome,
            "ErrorType": self.error_type,
            "MemorySizeMB": self.memory_size_mb,
            "MaxMemoryUsedMB": self.memory_used_mb,
            "SandboxId": self.sandbox_id,
            "TraceId": self.trace_id or derived_trace_header(self.request_id, self.start),
            "Node": self.node,
        }


def derived_trace_header(request_id: str, wall_start: float) -> str:
    """The X-Ray header the runtime makes for a call that came without one
    (``runtime/pyloop.py``): the trace id is the start's second and the request id."""
    digits = request_id.replace("-", "")[:24].ljust(24, "0")
    return f"Root=1-{int(wall_start):08x}-{digits}"


def billed(duration_ms: float) -> int:
    return max(1, math.ceil(duration_ms))


def bucket_of(duration_ms: float) -> int:
    """The index of the histogram bucket ``duration_ms`` falls in."""
    return bisect.bisect_left(DURATION_BOUNDS_MS, duration_ms)


def quantile(counts: list[int] | tuple[int, ...], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a bucket histogram, in ms: the upper bound of the
    bucket it falls in (the last bound for the overflow bucket); None when empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return DURATION_BOUNDS_MS[min(index, len(DURATION_BOUNDS_MS) - 1)]
    return DURATION_BOUNDS_MS[-1]


@dataclass(slots=True)
class Minute:
    """One function's calls in one minute on one node, as kept and stored.

    ``minute`` is Unix seconds // 60. ``durations`` has BUCKETS counts (see
    DURATION_BOUNDS_MS). Written whole on every flush (replacing the row of the
    same function, minute and node), so a write is idempotent.
    """

    function: str
    minute: int
    invocations: int = 0  # calls that ran (any outcome)
    errors: int = 0  # of those, failed (error or timeout)
    throttles: int = 0  # calls refused with 429
    max_concurrency: int = 0
    durations: list[int] | None = None

    def counts(self) -> list[int]:
        if self.durations is None:
            self.durations = [0] * BUCKETS
        return self.durations


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One minute of ``HistoryStore.series``: every node's rows of it merged.

    ``time`` is the minute's first second (Unix). ``p50_ms``/``p99_ms`` are read from
    the merged histogram (None without calls). ``max_concurrency`` sums the nodes'
    maxima: the most that can have run at once, exact on one node.
    """

    time: int
    invocations: int
    errors: int
    throttles: int
    p50_ms: float | None
    p99_ms: float | None
    max_concurrency: int

    def document(self) -> dict[str, object]:
        return {
            "Time": self.time,
            "Invocations": self.invocations,
            "Errors": self.errors,
            "Throttles": self.throttles,
            "DurationP50Ms": self.p50_ms,
            "DurationP99Ms": self.p99_ms,
            "MaxConcurrentExecutions": self.max_concurrency,
        }


def merge(minutes: list[Minute]) -> list[SeriesPoint]:
    """Rows of one function (any nodes) into one point per minute, oldest first."""
    by_minute: dict[int, Minute] = {}
    for row in minutes:
        into = by_minute.get(row.minute)
        if into is None:
            by_minute[row.minute] = Minute(
                row.function,
                row.minute,
                row.invocations,
                row.errors,
                row.throttles,
                row.max_concurrency,
                list(row.counts()),
            )
            continue
        into.invocations += row.invocations
        into.errors += row.errors
        into.throttles += row.throttles
        into.max_concurrency += row.max_concurrency
        into.durations = [a + b for a, b in zip(into.counts(), row.counts(), strict=True)]
    return [
        SeriesPoint(
            m.minute * 60,
            m.invocations,
            m.errors,
            m.throttles,
            quantile(m.counts(), 0.5),
            quantile(m.counts(), 0.99),
            m.max_concurrency,
        )
        for _, m in sorted(by_minute.items())
    ]

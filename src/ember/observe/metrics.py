"""``GET /metrics``: the Recorder's totals in Prometheus's text exposition format (0.0.4).

Rendered at scrape time straight from the Recorder's counters: nothing on
the call path touches a metric object. Written here rather than through
prometheus-client's collector model, which builds an object per sample:
with 1,000 functions (about 30,000 samples, most of them histogram buckets)
that took 300 ms and more per scrape, against a budget of 50 ms
(``bench/bench_observability.py``). The tests read the output back with
prometheus-client's own parser. Durations are exported in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import accumulate

from ember.observe.recorder import Histogram, Recorder
from ember.observe.records import DURATION_BOUNDS_MS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Sandboxes by state, from the Worker Manager (``WorkerManager.sandbox_states``).
SandboxCounts = Callable[[], Mapping[str, int]]

# The exported buckets (ms): a subset of the recorded ones, so that a scrape of
# 1,000 functions stays small. Warm calls and ember's cold starts are milliseconds.
DURATION_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 60_000)
INIT_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 1_000, 10_000)
AGE_BUCKETS_MS = (100, 1_000, 10_000, 60_000, 300_000, 900_000)


class _Buckets:
    """Which recorded buckets fold into each exported one, and their ``le`` labels."""

    def __init__(self, bounds_ms: tuple[float, ...]) -> None:
        # Index (in the recorded histogram) of the last bucket each exported one includes.
        self.last = [DURATION_BOUNDS_MS.index(bound) for bound in bounds_ms]
        self.labels = [f'le="{bound / 1000:g}"' for bound in bounds_ms]

    def lines(self, name: str, labels: str, histogram: Histogram) -> Iterable[str]:
        cumulative = list(accumulate(histogram.counts))
        prefix = f"{name}_bucket{{{labels}," if labels else f"{name}_bucket{{"
        for index, le in zip(self.last, self.labels, strict=True):
            yield f"{prefix}{le}}} {cumulative[index]}\n"
        total = cumulative[-1]
        yield f'{prefix}le="+Inf"}} {total}\n'
        braces = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{braces} {histogram.sum_ms / 1000!r}\n"
        yield f"{name}_count{braces} {total}\n"


_DURATIONS = _Buckets(DURATION_BUCKETS_MS)
_INITS = _Buckets(INIT_BUCKETS_MS)
_AGES = _Buckets(AGE_BUCKETS_MS)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Label:
    """``function="..."`` of each function, escaped once (names repeat every scrape)."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def __call__(self, function: str) -> str:
        text = self._cache.get(function)
        if text is None:
            text = self._cache[function] = f'function="{_escape(function)}"'
        return text


def _head(out: list[str], name: str, kind: str, documentation: str) -> None:
    out.append(f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n")


class Exposition:
    """Renders one node's scrape (``render``): see the table in docs/observability.md."""

    def __init__(self, recorder: Recorder, sandboxes: SandboxCounts) -> None:
        self._recorder = recorder
        self._sandboxes = sandboxes
        self._label = _Label()

    def render(self) -> bytes:
        recorder = self._recorder
        recorder.drain()
        out: list[str] = []
        self._calls(out)
        self._per_function(
            out,
            "ember_cold_starts_total",
            "counter",
            "Calls that started a sandbox (Init).",
            recorder.totals.cold_starts,
        )
        self._throttles(out)
        self._per_function(
            out,
            "ember_concurrent_executions",
            "gauge",
            "Calls running now on this node.",
            recorder.inflight,
        )
        _head(out, "ember_sandboxes", "gauge", "Sandboxes on this node by state.")
        for state, count in self._sandboxes().items():
            out.append(f'ember_sandboxes{{state="{_escape(state)}"}} {count}\n')
        name = "ember_overhead_seconds"
        _head(
            out,
            name,
            "histogram",
            "The platform's own part of a call before its sandbox runs it "
            "(throttle, lease, placement; Init excluded).",
        )
        out.extend(_DURATIONS.lines(name, "", recorder.totals.overhead))
        self._asynchronous(out)
        return "".join(out).encode()

    def _calls(self, out: list[str]) -> None:
        totals, label = self._recorder.totals, self._label
        name = "ember_invocations_total"
        _head(out, name, "counter", "Calls that ran, by function, qualifier named and outcome.")
        for (function, qualifier, outcome), count in totals.invocations.items():
            out.append(
                f'{name}{{{label(function)},qualifier="{_escape(qualifier)}",'
                f'outcome="{outcome}"}} {count}\n'
            )
        name = "ember_invocation_duration_seconds"
        _head(out, name, "histogram", "Time the sandbox took to answer a call.")
        for function, histogram in totals.durations.items():
            out.extend(_DURATIONS.lines(name, label(function), histogram))
        name = "ember_init_duration_seconds"
        _head(out, name, "histogram", "Init of a new sandbox, by function.")
        for function, histogram in totals.inits.items():
            out.extend(_INITS.lines(name, label(function), histogram))

    def _throttles(self, out: list[str]) -> None:
        name, label = "ember_throttles_total", self._label
        _head(out, name, "counter", "Calls refused with 429, by function and reason.")
        for (function, reason), count in self._recorder.totals.throttles.items():
            out.append(f'{name}{{{label(function)},reason="{_escape(reason)}"}} {count}\n')

    def _per_function(
        self, out: list[str], name: str, kind: str, documentation: str, counts: Mapping[str, int]
    ) -> None:
        _head(out, name, kind, documentation)
        label = self._label
        out.extend(f"{name}{{{label(function)}}} {count}\n" for function, count in counts.items())

    def _asynchronous(self, out: list[str]) -> None:
        totals = self._recorder.totals
        for name, documentation, counts in (
            ("ember_async_events_received_total", "Event invokes accepted.", totals.received),
            (
                "ember_async_events_dropped_total",
                "Events given up: retries or maximum age exhausted, or function deleted.",
                totals.dropped,
            ),
            ("ember_dead_letters_total", "Events dead-lettered.", totals.dead_letters),
            (
                "ember_destination_delivery_failures_total",
                "Records for an OnSuccess/OnFailure destination that could not be sent.",
                totals.destination_failures,
            ),
        ):
            self._per_function(out, name, "counter", documentation, counts)
        name = "ember_async_event_age_seconds"
        _head(out, name, "histogram", "Time from an event's acceptance to each attempt.")
        out.extend(_AGES.lines(name, "", totals.event_age))

"""``GET /metrics``: the Recorder's totals as Prometheus samples, built at scrape time.

A custom collector (no prometheus-client metric object is touched on the call
path): ``collect`` drains the Recorder and yields one family per metric of
the table in docs/observability.md. Durations are exported in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from ember.observe.recorder import Histogram, Recorder
from ember.observe.records import DURATION_BOUNDS_MS

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Bucket labels, computed once: ``le`` in seconds, then +Inf.
_LE = [f"{bound / 1000:g}" for bound in DURATION_BOUNDS_MS] + ["+Inf"]

# Sandboxes by state, from the Worker Manager (``WorkerManager.statistics``).
SandboxCounts = Callable[[], Mapping[str, int]]


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return list(zip(_LE, accumulate(histogram.counts), strict=True))


def _histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    family.add_metric(labels, _buckets(histogram), histogram.sum_ms / 1000)


class EmberCollector:
    """The prometheus-client collector of one node (``describe`` is empty: the
    families are known only at scrape time)."""

    def __init__(self, recorder: Recorder, sandboxes: SandboxCounts) -> None:
        self._recorder = recorder
        self._sandboxes = sandboxes

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        recorder = self._recorder
        recorder.drain()
        totals = recorder.totals
        invocations = CounterMetricFamily(
            "ember_invocations",
            "Calls that ran, by function, qualifier named and outcome.",
            labels=["function", "qualifier", "outcome"],
        )
        for (function, qualifier, outcome), count in totals.invocations.items():
            invocations.add_metric([function, qualifier, outcome], count)
        yield invocations
        yield from self._per_function_histograms()
        yield _per_function(
            CounterMetricFamily(
                "ember_cold_starts", "Calls that started a sandbox (Init).", labels=["function"]
            ),
            totals.cold_starts,
        )
        throttles = CounterMetricFamily(
            "ember_throttles",
            "Calls refused with 429, by function and reason.",
            labels=["function", "reason"],
        )
        for (function, reason), count in totals.throttles.items():
            throttles.add_metric([function, reason], count)
        yield throttles
        yield _per_function(
            GaugeMetricFamily(
                "ember_concurrent_executions",
                "Calls running now on this node.",
                labels=["function"],
            ),
            recorder.inflight,
        )
        sandboxes = GaugeMetricFamily(
            "ember_sandboxes", "Sandboxes on this node by state.", labels=["state"]
        )
        for state, count in self._sandboxes().items():
            sandboxes.add_metric([state], count)
        yield sandboxes
        overhead = HistogramMetricFamily(
            "ember_overhead_seconds",
            "The platform's own part of a call before its sandbox runs it "
            "(throttle, lease, placement; Init excluded).",
        )
        _histogram(overhead, [], totals.overhead)
        yield overhead
        yield from self._asynchronous()

    def _per_function_histograms(self) -> Iterator[Metric]:
        totals = self._recorder.totals
        durations = HistogramMetricFamily(
            "ember_invocation_duration_seconds",
            "Time the sandbox took to answer a call.",
            labels=["function"],
        )
        for function, histogram in totals.durations.items():
            _histogram(durations, [function], histogram)
        yield durations
        inits = HistogramMetricFamily(
            "ember_init_duration_seconds", "Init of a new sandbox.", labels=["function"]
        )
        for function, histogram in totals.inits.items():
            _histogram(inits, [function], histogram)
        yield inits

    def _asynchronous(self) -> Iterator[Metric]:
        totals = self._recorder.totals
        for name, documentation, counts in (
            ("ember_async_events_received", "Event invokes accepted.", totals.received),
            (
                "ember_async_events_dropped",
                "Events given up: retries or maximum age exhausted, or function deleted.",
                totals.dropped,
            ),
            ("ember_dead_letters", "Events dead-lettered.", totals.dead_letters),
            (
                "ember_destination_delivery_failures",
                "Records for an OnSuccess/OnFailure destination that could not be sent.",
                totals.destination_failures,
            ),
        ):
            yield _per_function(
                CounterMetricFamily(name, documentation, labels=["function"]), counts
            )
        age = HistogramMetricFamily(
            "ember_async_event_age_seconds",
            "Time from an event's acceptance to each attempt to deliver it.",
        )
        _histogram(age, [], totals.event_age)
        yield age


def _per_function(
    family: CounterMetricFamily | GaugeMetricFamily, counts: Mapping[str, int]
) -> CounterMetricFamily | GaugeMetricFamily:
    for function, count in counts.items():
        family.add_metric([function], count)
    return family


class Exposition:
    """The text of one scrape (``render``), from a registry holding only ember's collector."""

    def __init__(self, collector: EmberCollector) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self._registry)

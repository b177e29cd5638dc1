"""GET /metrics's text, read back with Prometheus's own parser."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ember.observe.metrics import Exposition
from ember.observe.recorder import Recorder
from ember.observe.records import Call
from ember.observe.sqlite import SqliteHistoryStore


def call(function: str, duration_s: float, cold: bool = False) -> Call:
    return Call(
        function, "live", "2", "r", "sync", "", 0.0, 0.0, 0.0, duration_s,
        3.0 if cold else None, None, 128, 16, "sb", 1,
    )  # fmt: skip


def test_histograms_are_cumulative_and_labels_escaped(tmp_path: Path) -> None:
    recorder = Recorder(SqliteHistoryStore(tmp_path / "h.sqlite3", "n"), node="n", history_size=5)
    odd = 'we"ird\\name'
    for seconds in (0.0005, 0.003, 0.003, 0.2, 120.0):
        recorder.call(call("f", seconds, cold=seconds == 0.0005))
    recorder.call(call(odd, 0.001))
    recorder.throttled("f", "CallerRateLimitExceeded")
    text = Exposition(recorder, lambda: {"idle": 2, "busy": 1}).render().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    buckets = {
        sample.labels["le"]: sample.value
        for sample in families["ember_invocation_duration_seconds"].samples
        if sample.name.endswith("_bucket") and sample.labels["function"] == "f"
    }
    assert buckets["0.001"] == 1 and buckets["0.005"] == 3 and buckets["0.25"] == 4
    assert buckets["60"] == 4 and buckets["+Inf"] == 5
    values = list(buckets.values())
    assert values == sorted(values)
    (odd_total,) = [s for s in families["ember_invocations"].samples if s.labels["function"] == odd]
    assert odd_total.labels == {"function": odd, "qualifier": "live", "outcome": "success"}
    inits = [s for s in families["ember_init_duration_seconds"].samples if s.name.endswith("count")]
    assert [(s.labels["function"], s.value) for s in inits] == [("f", 1)]
    (throttle,) = families["ember_throttles"].samples
    assert throttle.labels["reason"] == "CallerRateLimitExceeded" and throttle.value == 1
    states = {s.labels["state"]: s.value for s in families["ember_sandboxes"].samples}
    assert states == {"idle": 2, "busy": 1}

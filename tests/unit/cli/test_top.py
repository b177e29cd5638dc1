"""`ember top`'s frame: the difference of two /_ember/top readings."""

from __future__ import annotations

from ember.cli.observe_commands import top_rows

BOUNDS = [1.0, 5.0, 10.0, 50.0]


def reading(time: float, **functions: tuple[int, int, int, list[int]]) -> dict[str, object]:
    return {
        "Time": time,
        "DurationBoundsMs": BOUNDS,
        "Functions": [
            {
                "FunctionName": name,
                "Invocations": calls,
                "Errors": errors,
                "Throttles": 0,
                "ColdStarts": cold,
                "ConcurrentExecutions": 1,
                "DurationBuckets": buckets,
            }
            for name, (calls, errors, cold, buckets) in functions.items()
        ],
    }


def test_a_frame_shows_what_happened_between_two_readings() -> None:
    before = reading(100.0, busy=(10, 1, 1, [5, 5, 0, 0, 0]), idle=(3, 0, 1, [3, 0, 0, 0, 0]))
    after = reading(
        102.0,
        busy=(30, 2, 1, [5, 5, 18, 2, 0]),
        idle=(3, 0, 1, [3, 0, 0, 0, 0]),
        new=(1, 0, 1, [0, 0, 0, 0, 1]),
    )
    rows = {row["function"]: row for row in top_rows(before, after)}
    busy = rows["busy"]
    assert busy["rate"] == 10.0 and busy["errors"] == 1 and busy["cold_starts"] == 0
    assert busy["p50"] == 10.0 and busy["p99"] == 50.0  # 18 calls <= 10 ms, 2 <= 50 ms
    assert rows["idle"]["rate"] == 0.0 and rows["idle"]["p50"] is None
    assert rows["new"]["p50"] == 50.0  # above the last bound: shown as the last bound
    assert top_rows(before, after)[0]["function"] == "busy"  # the busiest first

"""The Recorder over a real SQLite history: batches, outcomes, trimming, bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ember.observe.base import HistoryQuery
from ember.observe.recorder import Recorder
from ember.observe.records import Call
from ember.observe.sqlite import SqliteHistoryStore

NOW = 1_764_990_000.0


def call(n: int, function: str = "f", failure: bytes | None = None, cold: bool = False) -> Call:
    return Call(
        function, "$LATEST", "$LATEST", f"req-{n}", "sync", "", 1.0, 1.0, 1.0, 1.004,
        30.0 if cold else None, failure, 128, 16, "sb", 1,
    )  # fmt: skip


def recorder(tmp_path: Path, **options: int) -> Recorder:
    store = SqliteHistoryStore(tmp_path / "history.sqlite3", "n1")
    return Recorder(store, node="n1", clock=lambda: NOW, **{"history_size": 100, **options})


def test_calls_are_written_together_on_flush_with_their_outcomes(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, list[str]]:
        observed = recorder(tmp_path)
        await observed.open()
        observed.call(call(1, cold=True))
        observed.call(call(2, failure=b'{"errorType":"ValueError","errorMessage":"x"}'))
        observed.call(call(3, failure=b'{"errorType":"Sandbox.Timedout","errorMessage":"t"}'))
        observed.call(call(4, failure=b"not json"))
        before = len((await observed.query(HistoryQuery("f"))).records)
        written = await observed.flush()
        page = await observed.query(HistoryQuery("f"))
        await observed.close()
        return before, written, [f"{r.outcome}:{r.error_type}" for r in page.records]

    before, written, outcomes = asyncio.run(scenario())
    assert before == 0 and written == 4
    assert sorted(outcomes) == [
        "error:Unhandled",
        "error:ValueError",
        "success:None",
        "timeout:Sandbox.Timedout",
    ]


def test_totals_and_minutes_count_what_ran(tmp_path: Path) -> None:
    async def scenario() -> Recorder:
        observed = recorder(tmp_path)
        await observed.open()
        observed.call(call(1, cold=True))
        observed.call(call(2, failure=b'{"errorType":"E"}'))
        observed.throttled("f", "ConcurrentInvocationLimitExceeded")
        await observed.flush()
        await observed.close()
        return observed

    observed = asyncio.run(scenario())
    totals = observed.totals
    assert totals.invocations[("f", "$LATEST", "success")] == 1
    assert totals.invocations[("f", "$LATEST", "error")] == 1
    assert totals.cold_starts["f"] == 1 and sum(totals.durations["f"].counts) == 2
    assert totals.throttles[("f", "ConcurrentInvocationLimitExceeded")] == 1
    (row,) = observed.snapshot()
    assert (row.invocations, row.errors, row.throttles, row.cold_starts) == (2, 1, 1, 1)


def test_each_functions_history_is_trimmed_to_its_size(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        observed = recorder(tmp_path, history_size=5)
        await observed.open()
        for n in range(12):
            observed.call(call(n))
            await observed.flush()
        observed.call(call(99, function="g"))
        await observed.flush()
        kept = len((await observed.query(HistoryQuery("f", limit=100))).records)
        other = len((await observed.query(HistoryQuery("g", limit=100))).records)
        await observed.close()
        return kept, other

    assert asyncio.run(scenario()) == (5, 1)


def test_pending_records_are_bounded_and_the_loss_counted(tmp_path: Path) -> None:
    observed = recorder(tmp_path, max_pending=3)
    for n in range(5):
        observed.call(call(n))
    observed.drain()
    stats = observed.statistics()
    assert (stats.pending, stats.dropped) == (3, 2)

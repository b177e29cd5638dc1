"""One behavioural suite for every history store (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from ember.observe import sql
from ember.observe.base import HistoryQuery, HistoryStore
from ember.observe.postgres import PostgresHistoryStore
from ember.observe.records import BUCKETS, InvocationRecord, Minute
from ember.observe.sqlite import SqliteHistoryStore
from ember.storage.postgres import Database

# Opens a store for the node named.
OpenStore = Callable[[str], AbstractAsyncContextManager[HistoryStore]]


@pytest.fixture(params=["sqlite", "postgresql"])
def history_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens the backend's store inside the test's event loop; every store of one test
    shares the same data (one file, or one database), as the nodes of a cluster do."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""

    @asynccontextmanager
    async def opened(node: str = "n1") -> AsyncIterator[HistoryStore]:
        database = Database(url, min_size=1, max_size=2) if url else None
        store: HistoryStore
        if database is not None:
            await database.open()
            store = PostgresHistoryStore(database, node)
        else:
            store = SqliteHistoryStore(tmp_path / "history.sqlite3", node)
        try:
            await store.open()
            yield store
        finally:
            await store.close()
            if database is not None:
                await database.close()

    return opened


def synchronous(test: Callable[[OpenStore], Awaitable[None]]) -> Callable[[OpenStore], None]:
    """Runs the async scenario ``test`` in its own event loop (no async plugin here)."""

    @functools.wraps(test)
    def run(history_store: OpenStore) -> None:
        asyncio.run(test(history_store))  # type: ignore[arg-type]

    return run


def record(
    start: float,
    function: str = "f",
    outcome: str = "success",
    request_id: str | None = None,
    init_ms: float | None = None,
) -> InvocationRecord:
    return InvocationRecord(
        function,
        request_id or f"req-{function}-{start}",
        "$LATEST",
        "sync",
        start,
        2.5,
        3,
        init_ms,
        outcome,
        None if outcome == "success" else "ValueError",
        128,
        17,
        "sb-1",
        "Root=1-00000000-000000000000000000000000",
        "n1",
    )


def test_a_record_is_written_as_its_columns() -> None:
    assert InvocationRecord._fields == sql.COLUMNS


def durations(**at: int) -> list[int]:
    counts = [0] * BUCKETS
    for index, count in at.items():
        counts[int(index.removeprefix("b"))] = count
    return counts


@synchronous
async def test_records_come_back_whole_newest_first(history_store: OpenStore) -> None:
    cold = record(10.0, init_ms=41.5)
    failed = record(11.0, outcome="error")
    async with history_store("n1") as store:
        await store.write([cold, failed, record(12.0, function="other")], [])
        page = await store.query(HistoryQuery("f"))
    assert page.records == [failed, cold]
    assert page.next is None


@synchronous
async def test_filters_by_time_and_outcome(history_store: OpenStore) -> None:
    async with history_store("n1") as store:
        await store.write(
            [record(float(t), outcome="error" if t % 2 else "success") for t in range(10)], []
        )
        window = await store.query(HistoryQuery("f", since=3, until=7))
        failed = await store.query(HistoryQuery("f", outcomes=("error", "timeout")))
        timeouts = await store.query(HistoryQuery("f", outcomes=("timeout",)))
    assert [r.start for r in window.records] == [6, 5, 4, 3]
    assert [r.start for r in failed.records] == [9, 7, 5, 3, 1]
    assert timeouts.records == []


@synchronous
async def test_pages_continue_without_gaps_or_repeats(history_store: OpenStore) -> None:
    written = [record(float(t // 2), request_id=f"r{t}") for t in range(9)]  # equal starts
    async with history_store("n1") as store:
        await store.write(written, [])
        seen: list[str] = []
        query = HistoryQuery("f", limit=2)
        while True:
            page = await store.query(query)
            seen += [r.request_id for r in page.records]
            if page.next is None:
                break
            query = HistoryQuery("f", limit=2, after=page.next)
    assert sorted(seen) == sorted(r.request_id for r in written)
    assert len(seen) == len(set(seen)) == 9


@synchronous
async def test_find_returns_every_attempt_of_a_request(history_store: OpenStore) -> None:
    async with history_store("n1") as store:
        await store.write([record(1.0, request_id="r"), record(5.0, request_id="r")], [])
        await store.write([record(3.0, request_id="other")], [])
        found = await store.find("r")
        missing = await store.find("nope")
    assert [r.start for r in found] == [5.0, 1.0]
    assert missing == []


@synchronous
async def test_trim_keeps_the_newest_of_each_function(history_store: OpenStore) -> None:
    async with history_store("n1") as store:
        await store.write([record(float(t)) for t in range(10)], [])
        await store.write([record(float(t), function="g") for t in range(3)], [])
        gone = await store.trim(["f", "g"], 4)
        kept = await store.query(HistoryQuery("f"))
        others = await store.query(HistoryQuery("g"))
    assert gone == 6
    assert [r.start for r in kept.records] == [9, 8, 7, 6]
    assert len(others.records) == 3


@synchronous
async def test_series_merges_nodes_and_replaces_a_nodes_minute(history_store: OpenStore) -> None:
    minute = 29_000_000  # Unix minutes
    async with history_store("n1") as one, history_store("n2") as two:
        await one.write([], [Minute("f", minute, 1, 0, 0, 1, durations(b3=1))])
        # The same node's minute, written again whole: replaced, not added.
        await one.write([], [Minute("f", minute, 4, 1, 2, 2, durations(b3=3, b5=1))])
        await two.write([], [Minute("f", minute, 2, 0, 0, 1, durations(b3=2))])
        await two.write([], [Minute("f", minute + 1, 1, 1, 0, 1, durations(b9=1))])
        await two.write([], [Minute("g", minute, 7, 0, 0, 1, durations(b0=7))])
        points = await one.series("f", minute * 60, (minute + 2) * 60)
        first_only = await one.series("f", minute * 60, minute * 60 + 60)
        gone = await two.trim_series((minute + 1) * 60)
        after = await one.series("f", minute * 60, (minute + 2) * 60)
    assert [p.time for p in points] == [minute * 60, (minute + 1) * 60]
    merged = points[0]
    assert (merged.invocations, merged.errors, merged.throttles) == (6, 1, 2)
    assert merged.max_concurrency == 3  # the nodes' maxima summed
    assert merged.p50_ms == 10 and merged.p99_ms == 50  # buckets 3 (<=10 ms) and 5 (<=50 ms)
    assert points[1].p50_ms == 1000  # bucket 9: <= 1 s
    assert len(first_only) == 1
    assert gone == 3
    assert [p.time for p in after] == [(minute + 1) * 60]

"""One behavioural suite for every audit store (SQLite, memory, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from ember.audit.base import AuditQuery, AuditStore, Position
from ember.audit.memory import MemoryAuditStore
from ember.audit.postgres import PostgresAuditStore
from ember.audit.sqlite import SqliteAuditStore
from ember.auth.base import AuditEntry
from ember.storage.postgres import Database

OpenStore = Callable[[], AbstractAsyncContextManager[AuditStore]]


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def audit_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens the backend's store inside the test's event loop; opening again reopens
    the same data (the memory store's survives only within one object)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    memory = MemoryAuditStore()

    @asynccontextmanager
    async def opened() -> AsyncIterator[AuditStore]:
        database = Database(url, min_size=1, max_size=2) if url else None
        store: AuditStore
        if database is not None:
            await database.open()
            store = PostgresAuditStore(database)
        elif request.param == "sqlite":
            store = SqliteAuditStore(tmp_path / "audit.sqlite3")
        else:
            store = memory
        try:
            await store.open()
            yield store
        finally:
            await store.close()
            if database is not None:
                await database.close()

    return opened


def entry(
    time: float,
    account: str = "000000000000",
    action: str = "lambda:CreateFunction",
    allowed: bool = True,
    status: int = 201,
    error: str | None = None,
) -> AuditEntry:
    return AuditEntry(
        time,
        f"req-{time}-{action}",
        f"arn:aws:iam::{account}:root",
        account,
        action,
        f"arn:aws:lambda:us-east-1:{account}:function:f",
        allowed,
        status,
        error,
    )


def times(entries: list[AuditEntry]) -> list[float]:
    return [e.time for e in entries]


def test_entries_come_back_whole_newest_first(audit_store: OpenStore) -> None:
    denied = entry(
        3.5,
        action="lambda:DeleteFunction",
        allowed=False,
        status=403,
        error="AccessDeniedException",
    )

    async def scenario() -> list[AuditEntry]:
        async with audit_store() as store:
            await store.append([entry(1.0), entry(2.0)])
            await store.append([denied])
            await store.append([])  # an empty batch is harmless
            page = await store.query(AuditQuery())
            assert page.next is None
            return page.entries

    entries = asyncio.run(scenario())
    assert times(entries) == [3.5, 2.0, 1.0]
    assert entries[0] == denied  # every field round-trips, the error and Allowed false too
    assert entries[1] == entry(2.0)


def test_query_filters_by_account_and_time(audit_store: OpenStore) -> None:
    async def scenario() -> tuple[list[float], list[float], list[float]]:
        async with audit_store() as store:
            await store.append([entry(t, account="111111111111") for t in (1.0, 2.0, 3.0)])
            await store.append([entry(t, account="222222222222") for t in (1.5, 2.5)])
            mine = await store.query(AuditQuery(account="111111111111"))
            window = await store.query(AuditQuery(since=1.5, until=3.0))
            both = await store.query(AuditQuery(account="222222222222", since=2.0))
            return times(mine.entries), times(window.entries), times(both.entries)

    mine, window, both = asyncio.run(scenario())
    assert mine == [3.0, 2.0, 1.0]
    assert window == [2.5, 2.0, 1.5]  # since inclusive, until exclusive
    assert both == [2.5]


def test_pages_cover_every_entry_once_even_within_one_second(audit_store: OpenStore) -> None:
    # Entries sharing a time are ordered by insertion: a page boundary among them
    # neither repeats nor skips one.
    async def scenario() -> list[list[str]]:
        async with audit_store() as store:
            same = [AuditEntry(5.0, f"same-{i}", "p", "a", "x", "*", True, 200) for i in range(5)]
            await store.append(same)
            await store.append([AuditEntry(4.0, "older", "p", "a", "x", "*", True, 200)])
            pages: list[list[str]] = []
            after: Position | None = None
            while True:
                page = await store.query(AuditQuery(limit=2, after=after))
                pages.append([e.request_id for e in page.entries])
                if page.next is None:
                    return pages
                after = Position.parse(page.next.marker())  # the marker round-trips

    pages = asyncio.run(scenario())
    assert pages == [["same-4", "same-3"], ["same-2", "same-1"], ["same-0", "older"]]


def test_prune_keeps_the_newest_appended(audit_store: OpenStore) -> None:
    async def scenario() -> tuple[int, int, list[float]]:
        async with audit_store() as store:
            await store.append([entry(float(t)) for t in range(10)])
            nothing = await store.prune(50)  # fewer than kept: nothing goes
            gone = await store.prune(3)
            return nothing, gone, times((await store.query(AuditQuery())).entries)

    nothing, gone, left = asyncio.run(scenario())
    assert (nothing, gone, left) == (0, 7, [9.0, 8.0, 7.0])


def test_entries_survive_reopening(audit_store: OpenStore) -> None:
    async def scenario() -> list[float]:
        async with audit_store() as store:
            await store.append([entry(1.0), entry(2.0)])
        async with audit_store() as store:
            await store.append([entry(3.0)])
            return times((await store.query(AuditQuery())).entries)

    assert asyncio.run(scenario()) == [3.0, 2.0, 1.0]


def test_limit_bounds_a_page_and_says_there_is_more(audit_store: OpenStore) -> None:
    async def scenario() -> tuple[list[float], bool, bool]:
        async with audit_store() as store:
            await store.append([entry(float(t)) for t in range(4)])
            first = await store.query(AuditQuery(limit=3))
            exact = await store.query(AuditQuery(limit=4))
            return times(first.entries), first.next is not None, exact.next is None

    assert asyncio.run(scenario()) == ([3.0, 2.0, 1.0], True, True)

"""The PostgreSQL queue as a cluster uses it: several nodes (owners) on one database.

The behaviour every backend shares is in ``tests/contract/test_queue_backends.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from ember.errors import StorageUnavailable
from ember.queue.base import Message, NewEvent
from ember.queue.postgres import PostgresEventQueue
from ember.storage.postgres import Database


def hidden(seconds: float) -> Callable[[str], float]:
    return lambda function: seconds


async def eventually(condition: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Await ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := await condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return value


@contextlib.asynccontextmanager
async def node(url: str, owner: str) -> AsyncIterator[PostgresEventQueue]:
    """One node: its own pool on the shared database and its queue, opened."""
    database = Database(url, min_size=1, max_size=4)
    await database.open()
    queue = PostgresEventQueue(database, owner=owner)
    try:
        await queue.open()
        yield queue
    finally:
        await queue.close()
        await database.close()


async def drain(
    queue: PostgresEventQueue, mine: list[Message], everyone: list[Message], total: int
) -> None:
    """Lease (never ack) until ``total`` messages are leased across every draining node."""
    while len(everyone) < total:
        taken = await queue.receive(7, hidden(3600), wait=0.05)
        mine.extend(taken)
        everyone.extend(taken)


def test_two_nodes_never_lease_the_same_message(postgres_url: str) -> None:
    async def scenario() -> None:
        async with node(postgres_url, "a") as a, node(postgres_url, "b") as b:
            # One event per call, all at once: the calls share group commits.
            await asyncio.gather(
                *(a.enqueue([NewEvent(f"f{i % 3}", f"r-{i}", b"{}")]) for i in range(300))
            )
            by_a: list[Message] = []
            by_b: list[Message] = []
            everyone: list[Message] = []
            await asyncio.wait_for(
                asyncio.gather(
                    *(drain(a, by_a, everyone, 300) for _ in range(3)),
                    *(drain(b, by_b, everyone, 300) for _ in range(3)),
                ),
                60,
            )
            ids_a, ids_b = {m.id for m in by_a}, {m.id for m in by_b}
            assert len(ids_a) == len(by_a) and len(ids_b) == len(by_b)
            assert not ids_a & ids_b
            assert len(ids_a | ids_b) == 300
            assert {m.request_id for m in by_a + by_b} == {f"r-{i}" for i in range(300)}
            assert await a.receive(10, hidden(30)) == []
            assert await b.receive(10, hidden(30)) == []

    asyncio.run(scenario())


def test_reopening_releases_only_this_owners_leases(postgres_url: str) -> None:
    async def scenario() -> None:
        async with node(postgres_url, "a") as a:
            await a.enqueue([NewEvent("f", "r-0", b"{}")])
            (first,) = await a.receive(1, hidden(3600))  # a is "killed" while delivering it
        async with node(postgres_url, "b") as b:
            assert await b.receive(1, hidden(30)) == []  # a may still be delivering it
        async with node(postgres_url, "a") as again:
            (back,) = await again.receive(1, hidden(30))
            assert (back.id, back.request_id) == (first.id, "r-0")
            assert await again.ack(first) is False  # the old incarnation's receipt is stale
            assert await again.ack(back) is True

    asyncio.run(scenario())


def test_an_accept_on_one_node_wakes_a_receiver_waiting_on_another(postgres_url: str) -> None:
    async def scenario() -> None:
        async with node(postgres_url, "a") as a, node(postgres_url, "b") as b:
            waiting = asyncio.ensure_future(b.receive(1, hidden(30), wait=60))
            await eventually(lambda: _listening(postgres_url, 2))
            await a.enqueue([NewEvent("f", "r-0", b"{}")])
            taken = await asyncio.wait_for(waiting, 30)
            assert [m.request_id for m in taken] == ["r-0"]

    asyncio.run(scenario())


async def _listening(url: str, nodes: int) -> bool:
    """Whether ``nodes`` listeners are connected (their LISTEN is the last thing they ran)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        )
        row = await cursor.fetchone()
        return row is not None and row[0] >= nodes


def test_a_connection_killed_mid_accept_fails_the_accept(postgres_url: str) -> None:
    async def scenario() -> None:
        async with node(postgres_url, "a") as a:
            await a.enqueue([NewEvent("f", "before", b"{}")])  # the schema exists
            async with await psycopg.AsyncConnection.connect(postgres_url) as blocker:
                # Holds the table so that the accept's INSERT waits, in flight, on the server.
                await blocker.execute("LOCK TABLE queue_events IN EXCLUSIVE MODE")
                accept = asyncio.ensure_future(a.enqueue([NewEvent("f", "lost", b"{}")]))
                pid = await eventually(lambda: _waiting_insert(postgres_url))
                await blocker.execute("SELECT pg_terminate_backend(%s)", (pid,))
                with pytest.raises(StorageUnavailable):
                    await asyncio.wait_for(accept, 30)
                await blocker.rollback()
            await a.enqueue([NewEvent("f", "after", b"{}")])  # the writer recovers
            taken = await a.receive(10, hidden(30))
            assert sorted(m.request_id for m in taken) == ["after", "before"]

    asyncio.run(scenario())


async def _waiting_insert(url: str) -> int | None:
    """The pid of a backend whose INSERT into the queue waits on a lock, if one does."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE '%%INSERT INTO queue_events%%'"
        )
        row = await cursor.fetchone()
        return None if row is None else int(row[0])


def test_a_closed_queue_still_answers_the_accepts_it_took(postgres_url: str) -> None:
    async def scenario() -> None:
        async with node(postgres_url, "a") as a:
            accepts = [
                asyncio.ensure_future(a.enqueue([NewEvent("f", f"r-{i}", b"{}")]))
                for i in range(50)
            ]
            await asyncio.sleep(0)  # every accept is handed to the writer
            await a.close()
            await asyncio.gather(*accepts)
        async with node(postgres_url, "a") as again:
            taken = await again.receive(100, hidden(30))
            assert len(taken) == 50

    asyncio.run(scenario())

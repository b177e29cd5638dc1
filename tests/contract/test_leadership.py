"""Singleton duties on a real PostgreSQL: two nodes compete for one duty; one runs it,
and the other takes over when the holder's session ends or its hold is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
from pg_sessions import eventually, session_pids, terminate

from ember.storage.pg_leadership import PostgresLeadership, lock_key
from ember.storage.pg_session import session_name
from ember.storage.postgres import Database

DUTY = "controller"


@dataclass
class Duty:
    """Work that runs until cancelled, recording who runs it and the most at once."""

    running: set[str] = field(default_factory=set)
    most_at_once: int = 0

    def work(self, node: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.running.add(node)
            self.most_at_once = max(self.most_at_once, len(self.running))
            try:
                await asyncio.Event().wait()
            finally:
                self.running.discard(node)

        return run


@dataclass
class Contender:
    name: str
    database: Database
    leadership: PostgresLeadership
    hold: asyncio.Task[None]

    @property
    def session(self) -> str:
        return session_name(self.database, f"duty {DUTY}")


@asynccontextmanager
async def contenders(url: str, duty: Duty) -> AsyncIterator[dict[str, Contender]]:
    """Nodes "a" and "b" holding DUTY; a short retry interval keeps the test quick."""
    members: dict[str, Contender] = {}
    for name in ("a", "b"):
        database = Database(url)  # leadership needs no pool: its sessions are its own
        leadership = PostgresLeadership(database, retry_seconds=0.2)
        hold = asyncio.create_task(leadership.hold(DUTY, duty.work(name)))
        members[name] = Contender(name, database, leadership, hold)
    try:
        yield members
    finally:
        for member in members.values():
            member.hold.cancel()
        await asyncio.gather(*(m.hold for m in members.values()), return_exceptions=True)


async def tried_and_lost(url: str, loser: Contender) -> bool:
    """The loser's session has asked for the lock at least once and been refused."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT query, state FROM pg_stat_activity WHERE application_name = %s",
            (loser.session,),
        )
        row = await cursor.fetchone()
    return row is not None and "pg_try_advisory_lock" in row[0] and row[1] == "idle"


def test_the_lock_key_is_stable_across_releases() -> None:
    # Nodes of different versions must agree on the key of each duty.
    assert lock_key(DUTY) == lock_key("controller") == -1140166483132733120
    assert lock_key("schedules") != lock_key(DUTY)


def test_one_node_runs_the_duty(postgres_url: str) -> None:
    async def scenario() -> None:
        duty = Duty()
        async with contenders(postgres_url, duty) as nodes:
            await eventually(lambda: len(duty.running) == 1)
            (winner,) = duty.running
            loser = nodes["b" if winner == "a" else "a"]
            await eventually(lambda: tried_and_lost(postgres_url, loser))
            assert duty.running == {winner}
            assert nodes[winner].leadership.held() == {DUTY}
            assert loser.leadership.held() == set()
            assert duty.most_at_once == 1

    asyncio.run(scenario())


def test_the_other_node_takes_over_when_the_holders_session_ends(postgres_url: str) -> None:
    async def scenario() -> None:
        duty = Duty()
        async with contenders(postgres_url, duty) as nodes:
            await eventually(lambda: len(duty.running) == 1)
            (first,) = duty.running
            other = "b" if first == "a" else "a"

            async def moved() -> bool:
                # Ending the session frees the lock; the first node may still win it back
                # before the other's next attempt, so end it until the duty has moved,
                # as it would for a node that stays down.
                if other in duty.running:
                    return True
                for pid in await session_pids(postgres_url, nodes[first].session):
                    await terminate(postgres_url, pid)
                return False

            await eventually(moved)
            # The first node's work is cancelled; it competes again and loses.
            await eventually(lambda: duty.running == {other})
            await eventually(lambda: nodes[first].leadership.held() == set())
            await eventually(lambda: tried_and_lost(postgres_url, nodes[first]))
            assert first not in duty.running

    asyncio.run(scenario())


def test_the_other_node_takes_over_when_the_hold_is_cancelled(postgres_url: str) -> None:
    async def scenario() -> None:
        duty = Duty()
        async with contenders(postgres_url, duty) as nodes:
            await eventually(lambda: len(duty.running) == 1)
            (first,) = duty.running
            nodes[first].hold.cancel()
            await asyncio.gather(nodes[first].hold, return_exceptions=True)
            assert first not in duty.running  # its work was cancelled with the hold
            assert await session_pids(postgres_url, nodes[first].session) == []
            await eventually(lambda: len(duty.running) == 1 and first not in duty.running)

    asyncio.run(scenario())

"""One behavioural suite for the worker table (memory, PostgreSQL).

Silence is the backend's own clock's: the memory table's injected clock is
moved forward, the PostgreSQL row's heartbeat is moved back by the same amount
(so a test ages one worker only before it registers the others).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from ember.scheduling.base import SILENCE_SECONDS, Membership, WorkerInfo, WorkerLoad
from ember.scheduling.membership_memory import MemoryMembership
from ember.scheduling.membership_postgres import MIGRATION, PostgresMembership
from ember.storage.postgres import Database


@dataclass
class Table:
    """A membership under test and a way to let ``seconds`` pass since a worker's heartbeat."""

    membership: Membership
    age: Callable[[str, float], Awaitable[None]]


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


OpenTable = Callable[[], AbstractAsyncContextManager[Table]]


@pytest.fixture(params=["memory", "postgresql"])
def table(request: pytest.FixtureRequest) -> OpenTable:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""

    @asynccontextmanager
    async def opened() -> AsyncIterator[Table]:
        if not url:
            clock = Clock()

            async def advance(worker_id: str, seconds: float) -> None:
                clock.now += seconds

            yield Table(MemoryMembership(clock), advance)
            return
        database = Database(url, min_size=1, max_size=2)
        await database.open()
        await database.migrate(MIGRATION)

        async def age(worker_id: str, seconds: float) -> None:
            async with database.pool.connection() as conn:
                await conn.execute(
                    "UPDATE workers SET heartbeat = heartbeat - make_interval(secs => %s) "
                    "WHERE worker_id = %s",
                    (seconds, worker_id),
                )

        try:
            yield Table(PostgresMembership(database), age)
        finally:
            await database.close()

    return opened


def worker(worker_id: str = "w1", **changes: object) -> WorkerInfo:
    fields: dict[str, object] = {
        "worker_id": worker_id,
        "address": "10.77.0.2:9901",
        "memory_mb": 4096,
        "max_sandboxes": 8,
        "runtimes": ("python3.11", "provided.al2023"),
        "isolation": "full",
    }
    return WorkerInfo(**{**fields, **changes})  # type: ignore[arg-type]


def run(test: Callable[[Table], Awaitable[None]], opened: OpenTable) -> None:
    async def main() -> None:
        async with opened() as t:
            await test(t)

    asyncio.run(main())


def test_a_registered_worker_is_listed_as_it_described_itself(table: OpenTable) -> None:
    async def check(t: Table) -> None:
        await t.membership.register(worker(load=WorkerLoad(2, 1, 256, 128)))
        [listed] = await t.membership.workers()
        assert listed.worker_id == "w1"
        assert listed.address == "10.77.0.2:9901"
        assert (listed.memory_mb, listed.max_sandboxes) == (4096, 8)
        assert listed.runtimes == ("python3.11", "provided.al2023")
        assert listed.isolation == "full"
        assert listed.load == WorkerLoad(2, 1, 256, 128)
        assert not listed.draining
        assert 0.0 <= listed.silence < 1.0
        assert listed.started.startswith("20")

    run(check, table)


def test_workers_are_listed_by_id(table: OpenTable) -> None:
    async def check(t: Table) -> None:
        for name in ("w3", "w1", "w2"):
            await t.membership.register(worker(name))
        assert [w.worker_id for w in await t.membership.workers()] == ["w1", "w2", "w3"]

    run(check, table)


def test_silence_grows_and_a_heartbeat_resets_it_with_the_load(
    table: OpenTable,
) -> None:
    async def check(t: Table) -> None:
        await t.membership.register(worker())
        await t.age("w1", SILENCE_SECONDS + 2)
        await t.membership.register(worker("w2"))
        silences = {w.worker_id: w.silence for w in await t.membership.workers()}
        assert silences["w1"] >= SILENCE_SECONDS + 2
        assert silences["w2"] < SILENCE_SECONDS
        assert await t.membership.heartbeat("w1", WorkerLoad(3, 2, 384, 256)) is False
        [w1, _] = await t.membership.workers()
        assert w1.silence < SILENCE_SECONDS
        assert w1.load == WorkerLoad(3, 2, 384, 256)

    run(check, table)


def test_a_drained_worker_learns_it_from_its_heartbeat(table: OpenTable) -> None:
    async def check(t: Table) -> None:
        await t.membership.register(worker())
        await t.membership.register(worker("w2"))
        assert await t.membership.drain("w1") is True
        assert await t.membership.heartbeat("w1", WorkerLoad()) is True
        assert await t.membership.heartbeat("w2", WorkerLoad()) is False
        assert [w.draining for w in await t.membership.workers()] == [True, False]
        assert await t.membership.drain("w1") is True  # again: still draining, no error

    run(check, table)


def test_draining_an_unknown_worker_says_so(table: OpenTable) -> None:
    async def check(t: Table) -> None:
        await t.membership.register(worker())
        assert await t.membership.drain("nobody") is False
        assert [w.draining for w in await t.membership.workers()] == [False]

    run(check, table)


def test_a_restarted_worker_registers_again_fresh_and_not_draining(
    table: OpenTable,
) -> None:
    async def check(t: Table) -> None:
        await t.membership.register(worker(load=WorkerLoad(5, 5, 640, 640)))
        await t.membership.drain("w1")
        await t.age("w1", 60)
        await t.membership.register(worker(address="10.77.0.9:9901", memory_mb=2048))
        [listed] = await t.membership.workers()
        assert (listed.address, listed.memory_mb) == ("10.77.0.9:9901", 2048)
        assert not listed.draining
        assert listed.silence < SILENCE_SECONDS
        assert listed.load == WorkerLoad()

    run(check, table)


def test_a_worker_that_left_must_register_again(table: OpenTable) -> None:
    async def check(t: Table) -> None:
        await t.membership.register(worker())
        await t.membership.register(worker("w2"))
        await t.membership.leave("w1")
        await t.membership.leave("w1")  # idempotent
        assert [w.worker_id for w in await t.membership.workers()] == ["w2"]
        assert await t.membership.heartbeat("w1", WorkerLoad()) is None
        assert await t.membership.drain("w1") is False

    run(check, table)

"""AuditLog's flush loop, driven by hand: ticks are released by the test, never slept."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ember.audit.base import AuditQuery
from ember.audit.log import AuditLog
from ember.audit.memory import MemoryAuditStore
from ember.auth.base import AuditEntry
from ember.errors import StorageUnavailable


class Ticks:
    """The flush interval, by hand: each ``release()`` ends one wait of the loop."""

    def __init__(self) -> None:
        self._released: asyncio.Queue[None] = asyncio.Queue()
        self.waiting = 0

    async def __call__(self) -> None:
        self.waiting += 1
        await self._released.get()

    def release(self) -> None:
        self._released.put_nowait(None)


class FlakyStore(MemoryAuditStore):
    """A memory store that refuses appends while ``down``, and counts its batches."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.batches: list[int] = []

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        if self.down:
            raise StorageUnavailable("The audit database cannot be reached.")
        self.batches.append(len(entries))
        await super().append(entries)


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        float(n),
        f"req-{n}",
        "arn:aws:iam::000000000000:root",
        "000000000000",
        "lambda:CreateFunction",
        "*",
        True,
        201,
    )


async def stored(store: MemoryAuditStore) -> list[str]:
    page = await store.query(AuditQuery(limit=1000))
    return [e.request_id for e in reversed(page.entries)]


async def settle() -> None:
    """Let every ready task run until it blocks again (no wall-clock wait)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_tick_writes_what_was_recorded_since_the_last() -> None:
    async def scenario() -> None:
        store, ticks = FlakyStore(), Ticks()
        audit = AuditLog(store, retention=100, tick=ticks)
        await audit.open()
        loop = asyncio.create_task(audit.run())
        audit.record(entry(1))
        audit.record(entry(2))
        await settle()
        assert await stored(store) == []  # record only enqueues
        ticks.release()
        await settle()
        assert await stored(store) == ["req-1", "req-2"]
        assert store.batches == [2]  # one write for the batch
        audit.stop()
        await loop
        await audit.close()

    asyncio.run(scenario())


def test_a_full_batch_is_written_without_waiting_for_the_tick() -> None:
    async def scenario() -> None:
        store, ticks = FlakyStore(), Ticks()
        audit = AuditLog(store, retention=100, batch_size=3, tick=ticks)
        await audit.open()
        loop = asyncio.create_task(audit.run())
        for n in range(3):
            audit.record(entry(n))
        await settle()
        assert await stored(store) == ["req-0", "req-1", "req-2"]
        audit.stop()
        await loop
        await audit.close()

    asyncio.run(scenario())


def test_close_writes_what_is_pending_and_stop_ends_the_loop() -> None:
    async def scenario() -> None:
        store, ticks = FlakyStore(), Ticks()
        audit = AuditLog(store, retention=100, tick=ticks)
        await audit.open()
        loop = asyncio.create_task(audit.run())
        await settle()
        audit.record(entry(1))
        audit.stop()
        await loop  # returns without a tick
        audit.record(entry(2))  # a request finishing during shutdown is still kept
        await audit.close()
        assert await stored(store) == ["req-1", "req-2"]
        audit.record(entry(3))  # after close: dropped, counted
        assert audit.statistics().dropped == 1
        await audit.close()  # idempotent

    asyncio.run(scenario())


def test_an_unreachable_store_keeps_the_batch_for_the_next_tick() -> None:
    async def scenario() -> None:
        store, ticks = FlakyStore(), Ticks()
        audit = AuditLog(store, retention=100, tick=ticks)
        await audit.open()
        loop = asyncio.create_task(audit.run())
        store.down = True
        audit.record(entry(1))
        ticks.release()
        await settle()
        assert not loop.done()  # the loop survives the failure
        assert audit.statistics().failed_flushes == 1
        audit.record(entry(2))
        store.down = False
        ticks.release()
        await settle()
        assert await stored(store) == ["req-1", "req-2"]  # in record order
        assert audit.statistics().pending == 0
        audit.stop()
        await loop
        await audit.close()

    asyncio.run(scenario())


def test_pending_entries_are_bounded_dropping_the_oldest() -> None:
    async def scenario() -> None:
        store = FlakyStore()
        audit = AuditLog(store, retention=100, max_pending=3, tick=Ticks())
        await audit.open()
        for n in range(5):
            audit.record(entry(n))
        await audit.close()
        assert await stored(store) == ["req-2", "req-3", "req-4"]
        assert audit.statistics().dropped == 2

    asyncio.run(scenario())


def test_flushes_prune_to_the_newest_retention_entries() -> None:
    async def scenario() -> None:
        store = FlakyStore()
        await store.append([entry(n) for n in range(10)])  # from an earlier run
        audit = AuditLog(store, retention=4, tick=Ticks())
        await audit.open()  # pruned at start: the retention may have shrunk
        assert await stored(store) == ["req-6", "req-7", "req-8", "req-9"]
        audit.record(entry(10))
        audit.record(entry(11))
        await audit.flush()
        assert await stored(store) == ["req-8", "req-9", "req-10", "req-11"]
        await audit.close()

    asyncio.run(scenario())

"""The Worker Manager's pools, placement and keep-alive, with an injected clock."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from ember.control.models import FunctionRecord
from ember.errors import TooManyRequests
from ember.scheduling.manager import SlotState, WorkerManager
from ember.scheduling.placement import Placement

_ids = itertools.count()


@dataclass
class StubSandbox:
    """Just enough of a sandbox for pool bookkeeping (no process)."""

    sandbox_id: str = field(default_factory=lambda: f"sb{next(_ids)}")
    pid: int = 0
    init_ms: float = 1.0
    init_log: bytes = b""
    destroyed: bool = False
    frozen: bool = False

    @property
    def alive(self) -> bool:
        return not self.destroyed

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def destroy(self) -> None:
        self.destroyed = True


@dataclass
class StubWorker:
    memory_mb: int = 1024
    max_sandboxes: int = 100
    started: list[StubSandbox] = field(default_factory=list)
    provisioned: int = 0

    async def start_sandbox(self, record: FunctionRecord, provisioned: bool = False) -> StubSandbox:
        sandbox = StubSandbox()
        self.started.append(sandbox)
        self.provisioned += provisioned
        return sandbox


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(name: str = "f", revision: str = "r1", memory: int = 128) -> FunctionRecord:
    return FunctionRecord(
        name,
        "python3.11",
        "app.handler",
        "role",
        "",
        3,
        memory,
        None,
        "sha",
        "d" * 64,
        1,
        "t",
        revision,
    )


def _manager(worker: StubWorker, keep_alive: float = 60) -> tuple[WorkerManager, Clock]:
    clock = Clock()
    placement: Any = Placement([worker])  # type: ignore[list-item]
    return WorkerManager(placement, keep_alive, clock), clock


def test_warm_reuse_and_one_call_per_sandbox() -> None:
    async def scenario() -> None:
        worker = StubWorker()
        manager, _ = _manager(worker)
        first = await manager.acquire(_record())
        second = await manager.acquire(_record())  # the first is busy: a new sandbox
        assert first.sandbox is not second.sandbox
        manager.release(first, reusable=True)
        again = await manager.acquire(_record())
        assert again.sandbox is first.sandbox and not again.fresh
        assert len(worker.started) == 2

    asyncio.run(scenario())


def test_unhealthy_and_retired_slots_are_destroyed() -> None:
    async def scenario() -> None:
        manager, _ = _manager(StubWorker())
        slot = await manager.acquire(_record())
        manager.release(slot, reusable=False)
        assert slot.state is SlotState.DEAD and slot.sandbox.destroyed  # type: ignore[attr-defined]
        busy = await manager.acquire(_record())
        idle = await manager.acquire(_record())
        manager.release(idle, reusable=True)
        manager.retire("f")
        assert idle.state is SlotState.DEAD
        manager.release(busy, reusable=True)  # retired while busy: dies on release
        assert busy.state is SlotState.DEAD
        assert manager.statistics()["sandboxes"] == 0

    asyncio.run(scenario())


def test_retire_spares_the_revisions_that_still_run() -> None:
    """Updating $LATEST retires its sandboxes, not those of published versions."""

    async def scenario() -> None:
        manager, _ = _manager(StubWorker())
        latest, version = _record(), replace(_record(), version="1", revision_id="r-v1")
        slots = [await manager.acquire(latest), await manager.acquire(version)]
        for slot in slots:
            manager.release(slot, reusable=True)
        manager.retire("f", keep={"r-v1", "a-new-latest-revision"})
        assert [slot.state for slot in slots] == [SlotState.DEAD, SlotState.IDLE]
        assert await manager.acquire(version) is slots[1]

    asyncio.run(scenario())


def test_rename_keeps_idle_and_busy_sandboxes_serving() -> None:
    async def scenario() -> None:
        manager, _ = _manager(StubWorker())
        idle, busy = await manager.acquire(_record()), await manager.acquire(_record())
        manager.release(idle, reusable=True)
        manager.rename("r1", "r2")
        renamed = replace(_record(), revision_id="r2")
        assert await manager.acquire(renamed) is idle
        manager.release(busy, reusable=True)
        manager.release(idle, reusable=True)
        assert {await manager.acquire(renamed), await manager.acquire(renamed)} == {idle, busy}

    asyncio.run(scenario())


def test_keep_alive_reclaims_idle_sandboxes() -> None:
    async def scenario() -> None:
        manager, clock = _manager(StubWorker(), keep_alive=600)
        slot = await manager.acquire(_record())
        manager.release(slot, reusable=True)
        clock.now = 599
        assert manager.evict_expired() == 0
        clock.now = 601
        assert manager.evict_expired() == 1
        assert slot.sandbox.destroyed  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_placement_evicts_idle_sandboxes_then_refuses() -> None:
    async def scenario() -> None:
        manager, _ = _manager(StubWorker(memory_mb=256))
        a = await manager.acquire(_record("a", "ra"))
        manager.release(a, reusable=True)
        await manager.acquire(_record("b", "rb"))
        c = await manager.acquire(_record("c", "rc"))  # evicts a's idle sandbox for room
        assert a.state is SlotState.DEAD and c.state is SlotState.BUSY
        with pytest.raises(TooManyRequests):
            await manager.acquire(_record("d", "rd"))

    asyncio.run(scenario())


def test_idle_sandboxes_are_frozen_then_thawed_on_the_next_call() -> None:
    async def scenario() -> None:
        manager, clock = _manager(StubWorker())
        slot = await manager.acquire(_record())
        manager.release(slot, reusable=True)
        clock.now = 0.5
        assert manager.freeze_idle() == 0
        clock.now = 1.5
        assert manager.freeze_idle() == 1
        assert slot.sandbox.frozen  # type: ignore[attr-defined]
        again = await manager.acquire(_record())
        assert again is slot and not slot.sandbox.frozen  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_provisioned_sandboxes_are_kept_replaced_and_never_evicted() -> None:
    async def scenario() -> None:
        worker = StubWorker()
        manager, clock = _manager(worker, keep_alive=1)
        record = _record()
        assert await manager.provision(record, 2) == 2
        assert worker.provisioned == 2
        assert await manager.provision(record, 2) == 2  # idempotent
        assert len(worker.started) == 2
        clock.now += 10
        assert manager.evict_expired() == 0
        worker.started[0].destroyed = True  # killed from outside
        assert await manager.provision(record, 2) == 2
        assert worker.provisioned == 3
        slot = await manager.acquire(record)  # a call is served by a provisioned sandbox
        assert slot.provisioned and not slot.fresh
        manager.release(slot, reusable=True)
        assert await manager.provision(record, 0) == 0
        assert manager.statistics()["sandboxes"] == 0

    asyncio.run(scenario())


def test_each_revision_of_a_function_keeps_its_own_provisioned_sandboxes() -> None:
    """A manifest's $LATEST and the API's published version of one function."""

    async def scenario() -> None:
        worker = StubWorker()
        manager, _ = _manager(worker)
        latest, version = _record(revision="latest"), _record(revision="v1")
        assert await manager.provision(latest, 1) == 1
        assert await manager.provision(version, 2) == 2
        assert await manager.provision(latest, 1) == 1  # the version's are not its surplus
        assert manager.statistics()["sandboxes"] == 3
        assert await manager.provision(version, 0) == 0
        assert manager.statistics()["sandboxes"] == 1

    asyncio.run(scenario())

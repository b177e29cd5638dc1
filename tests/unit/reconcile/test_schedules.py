"""The scheduler: every scheduled time fires once, across restarts, with a stable request id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from ember.manifests.schedule import parse
from ember.reconcile.schedules import MAX_CATCH_UP, Scheduler, Triggers, firing_id
from ember.storage.memory import MemoryMetadataStore

START = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def make(
    store: MemoryMetadataStore,
    clock: Clock,
    fired: list[tuple[str, datetime, str]],
    wanted: Triggers,
) -> Scheduler:
    """A scheduler whose wanted schedules are ``wanted`` (changed in place by the test)."""

    async def fire(function: str, moment: datetime, rid: str, payload: Any) -> None:
        fired.append((function, moment, rid))

    return Scheduler(store, fire, lambda: wanted, clock)


def test_a_rate_fires_on_each_period_once_and_catches_up_after_a_restart() -> None:
    async def scenario() -> None:
        store, clock, fired = MemoryMetadataStore(), Clock(), []
        wanted: Triggers = {"report": [("rate(1 minute)", None)]}
        first = make(store, clock, fired, wanted)
        await first.load()
        assert await first.fire_due() == 0  # a new schedule starts now
        clock.now += timedelta(minutes=2)
        assert await first.fire_due() == 2
        assert await first.fire_due() == 0  # nothing twice
        # "Restart": a new scheduler on the same store, after 3 minutes down.
        clock.now += timedelta(minutes=3)
        second = make(store, clock, fired, wanted)
        await second.load()
        assert await second.fire_due() == 3
        times = [moment for _, moment, _ in fired]
        assert times == [START.replace(second=0) + timedelta(minutes=n) for n in range(1, 6)]
        assert len(set(times)) == len(times)
        assert all(rid == firing_id("report", "rate(1 minute)", t) for _, t, rid in fired)

    asyncio.run(scenario())


def test_a_long_outage_fires_at_most_the_catch_up_limit() -> None:
    async def scenario() -> None:
        store, clock, fired = MemoryMetadataStore(), Clock(), []
        scheduler = make(store, clock, fired, {"f": [("rate(1 minute)", None)]})
        await scheduler.fire_due()
        clock.now += timedelta(days=1)
        assert await scheduler.fire_due() == MAX_CATCH_UP
        clock.now += timedelta(minutes=1)
        assert await scheduler.fire_due() == 1

    asyncio.run(scenario())


def test_removing_a_schedule_forgets_its_cursor() -> None:
    async def scenario() -> None:
        store, clock, fired = MemoryMetadataStore(), Clock(), []
        wanted: Triggers = {"f": [("*/5 * * * *", None)]}
        scheduler = make(store, clock, fired, wanted)
        await scheduler.fire_due()
        assert scheduler.registered("f") == ["*/5 * * * *"]
        wanted.clear()
        await scheduler.fire_due()
        assert await store.load_all() == {}
        assert scheduler.registered("f") == []

    asyncio.run(scenario())


def test_a_node_taking_over_the_duty_continues_from_the_cursors_another_node_advanced() -> None:
    """Two nodes on one store, one holding the duty at a time: each scheduled time
    fires once across both, none is skipped."""

    async def scenario() -> None:
        store, clock, fired = MemoryMetadataStore(), Clock(), []
        wanted: Triggers = {"report": [("rate(1 minute)", None)]}
        first, second = make(store, clock, fired, wanted), make(store, clock, fired, wanted)
        await second.load()  # the second node started, then waited for the duty
        await first.load()
        await first.fire_due()
        clock.now += timedelta(minutes=2)
        assert await first.fire_due() == 2
        # The first node dies; the second takes the duty over and re-reads the cursors.
        clock.now += timedelta(minutes=1)
        await second.load()
        assert await second.fire_due() == 1
        times = [moment for _, moment, _ in fired]
        assert times == [START.replace(second=0) + timedelta(minutes=n) for n in range(1, 4)]

    asyncio.run(scenario())


def test_a_short_minute_that_is_no_binary_fraction_still_moves_forward() -> None:
    schedule = parse("rate(1 minute)")
    moment = datetime(2026, 12, 6, 0, 23, 27, 600000, tzinfo=UTC)
    for _ in range(50):
        following = schedule.next_after(moment, 0.1)
        assert following > moment
        moment = following

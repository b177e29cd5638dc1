"""The pollers' supervisor with sources that misbehave the way broker clients do: a
connect that must not be cut short, a cancellation dropped for a batch, a connect
that hangs past any timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from test_mappings import DEFAULT, body, service

from ember.sources import pollers as pollers_module
from ember.sources.mappings import EventSourceMappings, State
from ember.sources.pollers import EventSourcePollers


class FakeConsumer:
    """A consumer of an empty queue. One with ``drops`` set returns a batch when
    cancelled while it waits, as a call through Python 3.11's wait_for may when the
    cancel lands as a message arrives: the cancellation is then lost to the caller."""

    def __init__(self, drops: bool) -> None:
        self.drops = drops
        self.waiting = asyncio.Event()

    async def batch(self, size: int, window: float) -> Sequence[object] | None:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if not self.drops:
                raise
        return [object()]

    def event(self, batch: Sequence[object]) -> bytes:
        return b"{}"

    async def ack(self, batch: Sequence[object]) -> None:
        return None

    async def requeue(self, batch: Sequence[object]) -> None:
        return None

    async def close(self) -> None:
        return None


class FakeSource:
    """A source whose ``open`` takes until ``released``, like a slow connect. A real
    client cut short there loses its half-made connection (``cut_short``)."""

    def __init__(self, drops: bool = False) -> None:
        self.opening = asyncio.Event()
        self.released = asyncio.Event()
        self.cut_short = False
        self.connected = False
        self.is_closed = False
        self.consumers: list[FakeConsumer] = []
        self.drops = drops

    async def open(self) -> None:
        self.opening.set()
        try:
            await self.released.wait()
        except asyncio.CancelledError:
            self.cut_short = True
            raise
        self.connected = True

    async def consumer(self, prefetch: int) -> FakeConsumer:
        self.consumers.append(FakeConsumer(self.drops))
        return self.consumers[-1]

    async def backlog(self) -> int:
        return 0

    async def retire(self) -> None:
        return None

    @property
    def closed(self) -> bool:
        return self.is_closed

    async def close(self) -> None:
        self.connected = False
        self.is_closed = True


async def until(condition: Callable[[], Any], timeout: float = 2.0) -> None:
    """Await ``condition``; fail after ``timeout`` (real) seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def supervise(
    mappings: EventSourceMappings, sources: dict[str, list[FakeSource]], delivered: list[Any]
) -> Any:
    """A supervisor whose sources come, per queue, from ``sources`` in turn (then
    sources that connect at once)."""

    def source_of(mapping: Any) -> FakeSource:
        waiting = sources.get(mapping.queue, [])
        if waiting:
            return waiting.pop(0)
        source = FakeSource()
        source.released.set()
        return source

    async def invoke(command: Any) -> Any:
        delivered.append(command)
        raise AssertionError("nothing is to be delivered")

    return EventSourcePollers(mappings, source_of, invoke, lambda key: None)


async def enabled(mappings: EventSourceMappings, uuid: str) -> None:
    await until(lambda: mappings.get(uuid, DEFAULT).state is State.ENABLED)


async def run_with(
    sources: dict[str, list[FakeSource]],
    scenario: Callable[[EventSourceMappings], Awaitable[None]],
) -> list[Any]:
    """Run ``scenario`` beside a supervisor; the calls it made to the function."""
    mappings = service()
    delivered: list[Any] = []
    pollers = supervise(mappings, sources, delivered)
    running = asyncio.create_task(pollers.run())
    try:
        await scenario(mappings)
    finally:
        for waiting in sources.values():
            for source in waiting:
                source.released.set()
        pollers.stop()
        done, _ = await asyncio.wait([running], timeout=10)
        assert done, "the supervisor did not stop"
        await running
    return delivered


def test_a_poller_stopped_while_it_connects_closes_the_connection_it_made() -> None:
    """An update just after a create stops the poller while it connects. The connect
    is let end, never cut short (a client loses a connection cut short half made,
    or drops the cancellation), and the connection it made is closed."""
    first = FakeSource()

    async def scenario(mappings: EventSourceMappings) -> None:
        created = await mappings.create(body(), DEFAULT)
        await asyncio.wait_for(first.opening.wait(), 2)
        await mappings.update(created.uuid, {"BatchSize": 5}, DEFAULT)
        await asyncio.sleep(0.05)
        first.released.set()  # the connect completes
        await enabled(mappings, created.uuid)  # well before STOP_GRACE
        assert not first.cut_short
        assert first.is_closed and not first.connected

    asyncio.run(run_with({"q": [first]}, scenario))


def test_a_consumer_whose_client_drops_the_cancellation_delivers_nothing_more() -> None:
    """The poller is stopped while its consumer waits; the client hands back a batch
    instead of the cancellation. The batch goes back to the broker undelivered and
    the poller stops, so that the update settles."""
    first = FakeSource(drops=True)
    first.released.set()

    async def scenario(mappings: EventSourceMappings) -> None:
        created = await mappings.create(body(), DEFAULT)
        await until(lambda: first.consumers and first.consumers[0].waiting.is_set())
        await mappings.update(created.uuid, {"BatchSize": 5}, DEFAULT)
        await enabled(mappings, created.uuid)  # well before STOP_GRACE
        assert first.is_closed

    assert asyncio.run(run_with({"q": [first]}, scenario)) == []


def test_a_poller_that_will_not_stop_holds_up_no_other_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poller whose connect hangs (past any timeout) is left after ``STOP_GRACE``:
    every other transition settles meanwhile, and it ends once the connect does,
    closing what it made."""
    monkeypatch.setattr(pollers_module, "STOP_GRACE", 0.2)
    hung = FakeSource()

    async def scenario(mappings: EventSourceMappings) -> None:
        created = await mappings.create(body(), DEFAULT)
        await asyncio.wait_for(hung.opening.wait(), 2)
        await mappings.update(created.uuid, {"Enabled": False}, DEFAULT)
        await until(lambda: mappings.get(created.uuid, DEFAULT).state is State.DISABLED)
        other = await mappings.create(body(Queues=["r"]), DEFAULT)
        await enabled(mappings, other.uuid)
        hung.released.set()
        await until(lambda: hung.is_closed)
        assert not hung.connected

    asyncio.run(run_with({"q": [hung]}, scenario))

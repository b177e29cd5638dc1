"""The supervisor over the in-process queue, a fake clock and a scripted function."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from ember.control.arns import Arns
from ember.queue.base import Message, NewEvent
from ember.queue.configs import EventInvokeConfigs
from ember.queue.memory import MemoryEventQueue
from ember.queue.pollers import Supervisor
from ember.queue.retry import Attempt, Outcome

ARNS = Arns("us-east-1", "000000000000")
FUNCTIONS = {"f", "dest"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A 'function' whose attempts follow a script of outcomes; records each call."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Message] = []

    async def __call__(self, message: Message) -> Attempt:
        self.calls.append(message)
        outcome = self.outcomes.pop(0) if self.outcomes else Outcome.SUCCESS
        if outcome is Outcome.FUNCTION_ERROR:
            body = b'{"errorType": "ValueError", "errorMessage": "boom"}'
            return Attempt(outcome, 200, body, "Unhandled")
        return Attempt(outcome, 200, b'{"ok": true}')


def build(
    deliver: Callable[[Message], Any], clock: FakeClock
) -> tuple[MemoryEventQueue, EventInvokeConfigs, Supervisor]:
    queue = MemoryEventQueue(clock)
    configs = EventInvokeConfigs(queue, FUNCTIONS.__contains__, ARNS, 60.0, clock)
    ids = (f"id-{n}" for n in itertools.count())
    supervisor = Supervisor(
        queue,
        deliver,
        configs,
        lambda name: 30.0,
        FUNCTIONS.__contains__,
        ids.__next__,
        ARNS,
        pollers=2,
        clock=clock,
        idle_wait=0.01,
    )
    return queue, configs, supervisor


async def step(queue: MemoryEventQueue, supervisor: Supervisor) -> Message | None:
    """Receive one visible message and let the supervisor handle it."""
    messages = await queue.receive(1, lambda name: 30.0)
    if not messages:
        return None
    await supervisor.handle(messages[0])
    return messages[0]


def test_function_errors_are_retried_after_scaled_delays_then_dead_lettered() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        function = Scripted(*[Outcome.FUNCTION_ERROR] * 3)
        queue, _, supervisor = build(function, clock)
        await queue.enqueue([NewEvent("f", "req-1", b'{"n": 1}')])
        assert await step(queue, supervisor) is not None
        assert await step(queue, supervisor) is None  # waits 60 s for the 2nd attempt
        clock.now += 59
        assert await step(queue, supervisor) is None
        clock.now += 1
        assert await step(queue, supervisor) is not None
        clock.now += 119
        assert await step(queue, supervisor) is None  # 120 s before the 3rd
        clock.now += 1
        assert await step(queue, supervisor) is not None
        assert [m.request_id for m in function.calls] == ["req-1"] * 3
        (letter,) = await queue.dead_letters("f")
        assert (letter.request_id, letter.condition, letter.invocations) == (
            "req-1",
            "RetriesExhausted",
            3,
        )
        assert (letter.error_type, letter.error_message) == ("ValueError", "boom")

    asyncio.run(scenario())


def test_success_routes_the_invocation_record_to_on_success() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        queue, configs, supervisor = build(Scripted(), clock)
        destination = ARNS.function("dest")
        await configs.put(
            "f", None, {"DestinationConfig": {"OnSuccess": {"Destination": destination}}}
        )
        await queue.enqueue([NewEvent("f", "req-1", b'{"n": 1}')])
        await step(queue, supervisor)
        (record,) = await queue.receive(5, lambda name: 30.0)
        assert record.function == "dest"
        body = json.loads(record.payload)
        assert body["requestContext"] == {
            "requestId": "req-1",
            "functionArn": ARNS.function("f", "$LATEST"),
            "condition": "Success",
            "approximateInvokeCount": 1,
        }
        assert body["requestPayload"] == {"n": 1}
        assert body["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
        assert body["responsePayload"] == {"ok": True}

    asyncio.run(scenario())


def test_throttles_do_not_spend_retries_and_expire_by_age() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        function = Scripted(*[Outcome.THROTTLED] * 100)
        queue, configs, supervisor = build(function, clock)
        destination = ARNS.function("dest")
        await configs.put(
            "f",
            None,
            {
                "MaximumRetryAttempts": 0,
                "MaximumEventAgeInSeconds": 60,
                "DestinationConfig": {"OnFailure": {"Destination": destination}},
            },
        )
        await queue.enqueue([NewEvent("f", "req-1", b"{}")])

        async def f_queued() -> bool:
            return any(s.function == "f" and s.depth for s in await queue.statistics())

        while await f_queued():
            if await step(queue, supervisor) is None:
                clock.now += 1
        assert len(function.calls) > 3  # throttled again and again, never a spent attempt
        (record,) = await queue.receive(5, lambda name: 30.0)
        context = json.loads(record.payload)["requestContext"]
        assert (context["condition"], context["approximateInvokeCount"]) == (
            "EventAgeExceeded",
            0,
        )

    asyncio.run(scenario())


def test_a_delivery_that_dies_is_redelivered_after_its_visibility_timeout() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        queue, _, supervisor = build(Scripted(), clock)
        await queue.enqueue([NewEvent("f", "req-1", b"{}")])
        (lost,) = await queue.receive(1, lambda name: 30.0)  # this poller dies
        assert await step(queue, supervisor) is None
        clock.now += 31
        again = await step(queue, supervisor)
        assert again is not None and again.request_id == lost.request_id
        assert await queue.statistics() == []

    asyncio.run(scenario())


def test_an_event_of_a_deleted_function_is_dropped_not_dead_lettered() -> None:
    """A dead letter would reappear under a new function of the same name."""

    async def scenario() -> None:
        clock = FakeClock()
        queue, _, supervisor = build(Scripted(Outcome.NOT_FOUND), clock)
        await queue.enqueue([NewEvent("f", "req-1", b"{}")])
        await step(queue, supervisor)
        assert await queue.dead_letters("f") == []
        assert await queue.statistics() == []
        assert (supervisor.statistics().dropped, supervisor.statistics().failed) == (1, 0)

    asyncio.run(scenario())


def test_run_drains_fairly_and_stops() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []

        async def deliver(message: Message) -> Attempt:
            order.append(message.function)
            await asyncio.sleep(0)
            return Attempt(Outcome.SUCCESS)

        queue, _, supervisor = build(deliver, FakeClock())
        await queue.enqueue([NewEvent("f", f"f-{i}", b"{}") for i in range(50)])
        await queue.enqueue([NewEvent("dest", "d-0", b"{}")])
        runner = asyncio.ensure_future(supervisor.run())
        for _ in range(1000):
            if len(order) == 51:
                break
            await asyncio.sleep(0.001)
        supervisor.stop()
        await asyncio.wait_for(runner, 5)
        assert supervisor.statistics().succeeded == 51
        return order

    order = asyncio.run(scenario())
    assert "dest" in order[:4]  # not behind f's whole backlog


@pytest.mark.parametrize("pollers", [0])
def test_zero_pollers_accept_only(pollers: int) -> None:
    async def scenario() -> None:
        queue, configs, _ = build(Scripted(), FakeClock())
        supervisor = Supervisor(
            queue, Scripted(), configs, lambda n: 1.0, bool, str, ARNS, pollers=pollers
        )
        runner = asyncio.ensure_future(supervisor.run())
        await asyncio.sleep(0)
        supervisor.stop()
        await asyncio.wait_for(runner, 5)

    asyncio.run(scenario())

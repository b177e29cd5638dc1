"""The throttle while its Redis is out of reach: the breaker, deny and allow.

The breaker runs on a fake clock. The gate talks to a real Redis client
aimed at a port nothing listens on (a refused connection, as after a kill);
e2e/test_throttle_outage.py kills and restarts a real redis-server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from conftest import free_port
from ember.errors import ThrottleUnavailable, TooManyRequests
from ember.storage.memory import MemoryMetadataStore
from ember.throttle import Throttle, ThrottleLimits
from ember.throttle.base import Policy
from ember.throttle.breaker import Breaker
from ember.throttle.redis import RedisThrottleBackend


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_closed_breaker_lets_every_call_through() -> None:
    breaker = Breaker(1.0, FakeClock())
    assert breaker.closed
    assert all(breaker.ready() for _ in range(3))
    assert breaker.succeeded() is False  # nothing to close


def test_a_failure_opens_it_for_the_cooldown_then_one_probe_goes() -> None:
    clock = FakeClock()
    breaker = Breaker(1.0, clock)
    assert breaker.failed() is True  # an outage begins
    assert breaker.failed() is False  # the same outage: said once
    assert not breaker.closed
    assert not breaker.ready()
    clock.now += 0.999
    assert not breaker.ready()
    clock.now += 0.001
    assert breaker.ready()  # the probe
    assert not breaker.ready()  # the others, while the probe is out
    assert breaker.succeeded() is True  # the outage ends
    assert breaker.closed and breaker.ready()


def test_a_failed_probe_opens_another_cooldown() -> None:
    clock = FakeClock()
    breaker = Breaker(1.0, clock)
    breaker.failed()
    clock.now += 1.0
    assert breaker.ready()
    clock.now += 0.5
    assert breaker.failed() is False
    clock.now += 0.9
    assert not breaker.ready()
    clock.now += 0.1
    assert breaker.ready()


def test_a_probe_that_never_reports_costs_one_cooldown() -> None:
    clock = FakeClock()
    breaker = Breaker(1.0, clock)
    breaker.failed()
    clock.now += 1.0
    assert breaker.ready()  # this probe is cancelled: neither failed() nor succeeded()
    assert not breaker.ready()
    clock.now += 1.0
    assert breaker.ready()


def gate(unavailable: str, clock: FakeClock) -> Throttle:
    backend = RedisThrottleBackend(f"redis://127.0.0.1:{free_port()}/0", prefix="ember-test:")
    limits = ThrottleLimits(MemoryMetadataStore(), 1000)
    return Throttle(backend, limits, unavailable=unavailable, breaker=Breaker(1.0, clock))


def test_deny_refuses_every_call_with_a_503_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    throttle = gate("deny", clock)

    async def scenario() -> tuple[list[str], dict[str, object]]:
        messages: list[str] = []
        for i in range(5):
            with pytest.raises(ThrottleUnavailable) as caught:
                await throttle.admit("f", "me", f"r{i}", 3)
            messages.append(caught.value.message)
            clock.now += 0.4  # a probe goes about every third call
        health = await throttle.health()
        await throttle.close()
        return messages, health

    with caplog.at_level(logging.WARNING, logger="ember.throttle"):
        messages, health = asyncio.run(scenario())
    store = messages[0].split("Throttling is unavailable: ")[1].split(" cannot")[0]
    assert store.startswith("Redis at 127.0.0.1:")
    assert set(messages) == {
        f"Throttling is unavailable: {store} cannot be reached; calls are refused "
        "(--throttle-unavailable deny)."
    }
    assert [r.levelname for r in caplog.records] == ["ERROR"]  # once per outage
    assert "every call is refused" in caplog.records[0].getMessage()
    assert health["backend"] == "redis"
    assert health["available"] is False
    assert health["unavailable"] == "deny"
    assert isinstance(health["since"], str)


def test_allow_admits_without_rate_limits_and_counts_concurrency_on_this_node() -> None:
    clock = FakeClock()
    throttle = gate("allow", clock)

    async def scenario() -> tuple[list[Any], Any]:
        await throttle.limits.put_policy("f", "function", Policy("fixed-window", 1, 3600.0))
        await throttle.limits.put_reserved("f", 2)
        first = await throttle.admit("f", "me", "r1", 3)
        second = await throttle.admit("f", "me", "r2", 3)  # past the rate limit: unchecked
        try:
            await throttle.admit("f", "me", "r3", 3)
        except TooManyRequests as exc:
            refused = exc
        await throttle.release(first)  # released here: Redis never counted it
        third = await throttle.admit("f", "me", "r4", 3)
        for admission in (second, third):
            await throttle.release(admission)
        health = await throttle.health()
        await throttle.close()
        return [first, second, third, health], refused

    (first, second, third, health), refused = asyncio.run(scenario())
    assert all(a.local and a.decision is None for a in (first, second, third))
    assert refused.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert health["available"] is False and health["unavailable"] == "allow"


def test_an_unknown_outage_choice_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'maybe'"):
        gate("maybe", FakeClock())

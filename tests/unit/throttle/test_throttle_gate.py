"""The throttle gate with the in-memory backend: Lambda's counting and its 429s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ember.errors import InvalidParameterValue, ResourceNotFound, TooManyRequests
from ember.storage.memory import MemoryMetadataStore
from ember.throttle import Throttle, ThrottleLimits
from ember.throttle.base import Policy
from ember.throttle.limits import FunctionLimits, parse_policy, parse_rate
from ember.throttle.memory import MemoryThrottleBackend


def gate(account: int = 1000) -> Throttle:
    return Throttle(MemoryThrottleBackend(), ThrottleLimits(MemoryMetadataStore(), account))


def refused(coroutine: Any) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as caught:
        asyncio.run(coroutine)
    return caught.value


def test_the_unreserved_pool_is_shared_and_refuses_with_lambdas_reason() -> None:
    throttle = gate(account=2)

    async def scenario() -> None:
        first = await throttle.admit("a", "me", "r1", 3)
        await throttle.admit("b", "me", "r2", 3)
        try:
            await throttle.admit("c", "me", "r3", 3)
        finally:
            await throttle.release(first)
            await throttle.release(first)  # twice: harmless
        await throttle.admit("c", "me", "r4", 3)

    with pytest.raises(TooManyRequests) as caught:
        asyncio.run(scenario())
    assert caught.value.reason == "ConcurrentInvocationLimitExceeded"
    assert caught.value.message == "Rate Exceeded."
    assert caught.value.retry_after_seconds >= 1


def test_reserved_concurrency_is_its_own_pool_carved_from_the_account() -> None:
    throttle = gate(account=1000)

    async def scenario() -> tuple[int, Any]:
        await throttle.limits.put_reserved("f", 2)
        leases = [await throttle.admit("f", "me", f"r{i}", 3) for i in range(2)]
        try:
            await throttle.admit("f", "me", "r3", 3)
        except TooManyRequests as exc:
            error = exc
        await throttle.release(leases[0])
        await throttle.admit("f", "me", "r4", 3)
        return throttle.limits.unreserved, error

    unreserved, error = asyncio.run(scenario())
    assert unreserved == 998
    assert error.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_the_100_unreserved_rule_and_forgetting_a_deleted_function() -> None:
    throttle = gate(account=1000)

    async def scenario() -> None:
        await throttle.limits.put_reserved("f", 800)
        await throttle.limits.put_reserved("f", 900)  # replacing its own reservation
        with pytest.raises(InvalidParameterValue, match=r"minimum value of \[100\]"):
            await throttle.limits.put_reserved("g", 1)
        throttle.forget("f")
        await throttle.limits.put_reserved("g", 900)

    asyncio.run(scenario())
    assert throttle.limits.unreserved == 100
    assert throttle.limits.get("f") == FunctionLimits()


def test_rate_limits_per_function_and_per_caller() -> None:
    throttle = gate()

    async def scenario() -> list[Any]:
        limits = throttle.limits
        await limits.put_policy("f", "function", Policy("fixed-window", 3, 3600.0))
        await limits.put_policy("f", "caller", Policy("token-bucket", 1, 3600.0, 2))
        outcomes: list[Any] = []
        for caller in ("alice", "alice", "alice", "bob", "bob"):
            try:
                admission = await throttle.admit("f", caller, f"{caller}-{len(outcomes)}", 3)
                await throttle.release(admission)
                outcomes.append(admission.decision.remaining)
            except TooManyRequests as exc:
                outcomes.append(exc.reason)
        return outcomes

    assert asyncio.run(scenario()) == [
        1,  # alice's bucket (2) is tighter than the function's window (3)
        0,
        "CallerRateLimitExceeded",
        0,  # bob has a bucket of his own, the function's window is now spent
        "FunctionInvocationRateLimitExceeded",
    ]


def test_removing_a_missing_policy_is_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        asyncio.run(gate().limits.delete_policy("f", "caller"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100/s", (100, 1.0)), ("6000/m", (6000, 60.0)), ("10/5s", (10, 5.0)), ("1/h", (1, 3600.0))],
)
def test_rates_parse(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


def test_policies_parse_and_round_trip_through_json() -> None:
    scope, policy = parse_policy({"scope": "caller", "algorithm": "leaky-bucket", "rate": "5/s"})
    assert scope == "caller" and policy == Policy("leaky-bucket", 5, 1.0, None)
    limits = FunctionLimits(reserved=3, caller=policy)
    assert FunctionLimits.from_json(limits.to_json()) == limits
    with pytest.raises(InvalidParameterValue, match="burst"):
        parse_policy({"algorithm": "sliding-log", "rate": "5/s", "burst": 2})


def test_each_account_has_its_own_unreserved_pool() -> None:
    """``account_of`` names the owner of a function key (None: the default account)."""
    limits = ThrottleLimits(
        MemoryMetadataStore(), 100, lambda key: key.split(".")[0] if "." in key else None
    )
    throttle = Throttle(MemoryThrottleBackend(), limits)

    async def scenario() -> TooManyRequests:
        for lease in range(100):
            await throttle.admit("mine", "me", f"m{lease}", 3)
        # The default account's pool is full; another account's is untouched.
        for lease in range(100):
            await throttle.admit("111122223333.theirs", "you", f"t{lease}", 3)
        try:
            await throttle.admit("111122223333.other", "you", "t-last", 3)
        except TooManyRequests as refused:
            return refused
        raise AssertionError("the other account's pool admitted more than its limit")

    error = asyncio.run(scenario())
    assert error.reason == "ConcurrentInvocationLimitExceeded"


def test_reservations_carve_only_their_own_accounts_pool() -> None:
    limits = ThrottleLimits(
        MemoryMetadataStore(), 1000, lambda key: key.split(".")[0] if "." in key else None
    )

    async def scenario() -> None:
        await limits.put_reserved("111122223333.a", 900)
        await limits.put_reserved("mine", 900)  # the default account's 1000 are its own
        with pytest.raises(InvalidParameterValue):
            await limits.put_reserved("111122223333.b", 1)

    asyncio.run(scenario())
    assert limits.unreserved == 100
    assert limits.unreserved_of("111122223333") == 100
    assert limits.unreserved_of("444455556666") == 1000

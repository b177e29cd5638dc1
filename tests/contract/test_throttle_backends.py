"""One behavioural suite for both throttle backends: in memory, and a real Redis.

Redis is the one at 127.0.0.1:6379 (``make test`` starts one when none
answers); without it the Redis half is skipped with the reason printed.
Window lengths are an hour so no test can straddle a window boundary.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from ember.throttle.base import ALGORITHMS, POOL, Policy, RateCheck
from ember.throttle.memory import MemoryThrottleBackend
from ember.throttle.redis import MAX_CONNECTIONS, RedisThrottleBackend

REDIS_URL = os.environ.get("EMBER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
HOUR = 3600.0

Factory = Callable[[], Any]


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}); `make test` starts one")
    return client


@pytest.fixture(scope="module")
def sync_redis() -> Iterator[redis.Redis]:
    client = redis_or_skip()
    yield client
    client.close()


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """A factory of backends sharing one state (two "frontends" on Redis)."""
    if request.param == "memory":
        shared = MemoryThrottleBackend()
        yield lambda: shared
        return
    client = redis_or_skip()
    prefix = f"ember-test:{uuid.uuid4().hex[:8]}:"
    yield lambda: RedisThrottleBackend(REDIS_URL, prefix=prefix)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()


def run(make: Factory, scenario: Callable[[Any], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        backend = make()
        try:
            return await scenario(backend)
        finally:
            await backend.close()

    return asyncio.run(main())


def policy(algorithm: str, limit: int = 3) -> Policy:
    burst = limit if algorithm in ("token-bucket", "leaky-bucket") else None
    return Policy(algorithm, limit, HOUR, burst)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_fresh_key_admits_its_capacity_then_refuses(make: Factory, algorithm: str) -> None:
    async def scenario(backend: Any) -> list[Any]:
        return [await backend.hit("k", policy(algorithm)) for _ in range(4)]

    answers = run(make, scenario)
    assert [a.allowed for a in answers] == [True, True, True, False]
    assert [a.remaining for a in answers] == [2, 1, 0, 0]
    assert all(a.limit == 3 for a in answers)
    assert answers[-1].retry_after > 0
    assert answers[0].reset_after > 0


def test_keys_are_independent_and_clear_resets(make: Factory) -> None:
    async def scenario(backend: Any) -> list[bool]:
        rule = policy("fixed-window", 1)
        first = await backend.hit("a", rule)
        other = await backend.hit("b", rule)
        again = await backend.hit("a", rule)
        await backend.clear("a")
        await backend.clear("never-used")
        cleared = await backend.hit("a", rule)
        return [first.allowed, other.allowed, again.allowed, cleared.allowed]

    assert run(make, scenario) == [True, True, False, True]


def test_admit_is_all_or_nothing_across_rate_checks(make: Factory) -> None:
    async def scenario(backend: Any) -> tuple[Any, Any, Any, int]:
        checks = [
            RateCheck("wide", policy("sliding-log", 2)),
            RateCheck("narrow", policy("token-bucket", 1)),
        ]
        first = await backend.admit(checks, "pool", 10, "lease-1", 60)
        refused = await backend.admit(checks, "pool", 10, "lease-2", 60)
        # The refused admit counted nothing on "wide" and took no lease.
        wide = await backend.hit("wide", policy("sliding-log", 2))
        return first, refused, wide, await backend.in_use("pool")

    first, refused, wide, in_use = run(make, scenario)
    assert first.refused is None and first.decision.remaining == 0
    assert refused.refused == 1 and refused.decision.retry_after > 0
    assert wide.allowed and wide.remaining == 0
    assert in_use == 1


def test_a_full_pool_refuses_without_counting_rate_hits(make: Factory) -> None:
    async def scenario(backend: Any) -> tuple[Any, Any, Any]:
        checks = [RateCheck("r", policy("fixed-window", 5))]
        taken = await backend.admit(checks, "p", 1, "l1", 60)
        full = await backend.admit(checks, "p", 1, "l2", 60)
        after = await backend.hit("r", policy("fixed-window", 5))
        return taken, full, after

    taken, full, after = run(make, scenario)
    assert taken.refused is None
    assert full.refused == POOL
    assert after.remaining == 3  # one admitted call + this hit: the refused one did not count


def test_concurrent_acquires_admit_exactly_the_pool_size(make: Factory) -> None:
    async def scenario(backend: Any) -> tuple[int, int, int, int]:
        frontends = [backend, make()]  # on Redis, two clients: two frontends
        try:
            results = await asyncio.gather(
                *(frontends[i % 2].acquire("pool", 7, f"lease-{i}", 60) for i in range(100))
            )
            held = await backend.in_use("pool")
            winners = [f"lease-{i}" for i, ok in enumerate(results) if ok]
            await backend.release("pool", winners[0])
            await backend.release("pool", winners[0])  # twice: harmless
            await backend.release("pool", "never-taken")
            after_release = await backend.in_use("pool")
            again = await backend.acquire("pool", 7, "lease-new", 60)
            return sum(results), held, after_release, int(again)
        finally:
            if frontends[1] is not backend:
                await frontends[1].close()

    assert run(make, scenario) == (7, 7, 6, 1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_concurrent_hits_from_two_frontends_admit_exactly_the_limit(
    make: Factory, algorithm: str
) -> None:
    async def scenario(backend: Any) -> int:
        second = make()
        try:
            rule = policy(algorithm, 10)
            answers = await asyncio.gather(
                *((backend, second)[i % 2].hit("shared", rule) for i in range(60))
            )
            return sum(a.allowed for a in answers)
        finally:
            if second is not backend:
                await second.close()

    assert run(make, scenario) == 10


def test_a_zero_pool_refuses_everything(make: Factory) -> None:
    async def scenario(backend: Any) -> tuple[bool, Any]:
        leased = await backend.acquire("zero", 0, "l", 60)
        admitted = await backend.admit([], "zero", 0, "l", 60)
        return leased, admitted

    leased, admitted = run(make, scenario)
    assert not leased and admitted.refused == POOL


# --- Redis only: what a shared store adds ------------------------------------------


def test_redis_leases_expire_so_a_dead_frontend_leaks_nothing(sync_redis: redis.Redis) -> None:
    prefix = f"ember-test:{uuid.uuid4().hex[:8]}:"

    async def scenario() -> tuple[bool, bool, bool]:
        crashed = RedisThrottleBackend(REDIS_URL, prefix=prefix)
        survivor = RedisThrottleBackend(REDIS_URL, prefix=prefix)
        try:
            taken = await crashed.acquire("pool", 1, "orphan", ttl=0.2)
            blocked = not await survivor.acquire("pool", 1, "next", ttl=60)
            # The holder never releases: wait (with a deadline) for the lease's expiry.
            deadline = time.monotonic() + 10
            while await survivor.in_use("pool") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return taken, blocked, await survivor.acquire("pool", 1, "next", ttl=60)
        finally:
            await crashed.close()
            await survivor.close()

    try:
        assert asyncio.run(scenario()) == (True, True, True)
    finally:
        for key in sync_redis.scan_iter(prefix + "*"):
            sync_redis.delete(key)


def test_redis_keys_all_expire(sync_redis: redis.Redis) -> None:
    prefix = f"ember-test:{uuid.uuid4().hex[:8]}:"

    async def scenario() -> None:
        backend = RedisThrottleBackend(REDIS_URL, prefix=prefix)
        try:
            for index, algorithm in enumerate(ALGORITHMS):
                await backend.hit(f"k{index}", Policy(algorithm, 5, 10.0, None))
            await backend.acquire("pool", 3, "lease", 30)
        finally:
            await backend.close()

    asyncio.run(scenario())
    keys = list(sync_redis.scan_iter(prefix + "*"))
    try:
        assert len(keys) == len(ALGORITHMS) + 1
        assert all(0 < sync_redis.pttl(key) <= 100_000 for key in keys)
    finally:
        for key in keys:
            sync_redis.delete(key)


def test_a_burst_shares_a_bounded_set_of_redis_connections(sync_redis: redis.Redis) -> None:
    # One connection per concurrent call made a burst of 100 open 100 at once; on a
    # loaded machine some connects outlasted the 0.5 s timeout, refusing the burst as
    # if Redis were gone (a CI run failed so).
    prefix = f"ember-test:{uuid.uuid4().hex[:8]}:"

    def clients() -> int:
        return int(sync_redis.info("clients")["connected_clients"])

    async def scenario() -> tuple[int, int]:
        backend = RedisThrottleBackend(REDIS_URL, prefix=prefix)
        try:
            before = clients()
            results = await asyncio.gather(
                *(backend.acquire("pool", 7, f"lease-{i}", 60) for i in range(100))
            )
            return sum(results), clients() - before
        finally:
            await backend.close()

    try:
        admitted, opened = asyncio.run(scenario())
    finally:
        for key in sync_redis.scan_iter(prefix + "*"):
            sync_redis.delete(key)
    assert admitted == 7
    assert 0 < opened <= MAX_CONNECTIONS

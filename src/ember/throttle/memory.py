"""The in-memory throttle backend: one process, no I/O, decisions in microseconds.

Everything runs on the event loop between two awaits, so a decision is
atomic without a lock. Rate state lives in one ``Limiter`` per key (see
``algorithms.py``); a pool is a set of lease names.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ember.throttle.algorithms import Clock, Limiter, build
from ember.throttle.base import POOL, Admit, Decision, Policy, RateCheck


class MemoryThrottleBackend:
    """See ``ember.throttle.base.ThrottleBackend``. Leases never expire here:
    they live and die with this process, so a lease cannot outlive its holder."""

    name = "memory"

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._limiters: dict[str, Limiter] = {}
        self._pools: dict[str, set[str]] = {}

    # --- rate limits -----------------------------------------------------------

    def _limiter(self, key: str, policy: Policy) -> Limiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = build(policy, self._clock)
        return limiter

    def hit_now(self, key: str, policy: Policy, cost: int = 1) -> Decision:
        return self._limiter(key, policy).acquire(cost)

    async def hit(self, key: str, policy: Policy, cost: int = 1) -> Decision:
        return self._limiter(key, policy).acquire(cost)

    async def clear(self, key: str) -> None:
        self._limiters.pop(key, None)

    def sweep(self) -> int:
        """Drop the state of keys that are back to fresh; returns how many were dropped."""
        idle = [key for key, limiter in self._limiters.items() if limiter.idle()]
        for key in idle:
            del self._limiters[key]
        return len(idle)

    # --- leases ----------------------------------------------------------------

    def acquire_now(self, pool: str, limit: int, lease: str) -> bool:
        held = self._pools.get(pool)
        if held is None:
            held = self._pools[pool] = set()
        if len(held) >= limit:
            return False
        held.add(lease)
        return True

    async def acquire(self, pool: str, limit: int, lease: str, ttl: float) -> bool:
        return self.acquire_now(pool, limit, lease)

    def release_now(self, pool: str, lease: str) -> None:
        held = self._pools.get(pool)
        if held is not None:
            held.discard(lease)

    async def release(self, pool: str, lease: str) -> None:
        self.release_now(pool, lease)

    async def in_use(self, pool: str) -> int:
        return len(self._pools.get(pool, ()))

    # --- the acquire path ---------------------------------------------------------

    def admit_now(self, checks: Sequence[RateCheck], pool: str, limit: int, lease: str) -> Admit:
        tightest: Decision | None = None
        passed: list[Limiter] = []
        limiters = self._limiters
        for key, policy in checks:
            limiter = limiters.get(key) or self._limiter(key, policy)
            decision = limiter.decide()
            if not decision.allowed:
                return Admit(len(passed), decision)
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
            passed.append(limiter)
        if not self.acquire_now(pool, limit, lease):
            return Admit(POOL, tightest)
        for limiter in passed:
            limiter.commit()
        return Admit(None, tightest)

    async def admit(
        self, checks: Sequence[RateCheck], pool: str, limit: int, lease: str, ttl: float
    ) -> Admit:
        return self.admit_now(checks, pool, limit, lease)

    async def ping(self) -> None:
        """Always answers: the state is in this process."""

    async def close(self) -> None:
        self._limiters.clear()
        self._pools.clear()

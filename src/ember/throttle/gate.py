"""The throttle decision of one invocation: rate limits, then a concurrency lease.

``Throttle.admit`` is the one acquire path (the invocation service calls it
before a sandbox is leased) and ``Throttle.release`` the one release path
(called on every outcome). Lambda's counting: a function with reserved
concurrency R holds up to R leases in its own pool; every other function
shares the unreserved pool, account limit minus every reservation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NamedTuple

from ember.errors import EmberError, TooManyRequests
from ember.throttle.base import POOL, Decision, Policy, RateCheck, ThrottleBackend
from ember.throttle.limits import FunctionLimits, ThrottleLimits
from ember.throttle.memory import MemoryThrottleBackend

log = logging.getLogger("ember.throttle")

UNRESERVED = "lease:unreserved"
# A lease outlives the longest its call can take (Init + timeout) by this much.
LEASE_MARGIN_SECONDS = 60.0
CONCURRENCY_RETRY_SECONDS = 1.0
SWEEP_SECONDS = 60.0
MESSAGE = "Rate Exceeded."
REASONS = ("FunctionInvocationRateLimitExceeded", "CallerRateLimitExceeded")


class Admission(NamedTuple):
    """A taken lease; give it to ``Throttle.release`` exactly once, whatever happens."""

    pool: str
    lease: str
    decision: Decision | None  # the tightest rate decision, for RateLimit-* headers


def function_pool(name: str) -> str:
    return f"lease:fn:{name}"


class _Plan(NamedTuple):
    """What ``admit`` needs of one function's settings, computed once per change."""

    limits: FunctionLimits
    checks: tuple[RateCheck, ...]  # the function-wide check, if any
    caller_prefix: str | None  # + the caller: the per-caller key
    caller_policy: Policy
    pool: str

    @classmethod
    def of(cls, name: str, limits: FunctionLimits) -> _Plan:
        checks: tuple[RateCheck, ...] = ()
        if limits.function is not None:
            key = f"rl:{name}:fn:{limits.function.fingerprint}"
            checks = (RateCheck(key, limits.function),)
        caller = limits.caller
        prefix = None if caller is None else f"rl:{name}:caller:{caller.fingerprint}:"
        return cls(limits, checks, prefix, caller or Policy("", 0, 0), function_pool(name))


class Throttle:
    def __init__(
        self, backend: ThrottleBackend, limits: ThrottleLimits, init_timeout: float = 10.0
    ) -> None:
        self.backend = backend
        self.limits = limits
        self._rules = limits.rules  # the same dict: updated in place by ThrottleLimits
        self._margin = init_timeout + LEASE_MARGIN_SECONDS
        # The in-memory backend is called synchronously on the hot path.
        self._memory = backend if isinstance(backend, MemoryThrottleBackend) else None
        self._stopped: asyncio.Event | None = None
        self._plans: dict[str, _Plan] = {}
        self._exists: Callable[[str], bool] = lambda function: True  # set by start

    async def admit(self, function: str, caller: str, lease: str, timeout: float) -> Admission:
        """Take a lease for one call of ``function`` or raise TooManyRequests."""
        limits = self._rules.get(function)
        memory = self._memory
        if limits is None:  # the common case: the unreserved pool, no rate limits
            if memory is not None:
                admitted = memory.acquire_now(UNRESERVED, self.limits.unreserved, lease)
            else:
                admitted = await self.backend.acquire(
                    UNRESERVED, self.limits.unreserved, lease, timeout + self._margin
                )
            if not admitted:
                raise _concurrency_refused(reserved=False)
            return Admission(UNRESERVED, lease, None)
        plan = self._plans.get(function)
        if plan is None or plan.limits is not limits:  # settings changed: plan again
            plan = self._plans[function] = _Plan.of(function, limits)
        checks = plan.checks
        if plan.caller_prefix is not None:
            checks = (*checks, RateCheck(plan.caller_prefix + caller, plan.caller_policy))
        if limits.reserved is None:
            pool, limit = UNRESERVED, self.limits.unreserved
        else:
            pool, limit = plan.pool, limits.reserved
        if memory is not None:
            result = memory.admit_now(checks, pool, limit, lease)
        else:
            result = await self.backend.admit(checks, pool, limit, lease, timeout + self._margin)
        if result.refused is None:
            return Admission(pool, lease, result.decision)
        if result.refused == POOL:
            raise _concurrency_refused(reserved=limits.reserved is not None)
        by_caller = result.refused == 1 or limits.function is None
        retry = result.decision.retry_after if result.decision else 1.0
        raise TooManyRequests(MESSAGE, REASONS[by_caller], retry)

    async def release(self, admission: Admission) -> None:
        """Give the lease back. Never raises: a lost release expires with its ttl."""
        memory = self._memory
        if memory is not None:
            memory.release_now(admission.pool, admission.lease)
            return
        try:
            await self.backend.release(admission.pool, admission.lease)
        except EmberError as exc:
            log.warning("lease %s not released (it expires on its own): %s", admission.lease, exc)

    def forget(self, function: str, local: bool = True) -> None:
        """``function`` was deleted: its settings go (see ThrottleLimits.forget)."""
        self.limits.forget(function, local)
        self._plans.pop(function, None)

    def function_changed(self, function: str, local: bool) -> None:
        """The registry's listener: a deleted function's settings are forgotten."""
        if not self._exists(function):
            self.forget(function, local)

    async def run(self) -> None:
        """Background upkeep until ``stop``: stored deletes, dropping idle in-memory state."""
        self._stopped = asyncio.Event()
        async with asyncio.TaskGroup() as loops:
            upkeep = [loops.create_task(self.limits.run())]
            if self._memory is not None:
                upkeep.append(loops.create_task(_sweep(self._memory)))
            await self._stopped.wait()
            for task in upkeep:
                task.cancel()

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def start(self, exists: Callable[[str], bool]) -> None:
        """Load the settings (dropping those of deleted functions); check the backend.
        ``exists(name)``: whether the function exists (after the registry loaded)."""
        self._exists = exists
        await self.limits.load(exists)
        ping = getattr(self.backend, "ping", None)
        if ping is not None:
            await ping()

    async def close(self) -> None:
        await self.backend.close()


async def _sweep(memory: MemoryThrottleBackend) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        memory.sweep()


def _concurrency_refused(reserved: bool) -> TooManyRequests:
    reason = (
        "ReservedFunctionConcurrentInvocationLimitExceeded"
        if reserved
        else "ConcurrentInvocationLimitExceeded"
    )
    return TooManyRequests(MESSAGE, reason, CONCURRENCY_RETRY_SECONDS)

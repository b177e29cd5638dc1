"""The throttle decision of one invocation: rate limits, then a concurrency lease.

``Throttle.admit`` is the one acquire path (the invocation service calls it
before a sandbox is leased) and ``Throttle.release`` the one release path
(called on every outcome). Lambda's counting: a function with reserved
concurrency R holds up to R leases in its own pool; every other function
shares its account's unreserved pool, the account limit minus every
reservation of that account (each account has its own limit and pool).

A shared backend (Redis) can be out of reach; ``Throttle`` alone decides
what then (``--throttle-unavailable``), behind a ``Breaker`` so that an outage
costs a call no wait, and reports it in ``health`` (/health).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from ember.errors import EmberError, StartupRefused, ThrottleUnavailable, TooManyRequests
from ember.throttle.base import POOL, Admit, Decision, Policy, RateCheck, ThrottleBackend
from ember.throttle.breaker import Breaker
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
# What to do while a shared backend's store is out of reach (--throttle-unavailable).
UNAVAILABLE = ("deny", "allow")


class Admission(NamedTuple):
    """A taken lease; give it to ``Throttle.release`` exactly once, whatever happens."""

    pool: str
    lease: str
    decision: Decision | None  # the tightest rate decision, for RateLimit-* headers
    # Counted on this node only, taken while the shared store was out of reach:
    # released here, never against the shared store (which never counted it).
    local: bool = False


def unreserved_pool(account: str) -> str:
    """Another account's unreserved pool (the default account's is ``UNRESERVED``)."""
    return f"{UNRESERVED}:{account}"


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
    """Lambda's counting over one backend. With a shared backend (Redis) out of
    reach, calls are refused (``unavailable="deny"``, ThrottleUnavailable: 503)
    or admitted with no rate limits and a lease counted on this node only
    (``"allow"``); a breaker answers either at once during the outage and lets
    one probe through per second, so throttling resumes by itself."""

    def __init__(
        self,
        backend: ThrottleBackend,
        limits: ThrottleLimits,
        init_timeout: float = 10.0,
        unavailable: str = "deny",
        breaker: Breaker | None = None,
    ) -> None:
        if unavailable not in UNAVAILABLE:
            raise ValueError(
                f"unknown throttle-unavailable choice {unavailable!r}: choose one of {UNAVAILABLE}"
            )
        self.backend = backend
        self.limits = limits
        self._rules = limits.rules  # the same dict: updated in place by ThrottleLimits
        self._margin = init_timeout + LEASE_MARGIN_SECONDS
        # The in-memory backend is called synchronously on the hot path.
        self._memory = backend if isinstance(backend, MemoryThrottleBackend) else None
        self._stopped: asyncio.Event | None = None
        self._plans: dict[str, _Plan] = {}
        self._unavailable = unavailable
        self._breaker = breaker or Breaker()
        # Leases of calls admitted while the shared store was out of reach (allow).
        self._local = MemoryThrottleBackend()
        # Invariant: both None while the breaker is closed; else the store out of
        # reach and when it was first found so (wall clock, for /health).
        self._store: str | None = None
        self._since: datetime | None = None
        self._exists: Callable[[str], bool] = lambda function: True  # set by start

    async def admit(self, function: str, caller: str, lease: str, timeout: float) -> Admission:
        """Take a lease for one call of ``function`` or raise TooManyRequests
        (or ThrottleUnavailable: the shared store is out of reach and the choice is deny)."""
        limits = self._rules.get(function)
        memory = self._memory
        if limits is None:  # the common case: the unreserved pool, no rate limits
            pool, limit = self._unreserved(function)
            if memory is None:
                return await self._shared((), pool, limit, lease, timeout)
            if not memory.acquire_now(pool, limit, lease):
                raise _concurrency_refused(reserved=False)
            return Admission(pool, lease, None)
        plan = self._plans.get(function)
        if plan is None or plan.limits is not limits:  # settings changed: plan again
            plan = self._plans[function] = _Plan.of(function, limits)
        checks = plan.checks
        if plan.caller_prefix is not None:
            checks = (*checks, RateCheck(plan.caller_prefix + caller, plan.caller_policy))
        if limits.reserved is None:
            pool, limit = self._unreserved(function)
        else:
            pool, limit = plan.pool, limits.reserved
        if memory is not None:
            return _answer(memory.admit_now(checks, pool, limit, lease), pool, lease, limits)
        return await self._shared(checks, pool, limit, lease, timeout, limits)

    def _unreserved(self, function: str) -> tuple[str, int]:
        """The unreserved pool of ``function``'s account and its size."""
        account = self.limits.account_of(function)
        if account is None:
            return UNRESERVED, self.limits.unreserved
        return unreserved_pool(account), self.limits.unreserved_of(account)

    async def _shared(
        self,
        checks: tuple[RateCheck, ...],
        pool: str,
        limit: int,
        lease: str,
        timeout: float,
        limits: FunctionLimits | None = None,
    ) -> Admission:
        """``admit`` on the shared backend, or the operator's choice while it is out of reach."""
        if self._breaker.ready():
            ttl = timeout + self._margin
            try:
                result = await self.backend.admit(checks, pool, limit, lease, ttl)
            except ThrottleUnavailable as exc:
                self._lost(exc)
            else:
                self._reached()
                return _answer(result, pool, lease, limits)
        if self._unavailable == "deny":
            raise ThrottleUnavailable(
                f"Throttling is unavailable: {self._store} cannot be reached; calls are "
                "refused (--throttle-unavailable deny).",
                self._store or "",
            )
        # Allow: no rate checks; the concurrency pool is counted on this node alone.
        result = self._local.admit_now((), pool, limit, lease)
        return _answer(result, pool, lease, limits, local=True)

    async def release(self, admission: Admission) -> None:
        """Give the lease back. Never raises: a lost release expires with its ttl."""
        memory = self._memory
        if memory is not None:
            memory.release_now(admission.pool, admission.lease)
            return
        if admission.local:  # the shared store never counted it
            self._local.release_now(admission.pool, admission.lease)
            return
        if not self._breaker.ready():
            return  # the store is out of reach: the lease expires there with its ttl
        try:
            await self.backend.release(admission.pool, admission.lease)
        except ThrottleUnavailable as exc:
            self._lost(exc)
        except EmberError as exc:
            log.warning("lease %s not released (it expires on its own): %s", admission.lease, exc)
        else:
            self._reached()

    def _lost(self, error: ThrottleUnavailable) -> None:
        """The shared store did not answer: said once per outage, not once per call."""
        if not self._breaker.failed():
            return
        self._store, self._since = error.store, datetime.now(UTC)
        consequence = (
            "every call is refused"
            if self._unavailable == "deny"
            else "calls are admitted without rate limits, concurrency counted on this node only"
        )
        log.error(
            "throttling is unavailable: %s; %s (--throttle-unavailable %s) until it answers",
            error.message,
            consequence,
            self._unavailable,
        )

    def _reached(self) -> None:
        if not self._breaker.succeeded():
            return
        lasted = (datetime.now(UTC) - self._since).total_seconds() if self._since else 0.0
        log.warning("%s answers again after %.1f s: throttling resumes", self._store, lasted)
        self._store = self._since = None

    async def health(self) -> dict[str, object]:
        """For /health: the backend, whether its store answers (asked now unless the
        breaker says it was just out of reach), and the operator's choice for outages."""
        if self._memory is None and self._breaker.ready():
            try:
                await self.backend.ping()
            except ThrottleUnavailable as exc:
                self._lost(exc)
            else:
                self._reached()
        return {
            "backend": self.backend.name,
            "available": self._breaker.closed,
            "unavailable": self._unavailable,
            "since": self._since.isoformat() if self._since else None,
        }

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

        ``exists(name)``: whether the function exists (after the registry loaded).
        A store out of reach at start-up refuses the start, whatever the outage
        choice: then it is far more often a wrong URL than an outage."""
        self._exists = exists
        await self.limits.load(exists)
        try:
            await self.backend.ping()
        except ThrottleUnavailable as exc:
            raise StartupRefused(f"the throttle cannot start: {exc.message}") from None

    async def close(self) -> None:
        await self.backend.close()


async def _sweep(memory: MemoryThrottleBackend) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        memory.sweep()


def _answer(
    result: Admit,
    pool: str,
    lease: str,
    limits: FunctionLimits | None,
    local: bool = False,
) -> Admission:
    """The backend's answer as an Admission, or the 429 that says who refused."""
    if result.refused is None:
        return Admission(pool, lease, result.decision, local)
    if result.refused == POOL:
        raise _concurrency_refused(reserved=limits is not None and limits.reserved is not None)
    # A rate check refused, so the function has a policy.
    by_caller = result.refused == 1 or limits is None or limits.function is None
    retry = result.decision.retry_after if result.decision else 1.0
    raise TooManyRequests(MESSAGE, REASONS[by_caller], retry)


def _concurrency_refused(reserved: bool) -> TooManyRequests:
    reason = (
        "ReservedFunctionConcurrentInvocationLimitExceeded"
        if reserved
        else "ConcurrentInvocationLimitExceeded"
    )
    return TooManyRequests(MESSAGE, reason, CONCURRENCY_RETRY_SECONDS)

"""Throttle contracts: rate-limit decisions and concurrency leases.

Two backends implement both: ``memory`` (one process, the default) and
``redis`` (shared by every frontend of a cluster, atomic Lua on Redis's own
clock). ``tests/contract/test_throttle_backends.py`` runs one behavioural
suite against each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

ALGORITHMS = (
    "fixed-window",
    "sliding-log",
    "sliding-window",
    "token-bucket",
    "leaky-bucket",
)


@dataclass(frozen=True)
class Policy:
    """A rate limit: ``limit`` requests per ``period`` seconds, shaped by ``algorithm``.

    ``burst`` is the bucket size of token-bucket and leaky-bucket (GCRA); the
    window algorithms admit ``limit`` per window of ``period`` and have none.
    """

    algorithm: str
    limit: int
    period: float
    burst: int | None = None

    @property
    def capacity(self) -> int:
        """What RateLimit-Limit announces: the most a fresh key admits at once."""
        return self.burst if self.burst is not None else self.limit

    @property
    def fingerprint(self) -> str:
        """Names the policy's parameters in storage keys: a changed policy starts afresh."""
        return f"{self.algorithm}:{self.limit}:{self.period:g}:{self.burst or 0}"


class Decision(NamedTuple):
    """One rate-limit answer. Times are seconds from now."""

    allowed: bool
    limit: int  # the policy's capacity (RateLimit-Limit)
    remaining: int  # what may still be admitted right now after this hit
    reset_after: float  # until the full capacity is available again
    retry_after: float  # until this hit would be admitted (0 when allowed)


class RateCheck(NamedTuple):
    key: str
    policy: Policy


class Admit(NamedTuple):
    """The result of ``ThrottleBackend.admit``.

    ``refused`` is None when admitted (the lease is taken), the index of the
    refusing rate check, or ``POOL`` when the concurrency pool is full.
    ``decision`` is the most restrictive rate decision seen (None without checks).
    """

    refused: int | None
    decision: Decision | None


POOL = -1


class RateLimiterBackend(Protocol):
    async def hit(self, key: str, policy: Policy, cost: int = 1) -> Decision:
        """Count ``cost`` against ``key`` under ``policy`` if it fits, atomically.

        A refused hit consumes nothing. Keys of different policies never share
        state (callers put ``policy.fingerprint`` in the key). Never blocks the
        event loop beyond one network round trip.
        """
        ...

    async def clear(self, key: str) -> None:
        """Forget ``key``'s state; the next hit sees a fresh key. Idempotent."""
        ...


class LeaseBackend(Protocol):
    async def acquire(self, pool: str, limit: int, lease: str, ttl: float) -> bool:
        """Take one lease named ``lease`` in ``pool`` if fewer than ``limit`` are held.

        Atomic: N concurrent acquires on a pool of k admit exactly min(N, k).
        A lease not released within ``ttl`` seconds stops counting (a crashed
        holder cannot leak capacity forever).
        """
        ...

    async def release(self, pool: str, lease: str) -> None:
        """Give ``lease`` back. Releasing twice, or an expired lease, is harmless."""
        ...

    async def in_use(self, pool: str) -> int:
        """Leases currently held (unexpired) in ``pool``."""
        ...


class ThrottleBackend(RateLimiterBackend, LeaseBackend, Protocol):
    """Every method may raise ``ThrottleUnavailable`` when a shared store cannot be
    reached (after a bounded wait, never retried inside: the gate decides what then)."""

    name: str  # "memory" or "redis": what /health calls it

    async def admit(
        self, checks: Sequence[RateCheck], pool: str, limit: int, lease: str, ttl: float
    ) -> Admit:
        """The one acquire path: every rate check in order, then a lease; all or nothing.

        If any check refuses, nothing is counted and no lease is taken. The
        Redis backend does it in one round trip.
        """
        ...

    async def ping(self) -> None:
        """Return once the store answers; raise ThrottleUnavailable if it cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...

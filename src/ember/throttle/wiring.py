"""Settings in, a Throttle out: the one place a throttle backend is chosen.

The per-function limits live in the ``limits`` metadata namespace, so in a
cluster every node enforces the same ones (changes of other nodes arrive
through the feed). The Throttle starts by loading them (after the registry:
those of deleted functions are dropped), runs its upkeep loop, stops it, and
closes its backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ember.config import Settings
from ember.lifecycle import Loop
from ember.storage.wiring import Storage
from ember.throttle.base import ThrottleBackend
from ember.throttle.gate import Throttle
from ember.throttle.limits import ThrottleLimits
from ember.throttle.memory import MemoryThrottleBackend

BACKENDS = ("memory", "redis")


def backend(settings: Settings) -> ThrottleBackend:
    if settings.throttle_backend == "memory":
        return MemoryThrottleBackend()
    if settings.throttle_backend == "redis":
        from ember.throttle.redis import RedisThrottleBackend

        # Frontends of one account share state; other accounts on the same Redis do not.
        return RedisThrottleBackend(settings.redis_url, prefix=f"ember:{settings.account_id}:")
    raise ValueError(
        f"unknown throttle backend {settings.throttle_backend!r}: choose one of {BACKENDS}"
    )


def build(
    settings: Settings, storage: Storage, account_of: Callable[[str], str | None] | None = None
) -> Throttle:
    """``account_of(function)``: the account owning it, None for the default account."""
    if settings.account_concurrency < 100:
        raise ValueError(
            f"account concurrency {settings.account_concurrency} is below Lambda's minimum "
            "unreserved concurrency (100)"
        )
    limits = ThrottleLimits(
        storage.metadata("limits"),
        settings.account_concurrency,
        account_of or (lambda function: None),
    )
    limits.prune_orphans = storage.database is None  # embedded: the only writer
    storage.feed.watch("limits", limits.apply_remote)
    return Throttle(
        backend(settings), limits, settings.init_timeout_seconds, settings.throttle_unavailable
    )


@dataclass(frozen=True)
class ThrottlePart:
    """The Throttle's part of the lifespan (see ``ember.lifecycle.Part``)."""

    throttle: Throttle
    exists: Callable[[str], bool]  # whether a function exists, once the registry loaded

    async def start(self) -> None:
        await self.throttle.start(self.exists)

    def loops(self) -> list[Loop]:
        return [self.throttle.run()]

    def stop(self) -> None:
        self.throttle.stop()

    async def close(self) -> None:
        await self.throttle.close()

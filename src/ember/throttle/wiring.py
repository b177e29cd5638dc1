"""Settings in, a Throttle out: the one place a throttle backend is chosen."""

from __future__ import annotations

from pathlib import Path

from ember.config import Settings
from ember.storage.sqlite import SqliteMetadataStore
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


def build(settings: Settings, data_dir: Path) -> Throttle:
    if settings.account_concurrency < 100:
        raise ValueError(
            f"account concurrency {settings.account_concurrency} is below Lambda's minimum "
            "unreserved concurrency (100)"
        )
    limits = ThrottleLimits(
        SqliteMetadataStore(data_dir / "limits.sqlite3"), settings.account_concurrency
    )
    return Throttle(
        backend(settings), limits, settings.init_timeout_seconds, settings.throttle_unavailable
    )

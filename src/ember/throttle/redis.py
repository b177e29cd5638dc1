"""The Redis throttle backend: one state shared by every frontend of a cluster.

Each decision is one ``EVALSHA`` of ``admit.lua`` (one round trip): the
script reads Redis's own clock (``TIME``), so frontends with skewed clocks
agree, and runs atomically, so N frontends enforce one limit together. Rate
state keys expire once they are back to fresh; leases are members of a
sorted set scored by their expiry, so a frontend that dies holding leases
frees them after their ttl.

Redis out of reach raises ``ThrottleUnavailable`` within about
``TIMEOUT_SECONDS`` (connect or reply), with no retry: what to do then (and
when to try again) is the gate's choice, see ``gate.py`` and ``breaker.py``.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as Unreachable
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as NoReply

from ember.errors import PlatformError, ThrottleUnavailable
from ember.throttle.base import POOL, Admit, Decision, Policy, RateCheck

_SCRIPT = resources.files("ember.throttle").joinpath("admit.lua").read_text()
_IN_USE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now))
return redis.call('ZCARD', KEYS[1])
"""
US = 1_000_000
# Connect and reply timeout. Admission is one short script on a nearby Redis
# (well under a millisecond); a Redis slower than this is treated as gone
# rather than let every call wait on it.
TIMEOUT_SECONDS = 0.5
# Connections per server process. A burst of calls shares them (a call waits a
# moment for one, at most TIMEOUT_SECONDS) instead of opening one each: a hundred
# connects at once on a loaded machine outlasted TIMEOUT_SECONDS, and the burst
# was refused as if Redis were gone.
MAX_CONNECTIONS = 16


def _seconds(us: Any) -> float:
    return max(0.0, int(us) / US)


def _where(url: str) -> str:
    """``Redis at HOST:PORT`` (or its socket path), never the URL: it may hold a password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"Redis at {parts.path}"
    return f"Redis at {parts.hostname or 'localhost'}:{parts.port or 6379}"


class RedisThrottleBackend:
    """See ``ember.throttle.base.ThrottleBackend``; ``prefix`` namespaces every key."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "ember:") -> None:
        # No retry: a retried admit could count twice, and a retry only adds
        # to the wait of a call during an outage.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
            socket_timeout=TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self.where = _where(url)
        self._prefix = prefix
        self._admit = self._redis.register_script(_SCRIPT)
        self._in_use = self._redis.register_script(_IN_USE)
        # Lease names of plain ``hit`` calls: unique across processes and calls.
        self._tokens = map(f"{secrets.token_hex(6)}-{{}}".format, itertools.count())

    def _failure(self, exc: RedisError) -> PlatformError:
        """ThrottleUnavailable when Redis is out of reach; PlatformError when it refused."""
        if isinstance(exc, Unreachable | NoReply):
            message = f"{self.where} cannot be reached: {exc}"
            return ThrottleUnavailable(message, self.where)
        return PlatformError(f"The throttle backend (Redis) failed: {exc}")

    async def _call(self, keys: list[str], args: list[Any]) -> list[Any]:
        try:
            reply: list[Any] = await self._admit(keys=keys, args=args)
        except RedisError as exc:
            raise self._failure(exc) from exc
        return reply

    @staticmethod
    def _checks(checks: Sequence[RateCheck]) -> list[Any]:
        args: list[Any] = []
        for _, policy in checks:
            args += [policy.algorithm, policy.limit, round(policy.period * US), policy.burst or 0]
        return args

    async def admit(
        self, checks: Sequence[RateCheck], pool: str, limit: int, lease: str, ttl: float
    ) -> Admit:
        prefix = self._prefix
        keys = [prefix + key for key, _ in checks]
        keys.append(prefix + pool)
        args = [len(checks), limit, lease, round(ttl * US), 1, *self._checks(checks)]
        reply = await self._call(keys, args)
        decision = None
        if len(reply) > 1:
            code, capacity, remaining, reset, retry = reply
            decision = Decision(code <= 0, capacity, remaining, _seconds(reset), _seconds(retry))
        code = reply[0]
        refused = None if code == 0 else (POOL if code < 0 else code - 1)
        return Admit(refused, decision)

    async def hit(self, key: str, policy: Policy, cost: int = 1) -> Decision:
        if cost > policy.capacity:
            return Decision(False, policy.capacity, policy.capacity, 0.0, math.inf)
        args = [1, -1, next(self._tokens), 0, cost, *self._checks([RateCheck(key, policy)])]
        code, capacity, remaining, reset, retry = await self._call([self._prefix + key], args)
        return Decision(code == 0, capacity, remaining, _seconds(reset), _seconds(retry))

    async def clear(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except RedisError as exc:
            raise self._failure(exc) from exc

    async def acquire(self, pool: str, limit: int, lease: str, ttl: float) -> bool:
        admitted = await self.admit((), pool, limit, lease, ttl)
        return admitted.refused is None

    async def release(self, pool: str, lease: str) -> None:
        try:
            await self._redis.zrem(self._prefix + pool, lease)
        except RedisError as exc:
            raise self._failure(exc) from exc

    async def in_use(self, pool: str) -> int:
        try:
            return int(await self._in_use(keys=[self._prefix + pool]))
        except RedisError as exc:
            raise self._failure(exc) from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise self._failure(exc) from exc

    async def close(self) -> None:
        await self._redis.aclose()

"""Per-function throttle settings: reserved concurrency and rate-limit policies.

Stored durably (one JSON document per function, in its own store of the
data directory) and served from memory: the hot path reads ``rules``, a dict
holding only the functions that have a setting, so a function without one
costs a single failed lookup. Writes go to the store first, then to memory,
under one lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.storage.base import MetadataStore
from ember.throttle.base import ALGORITHMS, Policy

log = logging.getLogger("ember.throttle")

MIN_UNRESERVED = 100
SCOPES = ("function", "caller")
BUCKETS = ("token-bucket", "leaky-bucket")
MAX_PERIOD = 86400.0
_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class FunctionLimits:
    reserved: int | None = None  # reserved concurrency; None: the unreserved pool
    function: Policy | None = None  # one limit for all callers together
    caller: Policy | None = None  # one limit per caller (access key, or address)

    def empty(self) -> bool:
        return self.reserved is None and self.function is None and self.caller is None

    def to_json(self) -> str:
        document: dict[str, Any] = {"reserved": self.reserved}
        for scope in SCOPES:
            policy: Policy | None = getattr(self, scope)
            if policy is not None:
                document[scope] = policy_document(policy)
        return orjson.dumps(document).decode()

    @classmethod
    def from_json(cls, document: str) -> FunctionLimits:
        data = orjson.loads(document)
        policies = {scope: _policy_of(data[scope]) for scope in SCOPES if data.get(scope)}
        return cls(reserved=data.get("reserved"), **policies)


def _policy_of(data: dict[str, Any]) -> Policy:
    return Policy(data["algorithm"], int(data["limit"]), float(data["period"]), data.get("burst"))


def format_rate(limit: int, period: float) -> str:
    for unit, seconds in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if period == seconds:
            return f"{limit}/{unit}"
    return f"{limit}/{period:g}s"


def policy_document(policy: Policy) -> dict[str, Any]:
    """A policy as the extension API shows it."""
    document: dict[str, Any] = {
        "algorithm": policy.algorithm,
        "rate": format_rate(policy.limit, policy.period),
        "limit": policy.limit,
        "period": policy.period,
    }
    if policy.burst is not None:
        document["burst"] = policy.burst
    return document


def parse_rate(text: str) -> tuple[int, float]:
    """``100/s``, ``6000/m``, ``10/5s``, ``1/h`` -> (limit, period in seconds)."""
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in _UNITS:
        raise InvalidParameterValue(
            f"Invalid rate {text!r}: expected LIMIT/UNIT such as 100/s, 6000/m or 10/5s "
            "(units s, m, h, d)."
        )
    count = float(match.group(2)) if match.group(2) else 1.0
    return int(match.group(1)), count * _UNITS[match.group(3)]


def parse_policy(body: dict[str, Any]) -> tuple[str, Policy]:
    """(scope, policy) from an extension-API body; names the bad value when refusing."""
    scope = body.get("scope", "function")
    if scope not in SCOPES:
        raise InvalidParameterValue(f"Invalid scope {scope!r}: use one of {', '.join(SCOPES)}.")
    algorithm = body.get("algorithm", "token-bucket")
    if algorithm not in ALGORITHMS:
        raise InvalidParameterValue(
            f"Invalid algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}."
        )
    limit: Any
    period: Any
    if isinstance(body.get("rate"), str):
        limit, period = parse_rate(body["rate"])
    else:
        limit, period = body.get("limit"), body.get("period", 1.0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidParameterValue(f"Invalid limit {limit!r}: a whole number of at least 1.")
    if (
        not isinstance(period, int | float)
        or not math.isfinite(period)
        or not 0.001 <= period <= MAX_PERIOD
    ):
        raise InvalidParameterValue(f"Invalid period {period!r}: 0.001 to 86400 seconds.")
    burst = body.get("burst")
    if burst is not None:
        if algorithm not in BUCKETS:
            raise InvalidParameterValue(
                f"burst applies to {' and '.join(BUCKETS)} only; {algorithm} admits "
                "LIMIT per window."
            )
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
            raise InvalidParameterValue(f"Invalid burst {burst!r}: a whole number of at least 1.")
    return scope, Policy(algorithm, limit, float(period), burst)


class ThrottleLimits:
    """The settings of every function; ``rules`` is the hot-path view."""

    # Rows of functions that do not exist are deleted at load (a delete cut short by
    # a crash). Not in a cluster: there another node may have just created the
    # function, and the feed brings it after the load.
    prune_orphans = True

    def __init__(
        self,
        store: MetadataStore,
        account_limit: int,
        account_of: Callable[[str], str | None] = lambda function: None,
    ) -> None:
        self._store = store
        # Every account's own limit: each has its own unreserved pool.
        self.account_limit = account_limit
        # The account owning a function (its key), None for the default account.
        self.account_of = account_of
        # Invariant: holds exactly the functions with a non-empty FunctionLimits.
        self.rules: dict[str, FunctionLimits] = {}
        # Invariant: account_limit - sum of the default account's reserved concurrency
        # (read on the hot path); other accounts' are in _unreserved.
        self.unreserved = account_limit
        # Invariant: every other account with a reservation -> its unreserved pool.
        self._unreserved: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._forgotten: set[str] = set()
        self._wake = asyncio.Event()

    async def load(self, exists: Callable[[str], bool]) -> None:
        """Read every stored setting; drop those of functions that no longer exist."""
        for name, document in (await self._store.load_all()).items():
            if exists(name):
                self.rules[name] = FunctionLimits.from_json(document)
            elif self.prune_orphans:
                await self._store.delete(name)
        self._recount()
        log.info("throttle settings loaded for %d function(s)", len(self.rules))

    def _recount(self) -> None:
        reserved: dict[str | None, int] = {}
        for name, limits in self.rules.items():
            if limits.reserved:
                account = self.account_of(name)
                reserved[account] = reserved.get(account, 0) + limits.reserved
        self.unreserved = self.account_limit - reserved.pop(None, 0)
        self._unreserved = {a: self.account_limit - r for a, r in reserved.items() if a}

    def unreserved_of(self, account: str | None) -> int:
        """The unreserved pool of ``account`` (None: the default account)."""
        if account is None:
            return self.unreserved
        return self._unreserved.get(account, self.account_limit)

    def get(self, name: str) -> FunctionLimits:
        return self.rules.get(name) or FunctionLimits()

    async def _write(self, name: str, limits: FunctionLimits) -> None:
        if limits.empty():
            await self._store.delete(name)
            self.rules.pop(name, None)
        else:
            await self._store.put(name, limits.to_json())
            self.rules[name] = limits
        self._forgotten.discard(name)
        self._recount()

    async def put_reserved(self, name: str, value: int) -> None:
        async with self._lock:
            current = self.get(name)
            unreserved = self.unreserved_of(self.account_of(name))
            others = self.account_limit - unreserved - (current.reserved or 0)
            if self.account_limit - others - value < MIN_UNRESERVED:
                raise InvalidParameterValue(
                    "Specified ReservedConcurrentExecutions for function decreases account's "
                    f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}]."
                )
            await self._write(name, replace(current, reserved=value))

    async def delete_reserved(self, name: str) -> None:
        async with self._lock:
            await self._write(name, replace(self.get(name), reserved=None))

    async def put_policy(self, name: str, scope: str, policy: Policy) -> None:
        async with self._lock:
            changes: dict[str, Any] = {scope: policy}
            await self._write(name, replace(self.get(name), **changes))

    async def delete_policy(self, name: str, scope: str | None) -> None:
        """Remove one scope's policy, or both; a missing policy is ResourceNotFound."""
        async with self._lock:
            current = self.get(name)
            scopes = [scope] if scope else list(SCOPES)
            if all(getattr(current, s) is None for s in scopes):
                raise ResourceNotFound(f"Function {name} has no {scope or 'rate'} limit.")
            cleared: dict[str, Any] = dict.fromkeys(scopes)
            await self._write(name, replace(current, **cleared))

    async def apply_remote(self, name: str, document: str | None) -> None:
        """The feed's callback (namespace ``limits``): another node changed ``name``'s
        settings; ``rules`` follows (in place: the Throttle holds the same dict) and
        nothing is written. Idempotent."""
        async with self._lock:
            limits = None if document is None else FunctionLimits.from_json(document)
            if limits is None or limits.empty():
                self.rules.pop(name, None)
            else:
                self.rules[name] = limits
            self._forgotten.discard(name)
            self._recount()

    def forget(self, name: str, local: bool = True) -> None:
        """The function is gone: stop applying its settings now, delete them soon.

        Called synchronously by the registry's change listener; the durable
        delete is done by ``run`` (and by ``load`` after a crash), on the node
        that deleted the function (``local``) only.
        """
        if self.rules.pop(name, None) is not None:
            self._recount()
            if local:
                self._forgotten.add(name)
                self._wake.set()

    async def run(self) -> None:
        """Delete the stored settings of forgotten functions; runs for the server's life."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                for name in list(self._forgotten):
                    if name not in self.rules:
                        await self._store.delete(name)
                    self._forgotten.discard(name)

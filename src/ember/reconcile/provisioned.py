"""Provisioned concurrency through Lambda's API: the configs, Lambda's rules, the loop.

Put/Get/Delete/ListProvisionedConcurrencyConfigs keep one config per
function and qualifier (a published version or an alias, never ``$LATEST``)
in the ``provisioned`` MetadataStore, keyed ``KEY:QUALIFIER``; other nodes
follow through the feed. Put answers ``IN_PROGRESS`` at once; sandboxes are
started by ``run``, the loop (the ``controller`` duty's, beside the manifest
controller), which converges every config through ``Executor.provision`` (this
node's Worker Manager, or the worker hosts in a cluster) and writes what it
found back into the config: ``READY`` once all requested sandboxes are
initialized, ``FAILED`` with ``StatusReason`` when Init fails (kept until the
config or the function changes).

Manifests (``spec.concurrency.provisioned``) keep sandboxes of ``$LATEST``, which
this API may not name: each revision has one owner and one desired count, so
the two never contend for the same sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ember.control.arns import LATEST, Arns
from ember.control.models import FunctionRecord
from ember.control.registry import FunctionRegistry, lambda_timestamp
from ember.errors import (
    EmberError,
    InvalidParameterValue,
    ProvisionedConcurrencyConfigNotFound,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.sandbox.base import InitFailed
from ember.scheduling.executor import Executor
from ember.storage.base import MetadataStore
from ember.text import is_decimal

log = logging.getLogger("ember.control")

# Lambda keeps at least this much of an account's concurrency unreserved.
MIN_UNRESERVED = 100
_UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
_NOT_FOUND = "No Provisioned Concurrency Config found for this function"
# reserved(function key) -> its reserved concurrency or None; unreserved(account) -> the
# account's unreserved pool (ember.throttle.limits, handed in: a sibling layer).
Reserved = Callable[[str], "int | None"]
Unreserved = Callable[[str], int]


class Status(enum.Enum):
    IN_PROGRESS = "IN_PROGRESS"  # put; sandboxes being initialized
    READY = "READY"  # every requested sandbox is initialized
    FAILED = "FAILED"  # Init failed; StatusReason says why; not retried for this revision


@dataclass(frozen=True)
class ProvisionedConfig:
    function: str  # the function's storage key
    qualifier: str  # a version number or an alias name
    requested: int
    last_modified: str  # Lambda's timestamp format
    # What the loop last found (written back by it): initialized sandboxes, the
    # status, and the revision they belong to. Invariant: reason is set only on FAILED.
    allocated: int = 0
    status: str = Status.IN_PROGRESS.value
    reason: str | None = None
    revision: str | None = None

    @property
    def key(self) -> str:
        return f"{self.function}:{self.qualifier}"

    def to_json(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_json(cls, document: str) -> ProvisionedConfig:
        return cls(**orjson.loads(document))

    def document(self, arns: Arns, listed: bool = False) -> dict[str, Any]:
        """Get's shape; with ``listed``, a ListProvisionedConcurrencyConfigs item."""
        body: dict[str, Any] = {}
        if listed:
            body["FunctionArn"] = arns.function(self.function, self.qualifier)
        body.update(
            RequestedProvisionedConcurrentExecutions=self.requested,
            AvailableProvisionedConcurrentExecutions=self.allocated,
            AllocatedProvisionedConcurrentExecutions=self.allocated,
            Status=self.status,
            LastModified=self.last_modified,
        )
        if self.reason is not None:
            body["StatusReason"] = self.reason
        return body


class ProvisionedConcurrency:
    """The configs (Lambda's rules on writes) and the loop that keeps their sandboxes."""

    def __init__(
        self,
        store: MetadataStore,
        registry: FunctionRegistry,
        manager: Executor,
        arns: Arns,
        reserved: Reserved,
        unreserved: Unreserved,
        check_seconds: float = 1.0,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._registry = registry
        self._manager = manager
        self._arns = arns
        self._reserved = reserved
        self._unreserved = unreserved
        self._check = check_seconds
        self._wall = wall
        self._configs: dict[str, ProvisionedConfig] = {}
        self._lock = asyncio.Lock()
        # Revisions the loop keeps sandboxes for, with their records (to let go of them).
        self._kept: dict[str, FunctionRecord] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        registry.subscribe(lambda name, local: self._wake.set())
        registry.on_delete(self._function_deleted)

    async def load(self) -> None:
        for document in (await self._store.load_all()).values():
            config = ProvisionedConfig.from_json(document)
            self._configs[config.key] = config
        log.info("provisioned concurrency configs loaded: %d", len(self._configs))

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``provisioned``). Idempotent."""
        async with self._lock:
            if document is None:
                self._configs.pop(key, None)
            else:
                self._configs[key] = ProvisionedConfig.from_json(document)
        self._wake.set()

    # --- the API ---------------------------------------------------------------

    def get(self, function: str, qualifier: str | None) -> ProvisionedConfig:
        self._record(function, _published(qualifier, get=True))
        found = self._configs.get(f"{function}:{qualifier}")
        if found is None:
            raise ProvisionedConcurrencyConfigNotFound(_NOT_FOUND)
        return found

    def list(
        self, function: str, marker: str | None, max_items: str | None
    ) -> tuple[list[ProvisionedConfig], str | None]:
        """(configs of ``function`` in qualifier order after ``marker``, the next marker)."""
        self._registry.version(function, None)
        limit = _max_items(max_items)
        configs = sorted(
            (c for c in self._configs.values() if c.function == function),
            key=lambda c: c.qualifier,
        )
        if marker:
            configs = [c for c in configs if c.qualifier > marker]
        page = configs[:limit]
        return page, page[-1].qualifier if len(configs) > limit else None

    async def put(
        self, function: str, qualifier: str | None, body: dict[str, Any]
    ) -> ProvisionedConfig:
        requested = _requested(body)
        qualifier = _published(qualifier)
        record = self._record(function, qualifier)
        async with self._lock:
            self._check_conflicts(function, qualifier, record)
            self._check_concurrency(function, qualifier, requested)
            config = ProvisionedConfig(
                function, qualifier, requested, lambda_timestamp(self._wall())
            )
            await self._store.put(config.key, config.to_json())
            self._configs[config.key] = config
        self._wake.set()
        return config

    async def delete(self, function: str, qualifier: str | None) -> None:
        qualifier = _published(qualifier, get=True)
        self._record(function, qualifier)
        async with self._lock:
            if self._configs.pop(f"{function}:{qualifier}", None) is not None:
                await self._store.delete(f"{function}:{qualifier}")
        self._wake.set()

    def _record(self, function: str, qualifier: str) -> FunctionRecord:
        """The version ``qualifier`` names (an alias: its primary version); Lambda's 404."""
        return self._registry.version(function, qualifier)

    def _check_conflicts(self, function: str, qualifier: str, record: FunctionRecord) -> None:
        if not is_decimal(qualifier):
            alias = self._registry.get_alias(function, qualifier)
            if alias.function_version == LATEST:
                raise InvalidParameterValue(_UNPUBLISHED)
            if alias.weights:
                raise InvalidParameterValue(
                    "Alias with weights can not be used with Provisioned Concurrency"
                )
            if f"{function}:{alias.function_version}" in self._configs:
                raise ResourceConflict(
                    "Alias can't be used for Provisioned Concurrency configuration on an "
                    "already Provisioned version"
                )
            return
        for config in self._configs.values():
            if config.function != function or is_decimal(config.qualifier):
                continue
            with contextlib.suppress(ResourceNotFound):
                if self._registry.get_alias(function, config.qualifier).function_version == (
                    record.version
                ):
                    raise ResourceConflict("Version is pointed by a Provisioned Concurrency alias")

    def _check_concurrency(self, function: str, qualifier: str, requested: int) -> None:
        """Lambda's limits: within the function's reserved concurrency, and the account
        keeps MIN_UNRESERVED unreserved."""
        others = sum(
            c.requested
            for c in self._configs.values()
            if c.function == function and c.qualifier != qualifier
        )
        reserved = self._reserved(function)
        if reserved is not None:
            if others + requested > reserved:
                raise InvalidParameterValue(
                    "Requested Provisioned Concurrency should not be greater than the "
                    "reservedConcurrentExecution for function"
                )
            return
        account = self._arns.owner(function)[0]
        unreserved = self._unreserved(account)
        taken = sum(
            c.requested
            for c in self._configs.values()
            if self._arns.owner(c.function)[0] == account
            and self._reserved(c.function) is None
            and c.key != f"{function}:{qualifier}"
        )
        if requested > unreserved:
            raise InvalidParameterValue(
                "Specified ConcurrentExecutions for function is greater than account's "
                f"unreserved concurrency [{unreserved}]."
            )
        if unreserved - taken - requested < MIN_UNRESERVED:
            raise InvalidParameterValue(
                "Specified ConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}]."
            )

    async def _function_deleted(self, function: str) -> None:
        async with self._lock:
            for key in [k for k, c in self._configs.items() if c.function == function]:
                del self._configs[key]
                await self._store.delete(key)

    # --- the loop --------------------------------------------------------------

    async def run(self) -> None:
        """Converge every config until ``stop``; runs while this node holds the duty."""
        try:
            while not self._stopping:
                await self.converge()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._check)
        finally:
            await self._let_go(set())  # another node takes the duty over

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def converge(self) -> None:
        """One pass: each config's sandboxes kept, its status written back when it moved."""
        wanted: set[str] = set()
        for config in list(self._configs.values()):
            try:
                record = self._record(config.function, config.qualifier)
            except ResourceNotFound:
                await self._forget(config)  # its version or alias is gone
                continue
            wanted.add(record.revision_id)
            self._kept[record.revision_id] = record
            await self._report(config, record, *await self._provision(config, record))
        await self._let_go(wanted)

    async def _provision(
        self, config: ProvisionedConfig, record: FunctionRecord
    ) -> tuple[int, Status, str | None]:
        failed = config.status == Status.FAILED.value and config.revision == record.revision_id
        if failed:
            return 0, Status.FAILED, config.reason
        try:
            live = await self._manager.provision(record, config.requested)
        except InitFailed:
            return 0, Status.FAILED, "FUNCTION_ERROR_INIT_FAILURE"
        except EmberError as exc:  # no room for the sandboxes: tried again next pass
            log.warning("provisioning %s: %s", config.key, exc.message)
            return 0, Status.IN_PROGRESS, None
        return live, Status.READY if live >= config.requested else Status.IN_PROGRESS, None

    async def _report(
        self,
        config: ProvisionedConfig,
        record: FunctionRecord,
        live: int,
        status: Status,
        reason: str | None,
    ) -> None:
        found = (live, status.value, reason, record.revision_id)
        if found == (config.allocated, config.status, config.reason, config.revision):
            return
        async with self._lock:
            current = self._configs.get(config.key)
            if current is None or current.last_modified != config.last_modified:
                return  # put again or deleted meanwhile: the next pass judges that one
            updated = dataclasses.replace(
                current, allocated=live, status=status.value, reason=reason, revision=found[3]
            )
            await self._store.put(updated.key, updated.to_json())
            self._configs[updated.key] = updated

    async def _forget(self, config: ProvisionedConfig) -> None:
        async with self._lock:
            if self._configs.pop(config.key, None) is not None:
                await self._store.delete(config.key)

    async def _let_go(self, wanted: set[str]) -> None:
        """Revisions no config wants any more give their provisioned sandboxes up."""
        for revision in set(self._kept) - wanted:
            with contextlib.suppress(EmberError, InitFailed):
                await self._manager.provision(self._kept.pop(revision), 0)


def _published(qualifier: str | None, get: bool = False) -> str:
    """The qualifier, which must name a version or an alias (Lambda's messages)."""
    if qualifier is None:
        raise ValidationError.constraint(None, "qualifier", "Member must not be null")
    if qualifier == LATEST:
        if get:
            raise InvalidParameterValue(
                "The function resource provided must be an alias or a published version."
            )
        raise InvalidParameterValue(_UNPUBLISHED)
    return qualifier


def _requested(body: dict[str, Any]) -> int:
    value = body.get("ProvisionedConcurrentExecutions")
    if value is None:
        raise ValidationError.constraint(
            None, "provisionedConcurrentExecutions", "Member must not be null"
        )
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError.constraint(
            value,
            "provisionedConcurrentExecutions",
            "Member must have value greater than or equal to 1",
        )
    return value


def _max_items(raw: str | None) -> int:
    if raw is None:
        return 50
    if not is_decimal(raw) or not 1 <= int(raw) <= 50:
        raise ValidationError.constraint(raw, "maxItems", "Member must have value between 1 and 50")
    return int(raw)


__all__ = ["ProvisionedConcurrency", "ProvisionedConfig", "Status"]

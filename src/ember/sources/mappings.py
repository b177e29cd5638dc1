"""Event source mappings: Lambda's API over them, their states, their storage.

A mapping ties a queue of a declared broker (``ember.sources.brokers``) to a
function (or one of its versions or aliases). Create, Update and Delete
answer at once with a transitional state (``Creating``, ``Updating``,
``Enabling``, ``Disabling``, ``Deleting``); the pollers
(``ember.sources.pollers``) act on it, then ``settle`` the mapping into
``Enabled`` or ``Disabled`` (or remove it). Mappings are kept in memory (the
pollers read them) and written through to the ``mappings`` metadata
namespace, keyed by UUID; in a cluster other nodes' writes arrive through the
change feed (``apply_remote``). As on Lambda, deleting a function leaves its
mappings: they stop delivering (``LastProcessingResult`` says why) until the
function exists again or the mapping is deleted. A mapping's tags (Create's
``Tags``, TagResource on its ARN) live with the functions' in
``ember.control.tags`` and go with the mapping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from ember.control import arns
from ember.control import tags as tag_rules
from ember.control.arns import Arns
from ember.control.tags import FunctionTags
from ember.control.validation import integer
from ember.errors import (
    InvalidParameterValue,
    ResourceConflict,
    ResourceInUse,
    ResourceNotFound,
    ValidationError,
)
from ember.sources import fields
from ember.sources.brokers import NATS, Brokers
from ember.storage.base import MetadataStore

Clock = Callable[[], float]
Exists = Callable[[str, "str | None"], bool]  # (key, qualifier) names a function
Listener = Callable[[], None]

DEFAULT_BATCH = 100
MAX_BATCH = 10_000
MAX_WINDOW = 300
MAX_PAGE = 10_000
DEFAULT_PAGE = 100
NO_RECORDS = "No records processed"
USER = "USER_INITIATED"
_NOT_FOUND = "The resource you requested does not exist."


class State(Enum):
    CREATING = "Creating"  # stored by Create; the pollers have not acted on it yet
    ENABLING = "Enabling"  # Update turned a disabled mapping on
    ENABLED = "Enabled"  # consumed: every node runs its pollers (competing consumers)
    DISABLING = "Disabling"  # Update turned it off; pollers stop, unacked messages return
    DISABLED = "Disabled"  # kept, not consumed
    UPDATING = "Updating"  # Update changed settings; pollers restart with them
    DELETING = "Deleting"  # Delete answered; pollers stop, then the row goes

    @property
    def transient(self) -> bool:
        return self not in (State.ENABLED, State.DISABLED)


@dataclass(frozen=True)
class Mapping:
    """One event source mapping as stored (the document of its row)."""

    uuid: str
    function: str  # the function's storage key (its account is the mapping's)
    qualifier: str | None  # a version or alias, or None for the unqualified function
    event_source_arn: str
    queue: str  # RabbitMQ: the queue; NATS JetStream: the subject filter
    access: tuple[tuple[str, str], ...]  # SourceAccessConfigurations (Type, URI), as given
    batch_size: int
    window: int | None  # MaximumBatchingWindowInSeconds; None: not given (0.5 s, as Lambda)
    enabled: bool
    state: State
    reason: str  # StateTransitionReason
    last_modified: float  # epoch seconds
    last_result: str = NO_RECORDS  # LastProcessingResult

    @property
    def vhost(self) -> str | None:
        """The VIRTUAL_HOST the mapping names (None: the broker URL's own)."""
        return next((uri for kind, uri in self.access if kind == "VIRTUAL_HOST"), None)

    @property
    def target(self) -> str:
        """What the pollers invoke: ``key`` or ``key:qualifier``."""
        return f"{self.function}:{self.qualifier}" if self.qualifier else self.function

    @property
    def window_seconds(self) -> float:
        return 0.5 if self.window is None else float(self.window)

    def describe(self, names: Arns) -> dict[str, Any]:
        """EventSourceMappingConfiguration as Lambda answers it."""
        account = names.owner(self.function)[0]
        body: dict[str, Any] = {
            "UUID": self.uuid,
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": 0 if self.window is None else self.window,
            "EventSourceArn": self.event_source_arn,
            "FunctionArn": names.function(self.function, self.qualifier),
            "LastModified": self.last_modified,
            "LastProcessingResult": self.last_result,
            "State": self.state.value,
            "StateTransitionReason": self.reason,
            "Queues": [self.queue],
            "EventSourceMappingArn": (
                f"arn:aws:lambda:{names.region}:{account}:event-source-mapping:{self.uuid}"
            ),
        }
        if self.access:
            body["SourceAccessConfigurations"] = [
                {"Type": kind, "URI": uri} for kind, uri in self.access
            ]
        return body

    def to_json(self) -> str:
        document = dataclasses.asdict(self)
        document["state"] = self.state.value
        return orjson.dumps(document).decode()

    @classmethod
    def from_json(cls, document: str) -> Mapping:
        data = orjson.loads(document)
        data["state"] = State(data["state"])
        data["access"] = tuple(tuple(pair) for pair in data["access"])
        return cls(**data)


class EventSourceMappings:
    """The service behind the event-source-mapping API and the pollers' reads."""

    def __init__(
        self,
        store: MetadataStore,
        exists: Exists,
        names: Arns,
        brokers: Brokers,
        clock: Clock = time.time,
        tags: FunctionTags | None = None,
    ) -> None:
        self._store = store
        self._exists = exists
        self._arns = names
        self.brokers = brokers
        self._clock = clock
        self._mappings: dict[str, Mapping] = {}
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        # Create's ``Tags`` land there; TagResource finds the mapping through ``get``.
        self._tags = tags
        if tags is not None:
            tags.bind_mappings(self._owns)

    def _owns(self, mapping_id: str, account: str) -> bool:
        try:
            self.get(mapping_id, account)
        except ResourceNotFound:
            return False
        return True

    # -- state shared with the pollers ------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener()`` after every change, local or from another node."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def all(self) -> list[Mapping]:
        return list(self._mappings.values())

    def lookup(self, mapping_id: str) -> Mapping | None:
        return self._mappings.get(mapping_id)

    def function_exists(self, mapping: Mapping) -> bool:
        return self._exists(mapping.function, mapping.qualifier)

    async def load(self) -> None:
        for document in (await self._store.load_all()).values():
            mapping = Mapping.from_json(document)
            self._mappings[mapping.uuid] = mapping
        if self._tags is not None:
            await self._tags.prune_mappings(lambda mapping_id: mapping_id in self._mappings)
        self._changed()

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``mappings``): memory follows another node."""
        if document is None:
            self._mappings.pop(key, None)
        else:
            self._mappings[key] = Mapping.from_json(document)
        self._changed()

    async def settle(self, mapping_id: str, expected: State) -> None:
        """The pollers acted on ``expected``: move the mapping to its resting state
        (Enabled, Disabled, or removed after Deleting). Does nothing when the mapping
        moved on meanwhile (another change, another node), so it never undoes one."""
        async with self._lock:
            mapping = self._mappings.get(mapping_id)
            if mapping is None or mapping.state is not expected or not expected.transient:
                return
            if expected is State.DELETING:
                await self._store.delete(mapping_id)
                del self._mappings[mapping_id]
                if self._tags is not None:
                    await self._tags.forget(tag_rules.mapping_key(mapping_id))
            else:
                rest = State.ENABLED if mapping.enabled else State.DISABLED
                await self._save(dataclasses.replace(mapping, state=rest))
        self._changed()

    async def report(self, mapping_id: str, result: str) -> None:
        """Record the pollers' ``LastProcessingResult`` (written only when it changes)."""
        async with self._lock:
            mapping = self._mappings.get(mapping_id)
            if mapping is None or mapping.last_result == result:
                return
            await self._save(dataclasses.replace(mapping, last_result=result))

    # -- the API ---------------------------------------------------------------------

    def get(self, mapping_id: str, account: str) -> Mapping:
        mapping = self._mappings.get(mapping_id)
        if mapping is None or self._arns.owner(mapping.function)[0] != account:
            raise ResourceNotFound(_NOT_FOUND)
        return mapping

    def list(
        self,
        account: str,
        function: str | None,
        event_source_arn: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[Mapping], str | None]:
        """ListEventSourceMappings: the caller's account's, filtered, by UUID."""
        limit = DEFAULT_PAGE if max_items is None else max_items
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError.constraint(
                limit, "maxItems", f"Member must have value between 1 and {MAX_PAGE}"
            )
        found = [m for m in self._mappings.values() if self._arns.owner(m.function)[0] == account]
        if function is not None:
            key, qualifier = self._function(function, account)
            found = [m for m in found if m.function == key and m.qualifier == qualifier]
        if event_source_arn is not None:
            found = [m for m in found if m.event_source_arn == event_source_arn]
        found.sort(key=lambda m: m.uuid)
        if marker:
            found = [m for m in found if m.uuid > marker]
        more = len(found) > limit
        return found[:limit], found[limit - 1].uuid if more else None

    async def create(self, body: dict[str, Any], account: str) -> Mapping:
        """CreateEventSourceMapping: stored as ``Creating``; the pollers take it on."""
        fields.refuse_foreign(body)
        name = body.get("FunctionName")
        if not isinstance(name, str):
            raise ValidationError.constraint(None, "functionName", "Member must not be null")
        key, qualifier = self._function(name, account)
        if not self._exists(key, qualifier):
            raise ResourceNotFound("Function does not exist")
        arn = fields.event_source_arn(body.get("EventSourceArn"))
        broker = self.brokers.resolve(arn)
        queue = fields.queue(body.get("Queues"))
        access = fields.access(body.get("SourceAccessConfigurations"))
        if broker.kind == NATS and any(kind == "VIRTUAL_HOST" for kind, _ in access):
            raise InvalidParameterValue("VIRTUAL_HOST applies to RabbitMQ brokers only.")
        batch = integer(body, "BatchSize", "batchSize", 1, MAX_BATCH)
        window = integer(
            body, "MaximumBatchingWindowInSeconds", "maximumBatchingWindowInSeconds", 0, MAX_WINDOW
        )
        enabled = fields.enabled(body)
        tags = tag_rules.check(body.get("Tags"))
        if tags and self._tags is None:
            raise InvalidParameterValue("Tags are not available on this server.")
        async with self._lock:
            self._conflict(arn, key, qualifier, queue)
            mapping = Mapping(
                uuid=str(uuid.uuid4()),
                function=key,
                qualifier=qualifier,
                event_source_arn=arn,
                queue=queue,
                access=access,
                batch_size=DEFAULT_BATCH if batch is None else batch,
                window=window,
                enabled=True if enabled is None else enabled,
                state=State.CREATING,
                reason=USER,
                last_modified=self._clock(),
            )
            await self._save(mapping)
            if tags and self._tags is not None:
                await self._tags.tag(tag_rules.mapping_key(mapping.uuid), tags)
        self._changed()
        return mapping

    async def update(self, mapping_id: str, body: dict[str, Any], account: str) -> Mapping:
        """UpdateEventSourceMapping: only the members given change."""
        fields.refuse_foreign(body)
        async with self._lock:
            old = self.get(mapping_id, account)
            if old.state.transient:
                raise ResourceInUse(
                    "Cannot update the event source mapping because it is in use "
                    f"(state {old.state.value})."
                )
            changes = self._changes(old, body, account)
            mapping = dataclasses.replace(old, **changes, reason=USER, last_modified=self._clock())
            if (mapping.function, mapping.qualifier) != (old.function, old.qualifier):
                self._conflict(
                    mapping.event_source_arn, mapping.function, mapping.qualifier, mapping.queue
                )
            await self._save(dataclasses.replace(mapping, state=_updating(old, mapping)))
        self._changed()
        return self._mappings[mapping_id]

    async def delete(self, mapping_id: str, account: str) -> Mapping:
        """DeleteEventSourceMapping: answered ``Deleting``; the pollers stop, then it goes."""
        async with self._lock:
            old = self.get(mapping_id, account)
            if old.state in (State.CREATING, State.UPDATING, State.DELETING):
                raise ResourceInUse(
                    "Cannot delete the event source mapping because it is in use "
                    f"(state {old.state.value})."
                )
            mapping = dataclasses.replace(
                old, state=State.DELETING, reason=USER, last_modified=self._clock()
            )
            await self._save(mapping)
        self._changed()
        return mapping

    # -- helpers ---------------------------------------------------------------------

    async def _save(self, mapping: Mapping) -> None:
        await self._store.put(mapping.uuid, mapping.to_json())
        self._mappings[mapping.uuid] = mapping

    def _function(self, identifier: str, account: str) -> tuple[str, str | None]:
        ref = arns.parse_client(identifier)
        qualifier = None if ref.qualifier == arns.LATEST else ref.qualifier
        return self._arns.resolve(ref, account), qualifier

    def _conflict(self, arn: str, key: str, qualifier: str | None, queue: str) -> None:
        for mapping in self._mappings.values():
            if (mapping.event_source_arn, mapping.function, mapping.qualifier, mapping.queue) == (
                arn,
                key,
                qualifier,
                queue,
            ):
                raise ResourceConflict(
                    f'The event source arn (" {arn} ") and function '
                    f'(" {arns.bare(key)} ") provided mapping already exists. Please update '
                    f"or delete the existing mapping with UUID {mapping.uuid}"
                )

    def _changes(self, old: Mapping, body: dict[str, Any], account: str) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if body.get("FunctionName") is not None:
            key, qualifier = self._function(str(body["FunctionName"]), account)
            if not self._exists(key, qualifier):
                raise ResourceNotFound("Function does not exist")
            if self._arns.owner(key)[0] != self._arns.owner(old.function)[0]:
                raise InvalidParameterValue(
                    "A mapping's function must be a function of the mapping's own account."
                )
            changes["function"], changes["qualifier"] = key, qualifier
        batch = integer(body, "BatchSize", "batchSize", 1, MAX_BATCH)
        if batch is not None:
            changes["batch_size"] = batch
        window = integer(
            body, "MaximumBatchingWindowInSeconds", "maximumBatchingWindowInSeconds", 0, MAX_WINDOW
        )
        if window is not None:
            changes["window"] = window
        enabled = fields.enabled(body)
        if enabled is not None:
            changes["enabled"] = enabled
        if body.get("SourceAccessConfigurations") is not None:
            access = fields.access(body["SourceAccessConfigurations"])
            vhost = next((uri for kind, uri in access if kind == "VIRTUAL_HOST"), None)
            if vhost is not None and vhost != old.vhost:
                raise InvalidParameterValue(
                    "VIRTUAL_HOST cannot be changed by UpdateEventSourceMapping: delete the "
                    "mapping and create it again."
                )
            if vhost is None and old.vhost is not None:
                access = (*access, ("VIRTUAL_HOST", old.vhost))
            changes["access"] = access
        return changes


def _updating(old: Mapping, new: Mapping) -> State:
    """The transitional state an update moves the mapping into."""
    if new.enabled and not old.enabled:
        return State.ENABLING
    if old.enabled and not new.enabled:
        return State.DISABLING
    return State.UPDATING


__all__ = ["EventSourceMappings", "Mapping", "State"]

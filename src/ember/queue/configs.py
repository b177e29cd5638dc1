"""Event-invoke-configs: Lambda's per-function settings for asynchronous invocation.

Put replaces, Update merges, Get/Delete/List read and remove; the validation
messages are Lambda's. Configs are cached in memory (pollers read one per
event) and written through to the queue backend's ``ConfigStore``. A config
belongs to ``$LATEST``, a published version or an alias; an event queued for
``name:qualifier`` follows that qualifier's config.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ember.control import arns
from ember.control.arns import Arns
from ember.control.validation import integer
from ember.errors import InvalidParameterValue, ResourceNotFound, ValidationError
from ember.queue.base import ConfigStore
from ember.queue.retry import DEFAULT_MAX_AGE, DEFAULT_RETRIES, RetryPolicy

log = logging.getLogger("ember.queue")

Exists = Callable[[str], bool]  # "name" or "name:qualifier" exists
_DESTINATION_PATTERN = (
    r"^$|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1})?:"
    r"(\d{12})?:(.*)"
)
_DESTINATION = re.compile(_DESTINATION_PATTERN)
MAX_PAGE = 50


@dataclass(frozen=True)
class EventInvokeConfig:
    function: str
    qualifier: str
    last_modified: float  # epoch seconds, as Lambda returns it
    maximum_retry_attempts: int | None = None
    maximum_event_age: int | None = None
    on_success: str | None = None  # a function ARN of this ember
    on_failure: str | None = None

    def policy(self, base_delay: float) -> RetryPolicy:
        retries = self.maximum_retry_attempts
        age = self.maximum_event_age
        return RetryPolicy(
            DEFAULT_RETRIES if retries is None else retries,
            DEFAULT_MAX_AGE if age is None else age,
            base_delay,
        )

    def describe(self, names: Arns) -> dict[str, Any]:
        """FunctionEventInvokeConfig as Lambda answers it."""
        body: dict[str, Any] = {
            "LastModified": self.last_modified,
            "FunctionArn": names.function(self.function, self.qualifier),
        }
        if self.maximum_retry_attempts is not None:
            body["MaximumRetryAttempts"] = self.maximum_retry_attempts
        if self.maximum_event_age is not None:
            body["MaximumEventAgeInSeconds"] = self.maximum_event_age
        body["DestinationConfig"] = {
            "OnSuccess": {"Destination": self.on_success} if self.on_success else {},
            "OnFailure": {"Destination": self.on_failure} if self.on_failure else {},
        }
        return body

    def to_json(self) -> str:
        return orjson.dumps(self.__dict__).decode()

    @classmethod
    def from_json(cls, document: str) -> EventInvokeConfig:
        return cls(**orjson.loads(document))


@dataclass(frozen=True)
class _Settings:
    """A request body, validated; None means "not given"."""

    retries: int | None
    age: int | None
    destinations: dict[str, str | None] | None  # {"OnSuccess": arn|None, "OnFailure": ...}


class EventInvokeConfigs:
    """The service behind the event-invoke-config API and the pollers' policy lookups."""

    # Rows of functions that do not exist are deleted at load (a delete cut short by
    # a crash). Not in a cluster: there another node may have just created the
    # function, and the feed brings it after the load.
    prune_orphans = True

    def __init__(
        self,
        store: ConfigStore,
        exists: Exists,
        names: Arns,
        base_delay: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._exists = exists
        self._arns = names
        self._base_delay = base_delay
        self._clock = clock
        self._configs: dict[tuple[str, str], EventInvokeConfig] = {}

    async def load(self) -> None:
        """Read every config; drop those whose function is gone (deleted while down)."""
        for (function, qualifier), document in (await self._store.load_configs()).items():
            if self._exists(_target(function, qualifier)):
                self._configs[(function, qualifier)] = EventInvokeConfig.from_json(document)
            elif self.prune_orphans:
                await self._store.delete_config(function, qualifier)

    def forget(self, function: str, local: bool = True) -> None:
        """Registry listener: a deleted function's configs go with it, and a deleted
        version's or alias's (from memory now, from the store at the next load).
        The stored configs of a deleted function are removed by the node that
        deleted it (``local``); the others hear of it through the feed."""
        if self._exists(function):
            for key in [key for key in self._configs if key[0] == function]:
                if not self._exists(_target(*key)):
                    del self._configs[key]
            return
        for key in [key for key in self._configs if key[0] == function]:
            del self._configs[key]
        if local:
            self._store.discard_configs(function)

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``configs``, cluster mode): another node
        wrote the config ``function:qualifier``; memory follows, nothing is written."""
        function, _, qualifier = key.partition(":")
        if document is None:
            self._configs.pop((function, qualifier), None)
        else:
            self._configs[(function, qualifier)] = EventInvokeConfig.from_json(document)

    # -- for the pollers --------------------------------------------------------

    def policy(self, function: str) -> RetryPolicy:
        """The retry policy of an event's target (``name`` or ``name:qualifier``)."""
        config = self._configs.get(_key(function))
        if config is None:
            return RetryPolicy(base_delay=self._base_delay)
        return config.policy(self._base_delay)

    def lookup(self, function: str) -> EventInvokeConfig | None:
        return self._configs.get(_key(function))

    # -- the API ------------------------------------------------------------------

    def _resolve(self, identifier: str, qualifier: str | None) -> tuple[str, str]:
        """(key, qualifier) of a storage key as the API resolved it (or an ARN)."""
        ref = arns.parse(identifier, qualifier)
        return self._arns.resolve(ref), ref.qualifier or arns.LATEST

    def _missing(self, name: str, qualifier: str) -> ResourceNotFound:
        return ResourceNotFound(
            f"The function {self._arns.function(name, qualifier)} doesn't have an EventInvokeConfig"
        )

    def _require_function(self, name: str, qualifier: str) -> None:
        if not self._exists(_target(name, qualifier)):
            raise ResourceNotFound("The function doesn't exist.")

    def get(self, identifier: str, qualifier: str | None) -> EventInvokeConfig:
        name, qualifier = self._resolve(identifier, qualifier)
        config = self._configs.get((name, qualifier))
        if config is None:
            raise self._missing(name, qualifier)
        return config

    async def put(
        self, identifier: str, qualifier: str | None, body: dict[str, Any]
    ) -> EventInvokeConfig:
        """PutFunctionEventInvokeConfig: the new config replaces the old one whole."""
        settings = self._validate(body)
        name, qualifier = self._resolve(identifier, qualifier)
        self._require_function(name, qualifier)
        self._check_destinations(name, settings)
        destinations = settings.destinations or {}
        config = EventInvokeConfig(
            name,
            qualifier,
            self._clock(),
            settings.retries,
            settings.age,
            destinations.get("OnSuccess"),
            destinations.get("OnFailure"),
        )
        return await self._save(config)

    async def update(
        self, identifier: str, qualifier: str | None, body: dict[str, Any]
    ) -> EventInvokeConfig:
        """UpdateFunctionEventInvokeConfig: only the settings given change."""
        settings = self._validate(body)
        name, qualifier = self._resolve(identifier, qualifier)
        self._require_function(name, qualifier)
        old = self._configs.get((name, qualifier))
        if old is None:
            raise self._missing(name, qualifier)
        self._check_destinations(name, settings)
        changes: dict[str, Any] = {"last_modified": self._clock()}
        if settings.retries is not None:
            changes["maximum_retry_attempts"] = settings.retries
        if settings.age is not None:
            changes["maximum_event_age"] = settings.age
        if settings.destinations is not None:
            changes["on_success"] = settings.destinations.get("OnSuccess")
            changes["on_failure"] = settings.destinations.get("OnFailure")
        return await self._save(replace(old, **changes))

    async def _save(self, config: EventInvokeConfig) -> EventInvokeConfig:
        await self._store.put_config(config.function, config.qualifier, config.to_json())
        self._configs[(config.function, config.qualifier)] = config
        return config

    async def delete(self, identifier: str, qualifier: str | None) -> None:
        name, qualifier = self._resolve(identifier, qualifier)
        if (name, qualifier) not in self._configs:
            raise self._missing(name, qualifier)
        await self._store.delete_config(name, qualifier)
        del self._configs[(name, qualifier)]

    def list(
        self, identifier: str, marker: str | None, max_items: int | None
    ) -> tuple[list[EventInvokeConfig], str | None]:
        name, _ = self._resolve(identifier, None)
        if not self._exists(name):
            raise ResourceNotFound("The function doesn't exist.")
        limit = MAX_PAGE if max_items is None else max_items
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError.constraint(
                limit, "maxItems", f"Member must have value between 1 and {MAX_PAGE}"
            )
        found = sorted(
            (c for (f, _), c in self._configs.items() if f == name), key=lambda c: c.qualifier
        )
        if marker:
            found = [c for c in found if c.qualifier > marker]
        more = len(found) > limit
        return found[:limit], found[limit - 1].qualifier if more else None

    # -- validation ---------------------------------------------------------------

    def _validate(self, body: dict[str, Any]) -> _Settings:
        retries = integer(body, "MaximumRetryAttempts", "maximumRetryAttempts", 0, 2)
        age = integer(body, "MaximumEventAgeInSeconds", "maximumEventAgeInSeconds", 60, 21600)
        raw = body.get("DestinationConfig")
        if retries is None and age is None and raw is None:
            raise InvalidParameterValue(
                "You must specify at least one of error handling or destination setting."
            )
        destinations = None if raw is None else _destinations(raw)
        return _Settings(retries, age, destinations)

    def _check_destinations(self, name: str, settings: _Settings) -> None:
        for arn in (settings.destinations or {}).values():
            if arn is None:
                continue
            target = self.destination_function(arn)
            if target is None or not self._exists(target):
                raise InvalidParameterValue(
                    f"The destination ARN {arn} is invalid. ember delivers to Lambda "
                    "functions of this server only."
                )
            owner = self._arns.owner(arns.split(target)[0])[0]
            if owner != self._arns.owner(name)[0]:
                raise InvalidParameterValue(
                    f"The destination ARN {arn} is a function of account {owner}: a "
                    "function's destinations must be functions of its own account."
                )
            if arns.split(target)[0] == name:
                raise InvalidParameterValue(
                    "You can't specify the function as a destination for itself."
                )

    def destination_function(self, arn: str) -> str | None:
        """The function (``key`` or ``key:qualifier``) a destination ARN names, if it
        is a function ARN of this ember's region (of any account)."""
        if not arn.startswith(f"arn:aws:lambda:{self._arns.region}:"):
            return None
        try:
            ref = arns.parse_client(arn)
        except (ValidationError, InvalidParameterValue):
            return None
        if ref.account is None:
            return None
        return _target(self._arns.resolve(ref), ref.qualifier or arns.LATEST)


def _target(name: str, qualifier: str) -> str:
    """An event target: the plain name for ``$LATEST``, else ``name:qualifier``."""
    return name if qualifier == arns.LATEST else f"{name}:{qualifier}"


def _key(function: str) -> tuple[str, str]:
    """The config key of an event target (``name`` or ``name:qualifier``)."""
    name, _, qualifier = function.partition(":")
    return name, qualifier or arns.LATEST


def _destinations(raw: Any) -> dict[str, str | None]:
    if not isinstance(raw, dict):
        raise ValidationError.constraint(raw, "destinationConfig", "Member must be an object")
    found: dict[str, str | None] = {}
    for key, member in (("OnSuccess", "onSuccess"), ("OnFailure", "onFailure")):
        entry = raw.get(key) or {}
        arn = entry.get("Destination") if isinstance(entry, dict) else None
        if arn is not None and not isinstance(arn, str):
            raise ValidationError.constraint(
                arn, f"destinationConfig.{member}.destination", "Member must be a string"
            )
        if arn and (len(arn) > 350 or not _DESTINATION.match(arn)):
            raise ValidationError.constraint(
                arn,
                f"destinationConfig.{member}.destination",
                f"Member must satisfy regular expression pattern: {_DESTINATION_PATTERN}",
            )
        found[key] = arn or None
    return found

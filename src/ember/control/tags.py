"""Tags of functions and event source mappings: the ``Tags`` of CreateFunction and
CreateEventSourceMapping, TagResource, UntagResource, ListTags.

A function's tags belong to the function, not to a version or alias (Lambda
refuses a qualified ARN), and go when it does; a mapping's go when it does.
They are kept in memory (GetFunction renders a function's) and written
through to the ``tags`` MetadataStore, one document per resource: a function's
keyed by its storage key (``Arns.key``), a mapping's by ``mapping_key(uuid)``
(a colon is never part of a function's key); other nodes follow through the
feed. Tags never change the function's RevisionId or its sandboxes: they are
metadata about the resource, not its configuration.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

import orjson

from ember.control.arns import Arns
from ember.errors import InvalidParameterValue, ResourceNotFound, ValidationError
from ember.storage.base import MetadataStore

log = logging.getLogger("ember.control")

# Lambda's limits (botocore's TagKey/TagValue, and the tagging quota).
MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")
_TAG_PATTERN = "([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"
# botocore's TaggableResource, whole (ASCII: ``\d`` is 0-9 only, as in Java's regex).
_RESOURCE_PATTERN = (
    "arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:"
    "(function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?|code-signing-config:csc-[a-z0-9]{17}"
    "|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
    "-[0-9a-fA-F]{12}|(capacity-provider|network-connector):[a-zA-Z0-9-_]{1,64})"
)
_RESOURCE = re.compile(_RESOURCE_PATTERN, re.ASCII)
MAX_RESOURCE = 10000
# The parts of a function's ARN that matched it (tags are the unqualified function's).
_FUNCTION_ARN = re.compile(
    r"arn:[^:]+:lambda:[^:]+:(?P<account>\d{12}):function:(?P<name>[^:]+)(:(?P<qualifier>.+))?"
)
_MAPPING_ARN = re.compile(
    r"arn:[^:]+:lambda:[^:]+:(?P<account>\d{12}):event-source-mapping:(?P<uuid>[0-9a-fA-F-]+)"
)
_MAPPING = "event-source-mapping:"
Exists = Callable[[str], bool]
MappingExists = Callable[[str, str], bool]  # (uuid, account): the account's mapping exists


def mapping_key(mapping_id: str) -> str:
    """The key the tags of the event source mapping ``mapping_id`` are stored under."""
    return _MAPPING + mapping_id


def check(raw: Any) -> dict[str, str]:
    """``Tags`` as Lambda judges them (None: no tags)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in raw.items()
    ):
        raise InvalidParameterValue("Tags must be a map of strings to strings.")
    if len(raw) > MAX_TAGS:
        raise InvalidParameterValue("Number of tags exceeds resource tag limit.")
    for key, value in raw.items():
        if not 1 <= len(key) <= MAX_KEY or not _TAG_TEXT.fullmatch(key):
            raise ValidationError.constraint(
                key,
                "tags",
                f"Map keys must satisfy constraint: [Member must have length less than or "
                f"equal to {MAX_KEY}, Member must have length greater than or equal to 1, "
                f"Member must satisfy regular expression pattern: {_TAG_PATTERN}]",
            )
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue(
                f"The tag key {key} is invalid: the aws: prefix is reserved for AWS use."
            )
        if len(value) > MAX_VALUE or not _TAG_TEXT.fullmatch(value):
            raise ValidationError.constraint(
                value,
                "tags",
                f"Map value must satisfy constraint: [Member must have length less than or "
                f"equal to {MAX_VALUE}, Member must satisfy regular expression pattern: "
                f"{_TAG_PATTERN}]",
            )
    return dict(raw)


class FunctionTags:
    """Every function's and mapping's tags; ``bind`` the registry's lookup before use
    (and ``bind_mappings`` the mappings', where event sources run)."""

    # As ResourcePolicies: rows of vanished resources are dropped at load, embedded only.
    prune_orphans = True

    def __init__(self, store: MetadataStore, arns: Arns) -> None:
        self._store = store
        self._arns = arns
        self._tags: dict[str, dict[str, str]] = {}  # resource key -> its tags
        self._lock = asyncio.Lock()
        self._exists: Exists = lambda key: False
        self._mapping_exists: MappingExists = lambda mapping_id, account: False

    def bind(self, exists: Exists) -> None:
        """``exists(key)``: whether the function stored under ``key`` exists."""
        self._exists = exists

    def bind_mappings(self, exists: MappingExists) -> None:
        """``exists(uuid, account)``: whether ``account`` has the mapping ``uuid``."""
        self._mapping_exists = exists

    async def load(self) -> None:
        """Load every resource's tags; mappings' are judged later (``prune_mappings``):
        mappings load after the registry layer."""
        for key, document in (await self._store.load_all()).items():
            if not key.startswith(_MAPPING) and not self._exists(key):
                if self.prune_orphans:
                    await self._store.delete(key)
                continue
            self._tags[key] = orjson.loads(document)
        log.info("tagged resources loaded: %d", len(self._tags))

    async def prune_mappings(self, exists: Exists) -> None:
        """Once the mappings are loaded: drop the tags of those ``exists(uuid)`` denies
        (a delete interrupted by a crash), embedded only as ``load``'s orphans."""
        if not self.prune_orphans:
            return
        async with self._lock:
            for key in [key for key in self._tags if key.startswith(_MAPPING)]:
                if not exists(key.removeprefix(_MAPPING)):
                    del self._tags[key]
                    await self._store.delete(key)

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``tags``): memory follows another node's write."""
        async with self._lock:
            if document is None:
                self._tags.pop(key, None)
            else:
                self._tags[key] = orjson.loads(document)

    # --- reads ---------------------------------------------------------------

    def of(self, key: str) -> dict[str, str]:
        """The tags of the resource ``key`` (a copy; empty when it has none). No I/O."""
        return dict(self._tags.get(key, {}))

    def resource(self, arn: str) -> str:
        """The key of what a TaggableResource ARN names, judged as Lambda does: a
        malformed ARN (ValidationException), a qualified one (InvalidParameterValue),
        an unknown resource (ResourceNotFoundException). The ARN's account owns it
        (the authorizer already decided the caller may act there)."""
        if len(arn) > MAX_RESOURCE or not _RESOURCE.fullmatch(arn):
            raise ValidationError.constraint(
                arn,
                "resource",
                f"Member must satisfy regular expression pattern: {_RESOURCE_PATTERN}",
            )
        mapping = _MAPPING_ARN.fullmatch(arn)
        if mapping is not None:
            if not self._mapping_exists(mapping["uuid"], mapping["account"]):
                # GetEventSourceMapping's words for an unknown UUID.
                raise ResourceNotFound("The resource you requested does not exist.")
            return mapping_key(mapping["uuid"])
        match = _FUNCTION_ARN.fullmatch(arn)
        if match is None:
            # ember has no code signing configs, capacity providers or the rest here.
            raise ResourceNotFound(f"The resource you requested does not exist. ({arn})")
        if match["qualifier"] is not None:
            raise InvalidParameterValue(
                "Tags on function aliases and versions are not supported. "
                "Please specify a function ARN."
            )
        key = self._arns.key(match["account"], match["name"])
        if not self._exists(key):
            raise ResourceNotFound(f"Function not found: {self._arns.function(key)}")
        return key

    # --- writes --------------------------------------------------------------

    async def tag(self, key: str, tags: dict[str, str]) -> None:
        """Add or overwrite ``tags`` (already ``check``ed) on the resource ``key``."""
        async with self._lock:
            merged = {**self._tags.get(key, {}), **tags}
            if len(merged) > MAX_TAGS:
                raise InvalidParameterValue("Number of tags exceeds resource tag limit.")
            await self._save(key, merged)

    async def untag(self, key: str, keys: list[str]) -> None:
        """Remove ``keys`` from the resource's tags; missing keys are not an error."""
        for name in keys:
            if not 1 <= len(name) <= MAX_KEY:
                raise ValidationError.constraint(
                    keys, "tagKeys", f"Member must have length less than or equal to {MAX_KEY}"
                )
        async with self._lock:
            kept = {k: v for k, v in self._tags.get(key, {}).items() if k not in keys}
            await self._save(key, kept)

    async def forget(self, key: str) -> None:
        """The resource ``key`` was deleted by this node: its tags go too."""
        async with self._lock:
            if self._tags.pop(key, None) is not None:
                await self._store.delete(key)

    async def _save(self, key: str, tags: dict[str, str]) -> None:
        if tags:
            await self._store.put(key, orjson.dumps(tags).decode())
            self._tags[key] = tags
        elif self._tags.pop(key, None) is not None:
            await self._store.delete(key)


__all__ = ["MAX_TAGS", "FunctionTags", "check", "mapping_key"]

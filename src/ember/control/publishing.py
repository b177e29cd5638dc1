"""The registry's versions and aliases: publish, list, delete one; alias CRUD.

``FunctionRegistry`` inherits these operations; they share its lock, its
metadata store and its in-memory maps (``_functions`` holds ``$LATEST``,
``_published`` the rest), and keep its rule: durable first, then memory.
Publishing renews ``$LATEST``'s RevisionId (as Lambda does) and nothing else:
its warm sandboxes are renamed, not retired. A version's sandboxes are keyed
by the version's own RevisionId. A version of a function with SnapStart is
published Pending: its template is made afterwards (``ember.reconcile.snapstart``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from ember.control import versions
from ember.control.arns import LATEST, Arns
from ember.control.models import FunctionRecord
from ember.control.versions import Alias, Published
from ember.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.storage.base import MetadataStore

MAX_PAGE = 50
_REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


class Publishing:
    """Mixin of ``FunctionRegistry`` (see there for the attributes it shares)."""

    _store: MetadataStore
    _arns: Arns
    _lock: asyncio.Lock
    _functions: dict[str, FunctionRecord]
    _published: dict[str, Published]

    def _changed(self, name: str, local: bool = True) -> None:  # provided by FunctionRegistry
        raise NotImplementedError

    def _renamed(self, old: str, new: str) -> None:  # provided by FunctionRegistry
        raise NotImplementedError

    def _want_template(self, record: FunctionRecord) -> None:  # provided by FunctionRegistry
        raise NotImplementedError

    def _latest(self, name: str) -> FunctionRecord:
        record = self._functions.get(name)
        if record is None:
            raise ResourceNotFound(f"Function not found: {self._arns.function(name)}")
        return record

    def _lineage(self, name: str) -> Published:
        published = self._published.get(name)
        if published is None:
            published = self._published[name] = Published()
        return published

    # --- versions ------------------------------------------------------------

    def version(self, name: str, qualifier: str | None) -> FunctionRecord:
        """The record a control-plane read names: an alias gives its primary version."""
        latest = self._latest(name)
        if qualifier is None or qualifier == LATEST:
            return latest
        published = self._published.get(name)
        alias = published.aliases.get(qualifier) if published else None
        target = alias.function_version if alias else qualifier
        if target == LATEST:
            return latest
        record = published.versions.get(target) if published else None
        if record is None:
            raise ResourceNotFound(f"Function not found: {self._arns.function(name, qualifier)}")
        return record

    def versions_page(
        self, name: str, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionRecord], str | None]:
        """``$LATEST`` then every version in ascending order; the marker is a version."""
        records = [self._latest(name), *self._lineage(name).versions.values()]
        return _paginate(records, lambda record: record.version, marker, max_items, _order)

    async def publish(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        """PublishVersion: a new immutable version, or the one ``$LATEST`` already is."""
        description = versions.description(body)
        async with self._lock:
            return await self._publish(self._latest(name), body, description)

    async def _publish(
        self, latest: FunctionRecord, body: dict[str, Any], description: str | None
    ) -> FunctionRecord:
        """Publish ``latest`` (the caller holds the lock)."""
        expected = body.get("RevisionId")
        if expected is not None and expected != latest.revision_id:
            raise PreconditionFailed(_REVISION_MISMATCH)
        sha = body.get("CodeSha256")
        if sha is not None and sha != latest.code_sha256:
            raise InvalidParameterValue(
                f"CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST "
                f"({latest.code_sha256}). Please try again with the CodeSHA256 in $LATEST."
            )
        published = self._lineage(latest.name)
        existing = published.unchanged(latest)
        if existing is not None:
            return existing
        number = str(published.last + 1)
        record = dataclasses.replace(
            latest,
            version=number,
            revision_id=str(uuid.uuid4()),
            description=latest.description if description is None else description,
        ).awaiting_template()
        renewed = dataclasses.replace(latest, revision_id=str(uuid.uuid4()))
        await self._store.put(versions.key(latest.name, number), record.to_json())
        counter = Published(last=published.last + 1, source=renewed.revision_id)
        await self._store.put(versions.key(latest.name, versions.COUNTER), counter.counter_json())
        await self._store.put(latest.name, renewed.to_json())
        published.versions[number] = record
        published.last, published.source = counter.last, counter.source
        self._functions[latest.name] = renewed
        self._renamed(latest.revision_id, renewed.revision_id)
        self._want_template(record)
        return record

    async def _delete_version(self, name: str, version: str) -> FunctionRecord | None:
        """Delete one version (the caller holds the lock); None if there was none."""
        published = self._published.get(name)
        record = published.versions.get(version) if published else None
        if published is None or record is None:
            return None  # Lambda: deleting a version that does not exist succeeds
        users = published.referencing(version)
        if users:
            raise ResourceConflict(
                "Unable to delete version because the following aliases reference it: "
                f"[{', '.join(users)}]"
            )
        await self._store.delete(versions.key(name, version))
        del published.versions[version]
        self._changed(name)
        return record

    async def _delete_lineage(self, name: str) -> list[FunctionRecord]:
        """Remove every version, alias and the counter of ``name``; the removed versions."""
        published = self._published.pop(name, None)
        if published is None:
            return []
        for qualifier in [*published.versions, *published.aliases, versions.COUNTER]:
            await self._store.delete(versions.key(name, qualifier))
        return list(published.versions.values())

    def _load_qualified(self, name: str, qualifier: str, document: str) -> None:
        published = self._lineage(name)
        if qualifier == versions.COUNTER:
            published.load_counter(document)
        elif versions.is_version(qualifier):
            published.versions[qualifier] = FunctionRecord.from_json(document)
        else:
            published.aliases[qualifier] = Alias.from_json(document)

    def _apply_qualified(self, name: str, qualifier: str, document: str | None) -> None:
        """Another node wrote a version, an alias or the counter of ``name`` (the caller
        holds the lock); see ``FunctionRegistry.apply_remote``."""
        if name not in self._functions:
            return  # the function's own delete came first: its lineage went with it
        published = self._lineage(name)
        if document is not None:
            self._load_qualified(name, qualifier, document)
            published.versions = dict(sorted(published.versions.items(), key=lambda i: int(i[0])))
            published.last = max([published.last, *map(int, published.versions)])
        elif qualifier == versions.COUNTER:
            return
        elif published.versions.pop(qualifier, None) or published.aliases.pop(qualifier, None):
            self._changed(name, local=False)  # as deleting it here tells the listeners

    def _sort_loaded(self) -> None:
        for published in self._published.values():
            published.versions = dict(sorted(published.versions.items(), key=lambda i: int(i[0])))
            published.last = max([published.last, *map(int, published.versions)])

    # --- aliases -------------------------------------------------------------

    def _alias_missing(self, name: str, alias: str) -> ResourceNotFound:
        return ResourceNotFound(f"Cannot find alias arn: {self._arns.function(name, alias)}")

    def get_alias(self, name: str, alias: str) -> Alias:
        self._latest(name)
        found = self._lineage(name).aliases.get(alias)
        if found is None:
            raise self._alias_missing(name, alias)
        return found

    def aliases_page(
        self, name: str, version: str | None, marker: str | None, max_items: int | None
    ) -> tuple[list[Alias], str | None]:
        """Aliases by name (only those pointing at ``version`` when given)."""
        self._latest(name)
        found = sorted(
            (
                a
                for a in self._lineage(name).aliases.values()
                if version in (None, a.function_version)
            ),
            key=lambda alias: alias.name,
        )
        return _paginate(found, lambda alias: alias.name, marker, max_items, lambda n: n)

    def _require_version(self, name: str, version: str) -> None:
        if version != LATEST and version not in self._lineage(name).versions:
            raise ResourceNotFound(f"Function not found: {self._arns.function(name, version)}")

    async def create_alias(self, name: str, body: dict[str, Any]) -> Alias:
        alias_name = versions.alias_name(body.get("Name"))
        target = versions.function_version(body.get("FunctionVersion"))
        description = versions.description(body) or ""
        async with self._lock:
            self._latest(name)
            self._require_version(name, target)
            aliases = self._lineage(name).aliases
            if alias_name in aliases:
                arn = self._arns.function(name, alias_name)
                raise ResourceConflict(f"Alias already exists: {arn}")
            weights = versions.routing(
                body, target, lambda version: self._require_version(name, version)
            )
            alias = Alias(name, alias_name, target, description, str(uuid.uuid4()), weights or {})
            await self._store.put(versions.key(name, alias_name), alias.to_json())
            aliases[alias_name] = alias
        return alias

    async def update_alias(self, name: str, alias_name: str, body: dict[str, Any]) -> Alias:
        description = versions.description(body)
        async with self._lock:
            old = self.get_alias(name, alias_name)
            expected = body.get("RevisionId")
            if expected is not None and expected != old.revision_id:
                raise PreconditionFailed(_REVISION_MISMATCH)
            target = old.function_version
            if body.get("FunctionVersion") is not None:
                target = versions.function_version(body["FunctionVersion"])
                self._require_version(name, target)
            if body.get("RoutingConfig") is None and old.weights:
                # The weights stay: they must still fit the (maybe new) primary version.
                body = {**body, "RoutingConfig": {"AdditionalVersionWeights": old.weights}}
            weights = versions.routing(
                body, target, lambda version: self._require_version(name, version)
            )
            alias = dataclasses.replace(
                old,
                function_version=target,
                description=old.description if description is None else description,
                weights=old.weights if weights is None else weights,
                revision_id=str(uuid.uuid4()),
            )
            await self._store.put(versions.key(name, alias_name), alias.to_json())
            self._lineage(name).aliases[alias_name] = alias
        return alias

    async def delete_alias(self, name: str, alias_name: str) -> None:
        async with self._lock:
            self.get_alias(name, alias_name)
            await self._store.delete(versions.key(name, alias_name))
            del self._lineage(name).aliases[alias_name]
            self._changed(name)


def _order(version: str) -> int:
    return -1 if version == LATEST else int(version)


def _paginate(
    items: list[Any],
    key: Any,
    marker: str | None,
    max_items: int | None,
    order: Any,
) -> tuple[list[Any], str | None]:
    """One page of ``items`` (already in order) after the item whose key is ``marker``."""
    limit = MAX_PAGE if max_items is None else max_items
    if not 1 <= limit <= 10000:
        raise ValidationError.constraint(
            limit, "maxItems", "Member must have value between 1 and 10000"
        )
    limit = min(limit, MAX_PAGE)
    if marker:
        try:
            after = order(marker)
        except ValueError:
            raise InvalidParameterValue(f"Invalid Marker: {marker}") from None
        items = [item for item in items if order(key(item)) > after]
    page = items[:limit]
    return page, key(page[-1]) if len(items) > limit else None

"""The function registry: the one place functions are created, changed, deleted.

Reads are served from memory (the hot path looks a function up on every
invoke); writes go to the metadata store first and then to memory, under one
lock, so a reader never sees a record that is not durable. Listeners hear
about every change so the Worker Manager can retire stale sandboxes.
Published versions and aliases live in ``ember.control.publishing``. A
version's SnapStart template state (``ember.control.snapstart``) is status:
``settle_template`` records it without a new RevisionId and tells no listener.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ember.control import snapstart, validation
from ember.control import tags as tag_rules
from ember.control import versions as version_keys
from ember.control.arns import LATEST, Arns, parse
from ember.control.layers import LayerRegistry, LayerVersion
from ember.control.models import FunctionRecord
from ember.control.publishing import Publishing
from ember.control.snapstart import Outcome, Template
from ember.control.tags import FunctionTags
from ember.control.versions import Published, Random
from ember.errors import (
    CodeStorageExceeded,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.sandbox import runtimes
from ember.storage.base import CodeSource, MetadataStore, PackageStore
from ember.text import is_decimal

log = logging.getLogger("ember.control")

Clock = Callable[[], datetime]
# listener(name, local): ``local`` is False when another node made the change (the
# feed applied it here): memory follows, but its durable consequences (rows of a
# deleted function's URLs, tools, limits, configs) were that node's to write.
Listener = Callable[[str, bool], None]
# runtime_installed(runtime): whether this host can run it (the sandbox layer's probe).
RuntimeCheck = Callable[[str], bool]
Rename = Callable[[str, str], None]
# hook(name): awaited when this node deletes a whole function (see ``on_delete``).
DeleteHook = Callable[[str], Awaitable[None]]
# wanted(): a version now waits for its SnapStart template (see ``on_template_wanted``).
TemplateWanted = Callable[[], None]
MAX_PAGE = 50


def _utcnow() -> datetime:
    return datetime.now(UTC)


def lambda_timestamp(moment: datetime) -> str:
    """Lambda's LastModified format: ``2026-11-28T13:07:49.123+0000``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class Quotas:
    """What each account may hold (Settings.account_max_functions, ..._code_storage_bytes)."""

    functions: int = 1000
    code_bytes: int = 80_530_636_800  # Lambda's 75 GB


@dataclass(frozen=True)
class Page:
    functions: list[FunctionRecord]
    next_marker: str | None


class FunctionRegistry(Publishing):
    def __init__(
        self,
        store: MetadataStore,
        packages: PackageStore,
        arns: Arns,
        clock: Clock = _utcnow,
        random: Random = random.random,  # picks an alias's weighted version
        layers: LayerRegistry | None = None,
        quotas: Quotas | None = None,
        runtime_installed: RuntimeCheck = lambda runtime: bool(runtimes.interpreter_for(runtime)),
        code_source: CodeSource | None = None,
        tags: FunctionTags | None = None,
    ) -> None:
        self._store = store
        self._runtime_installed = runtime_installed
        # CreateFunction's ``Tags`` land there (it drops a deleted function's: on_delete).
        self._tags = tags
        # The users' bucket that ``S3Bucket``/``S3Key`` name (None: code inline only).
        self._code_source = code_source
        self._quotas = quotas or Quotas()
        # Resolves a function's ``Layers``; packages are shared with it both ways.
        self._layers = layers
        if layers is not None:
            layers.share_packages_with(self.uses_package)
            layers.check_storage_with(lambda key, size: self._check_quotas(key, size, False))
        self._packages = packages
        self._arns = arns
        self._clock = clock
        self._random = random
        self._functions: dict[str, FunctionRecord] = {}  # $LATEST of every function
        self._published: dict[str, Published] = {}  # versions and aliases, by function
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._renames: list[Rename] = []
        self._delete_hooks: list[DeleteHook] = []
        self._template_wanted: list[TemplateWanted] = []
        if tags is not None:
            tags.bind(lambda key: key in self._functions)
            self.on_delete(tags.forget)

    async def load(self) -> None:
        qualified = []
        for key, document in (await self._store.load_all()).items():
            name, _, qualifier = key.partition(":")
            if qualifier:
                qualified.append((name, qualifier, key, document))
            else:
                self._functions[name] = FunctionRecord.from_json(document)
        for name, qualifier, key, document in qualified:
            if name in self._functions:
                self._load_qualified(name, qualifier, document)
            else:  # left over by a delete interrupted by a crash
                await self._store.delete(key)
        self._sort_loaded()
        log.info("registry loaded %d function(s)", len(self._functions))

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(name, local)`` after every change to a function (not on create)."""
        self._listeners.append(listener)

    def on_delete(self, hook: DeleteHook) -> None:
        """Await ``hook(name)`` after this node deletes the whole function ``name``,
        before DeleteFunction answers: what the function leaves elsewhere (its dead
        letters) is gone before a new function can take the name."""
        self._delete_hooks.append(hook)

    def on_rename(self, listener: Rename) -> None:
        """Call ``listener(old, new)`` when a RevisionId changes with nothing else
        (PublishVersion renews ``$LATEST``'s, as Lambda does)."""
        self._renames.append(listener)

    def _renamed(self, old: str, new: str) -> None:
        for listener in self._renames:
            listener(old, new)

    def on_template_wanted(self, listener: TemplateWanted) -> None:
        """Call ``listener()`` when this node stores a version whose SnapStart template
        is to be made (``pending_templates`` lists them all, wherever they were made)."""
        self._template_wanted.append(listener)

    def _want_template(self, record: FunctionRecord) -> None:
        if record.template == Template.PENDING.value:
            for listener in self._template_wanted:
                listener()

    def _changed(self, name: str, local: bool = True) -> None:
        for listener in self._listeners:
            listener(name, local)

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``metadata``): another node wrote ``key``
        (``name`` for $LATEST, ``name:qualifier`` for a version, alias or counter).

        Memory becomes what that node's memory became, and the listeners hear what
        they heard there; nothing is written (the store already holds the change).
        Idempotent: applying the same change twice changes nothing the second time.
        """
        name, _, qualifier = key.partition(":")
        async with self._lock:
            if qualifier:
                self._apply_qualified(name, qualifier, document)
            elif document is None:
                self._apply_deleted(name)
            else:
                self._apply_latest(FunctionRecord.from_json(document))

    def _apply_latest(self, record: FunctionRecord) -> None:
        old = self._functions.get(record.name)
        self._functions[record.name] = record
        if old is None or old.same_configuration(record):
            return  # created (no listener hears a create), applied, or a template settled
        if old.same_configuration(dataclasses.replace(record, revision_id=old.revision_id)):
            self._renamed(old.revision_id, record.revision_id)  # PublishVersion's renewal
        else:
            self._changed(record.name, local=False)

    def _apply_deleted(self, name: str) -> None:
        if self._functions.pop(name, None) is None:
            return
        self._published.pop(name, None)
        self._changed(name, local=False)

    # --- reads ---------------------------------------------------------------

    def lookup(self, name: str) -> FunctionRecord | None:
        """The hot-path read: no I/O."""
        return self._functions.get(name)

    def get(self, name: str, qualifier: str | None = None) -> FunctionRecord:
        """The record of the version a call runs; an alias picks one by its weights.

        The hot path: dictionary lookups only.
        """
        record = self._functions.get(name)
        if record is not None:
            if qualifier is None or qualifier == LATEST:
                return record
            published = self._published.get(name)
            if published is not None:
                version = published.versions.get(qualifier)
                if version is not None:
                    return version
                alias = published.aliases.get(qualifier)
                if alias is not None:
                    target = alias.pick(self._random) if alias.weights else alias.function_version
                    # An alias of "$LATEST" (never weighted) runs $LATEST itself.
                    return published.versions.get(target, record)
        raise ResourceNotFound(f"Function not found: {self._arns.function(name, qualifier)}")

    def revisions(self, name: str) -> set[str]:
        """RevisionIds that still run: ``$LATEST``'s and every version's."""
        latest = self._functions.get(name)
        if latest is None:
            return set()
        published = self._published.get(name)
        extra = [record.revision_id for record in published.versions.values()] if published else []
        return {latest.revision_id, *extra}

    def __len__(self) -> int:
        return len(self._functions)

    def page(
        self,
        marker: str | None,
        max_items: int | None,
        all_versions: bool = False,
        account: str | None = None,
    ) -> Page:
        """Functions in name order (with ``all_versions``, each followed by its versions);
        ``marker`` is the opaque NextMarker of the last page; only ``account``'s
        functions when it is given."""
        limit = MAX_PAGE if max_items is None else max_items
        if not 1 <= limit <= 10000:
            raise ValidationError.constraint(
                limit, "maxItems", "Member must have value between 1 and 10000"
            )
        limit = min(limit, MAX_PAGE)
        after = _position(_decode_marker(marker)) if marker else ("", 0)
        chosen: list[FunctionRecord] = []
        more = False
        for name in sorted(self._keys(account, after[0])):
            for record in self._with_versions(name, all_versions):
                if _position(f"{name}:{record.version}") <= after:
                    continue
                if len(chosen) == limit:
                    more = True
                    break
                chosen.append(record)
            if more:
                break
        last = chosen[-1] if more and chosen else None
        marker_out = f"{last.name}:{last.version}" if all_versions and last else None
        return Page(chosen, _encode_marker(marker_out or last.name) if last else None)

    def _keys(self, account: str | None, start: str) -> Iterator[str]:
        for key in self._functions:
            if key >= start and (account is None or self._arns.owner(key)[0] == account):
                yield key

    def usage(self, account: str) -> tuple[int, int]:
        """(functions, bytes of code of them, their versions and its layers) ``account``
        holds: Lambda's FunctionCount and TotalCodeSize."""
        owned = [key for key in self._functions if self._arns.owner(key)[0] == account]
        size = self._layers.usage(account) if self._layers is not None else 0
        for key in owned:
            size += sum(record.code_size for record in self._with_versions(key, True))
        return len(owned), size

    def _check_quotas(self, key: str, new_bytes: int, new_function: bool) -> None:
        """Refuse what would take ``key``'s account past its quotas."""
        account = self._arns.owner(key)[0]
        count, size = self.usage(account)
        if new_function and count >= self._quotas.functions:
            raise InvalidParameterValue(
                f"Account {account} already has {count} functions, its limit "
                f"(--account-max-functions); delete one first."
            )
        if size + new_bytes > self._quotas.code_bytes:
            raise CodeStorageExceeded(
                f"Code storage limit exceeded: account {account} stores {size} bytes of "
                f"code, {new_bytes} more would exceed its {self._quotas.code_bytes}."
            )

    def _with_versions(self, name: str, all_versions: bool) -> list[FunctionRecord]:
        published = self._published.get(name)
        if not all_versions or published is None:
            return [self._functions[name]]
        return [self._functions[name], *published.versions.values()]

    async def code(self, name: str, qualifier: str | None = None) -> bytes:
        return await self._packages.get(self.version(name, qualifier).code_digest)

    # --- writes --------------------------------------------------------------

    async def create(self, body: dict[str, Any], account: str | None = None) -> FunctionRecord:
        """A new function of ``account`` (None: the default account; an ARN's own wins)."""
        name = body.get("FunctionName")
        if not isinstance(name, str) or not name:
            raise ValidationError.constraint(name, "functionName", "Member must not be null")
        ref = parse(name)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Function name must not include a version or alias.")
        validation.package_type(body)
        validation.refuse_unsupported(body)
        key = self._arns.resolve(ref, account)
        settings = {
            "role": validation.role(body, required=True),
            "runtime": await self._runtime(body, required=True),
            "handler": validation.handler(body, required=True, runtime=body.get("Runtime")) or "",
            "description": validation.description(body) or "",
            "timeout": validation.timeout(body) or 3,
            "memory_size": validation.memory_size(body) or 128,
            "environment": validation.environment(body),
            "ephemeral_storage": validation.ephemeral_storage(body) or 512,
            "architectures": validation.architectures(body) or (runtimes.host_architecture(),),
            "tracing_mode": validation.tracing_mode(body) or "PassThrough",
            "snap_start": validation.snap_start(body) or snapstart.NONE,
            **validation.logging_config(body, _DEFAULT_LOGGING),
            **self._layer_settings(body, key),
        }
        tags = tag_rules.check(body.get("Tags"))
        if tags and self._tags is None:
            raise InvalidParameterValue("Tags are not available on this server.")
        # Its file closes however the upload (or the fetch from S3) ends.
        with await validation.package(body.get("Code"), self._code_source) as package:
            publish = body.get("Publish") is True
            async with self._lock:
                if key in self._functions:
                    raise ResourceConflict(f"Function already exist: {ref.name}")
                self._check_quotas(key, package.size, new_function=True)
                await self._packages.put(package.digest, package.file)
                record = FunctionRecord(
                    name=key,
                    code_sha256=package.sha256,
                    code_digest=package.digest,
                    code_size=package.size,
                    last_modified=lambda_timestamp(self._clock()),
                    revision_id=str(uuid.uuid4()),
                    **settings,
                ).awaiting_template()
                await self._store.put(record.name, record.to_json())
                self._functions[record.name] = record
                self._want_template(record)
                if tags and self._tags is not None:
                    await self._tags.tag(record.name, tags)
                if publish:
                    return await self._publish(record, {}, None)
            return record

    def _check_revision(self, record: FunctionRecord, body: dict[str, Any]) -> None:
        expected = body.get("RevisionId")
        if expected is not None and expected != record.revision_id:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )

    async def _replace(self, old: FunctionRecord, **changes: Any) -> FunctionRecord:
        record = dataclasses.replace(
            old,
            last_modified=lambda_timestamp(self._clock()),
            revision_id=str(uuid.uuid4()),
            **changes,
        ).awaiting_template(after_update=True)
        await self._store.put(record.name, record.to_json())
        self._functions[record.name] = record
        self._changed(record.name)
        self._want_template(record)
        return record

    async def update_code(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        architectures = validation.architectures(body)
        # Its file closes however the upload (or the fetch from S3) ends.
        with await validation.package(body, self._code_source) as package:
            async with self._lock:
                old = self.get(name)
                self._check_revision(old, body)
                if body.get("DryRun"):
                    return old
                self._check_quotas(name, package.size - old.code_size, new_function=False)
                await self._packages.put(package.digest, package.file)
                record = await self._replace(
                    old,
                    code_sha256=package.sha256,
                    code_digest=package.digest,
                    code_size=package.size,
                    architectures=architectures or old.architectures,
                )
                await self._forget_package(old.code_digest)
                if body.get("Publish") is True:
                    return await self._publish(record, {}, None)
            return record

    async def update_configuration(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        validation.refuse_unsupported(body)
        changes = {
            "role": validation.role(body, required=False),
            "runtime": await self._runtime(body, required=False),
            "handler": validation.handler(
                body,
                required=False,
                runtime=body.get("Runtime") or getattr(self.lookup(name), "runtime", None),
            ),
            "description": validation.description(body),
            "timeout": validation.timeout(body),
            "memory_size": validation.memory_size(body),
            "environment": validation.environment(body),
            "ephemeral_storage": validation.ephemeral_storage(body),
            "tracing_mode": validation.tracing_mode(body),
            "snap_start": validation.snap_start(body),
            **self._layer_settings(body, name),
        }
        async with self._lock:
            old = self.get(name)
            self._check_revision(old, body)
            changed = {key: value for key, value in changes.items() if value is not None}
            # Not filtered: turning LogFormat back to Text clears the levels (None).
            changed.update(validation.logging_config(body, _logging_of(old)))
            record = await self._replace(old, **changed)
            for digest in set(old.layer_digests) - set(record.layer_digests):
                await self._forget_package(digest)
            return record

    async def _runtime(self, body: dict[str, Any], required: bool) -> str | None:
        """``Runtime``, refused when this host has no interpreter for it."""
        runtime = validation.runtime(body, required)
        if runtime is not None and not await asyncio.to_thread(self._runtime_installed, runtime):
            if runtime in runtimes.NODE_RUNTIMES:
                raise InvalidParameterValue(
                    f"The runtime parameter of {runtime} is not available on this ember host: "
                    f"Node.js {runtimes.node_major(runtime)} is not installed. Install it with "
                    f"`ember runtimes install {runtime}`."
                )
            raise InvalidParameterValue(
                f"The runtime parameter of {runtime} is not available on this ember host: "
                "it has no interpreter for it (ember never runs a function on another "
                "Python). Install it, or choose one of: "
                f"{', '.join(await asyncio.to_thread(runtimes.installed))}."
            )
        return runtime

    def _layer_settings(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        """``Layers`` as the record's three parallel fields (nothing when absent); the
        layers must be of the account owning the function ``key``."""
        account = self._arns.owner(key)[0]
        if self._layers is None:
            if body.get("Layers"):
                raise InvalidParameterValue("Layers are not available on this server.")
            return {}
        versions: tuple[LayerVersion, ...] | None = self._layers.resolve(body, account)
        if versions is None:
            return {}
        return {
            "layers": tuple(self._layers.version_arn(v.name, v.version) for v in versions),
            "layer_digests": tuple(v.digest for v in versions),
            "layer_sizes": tuple(v.code_size for v in versions),
        }

    async def put_runtime_management(
        self, name: str, qualifier: str | None, body: dict[str, Any]
    ) -> FunctionRecord:
        """PutRuntimeManagementConfig of ``$LATEST`` (published versions are immutable
        here: they keep the setting they were published with)."""
        if qualifier not in (None, LATEST):
            raise InvalidParameterValue(
                "ember keeps the runtime management configuration of $LATEST only: "
                "a published version keeps the one it was published with."
            )
        mode, arn = validation.runtime_management(body)
        async with self._lock:
            return await self._replace(
                self.get(name), update_runtime_on=mode, runtime_version_arn=arn
            )

    async def update_sandbox(self, name: str, body: dict[str, Any]) -> FunctionRecord:
        """ember's sandbox settings (egress, isolation level); sandboxes are rebuilt."""
        changes = validation.sandbox_settings(body)
        async with self._lock:
            return await self._replace(self.get(name), **changes)

    async def delete(self, name: str, qualifier: str | None = None) -> None:
        """Delete one version (``qualifier``) or the function with all it has."""
        if qualifier == LATEST:
            raise InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function."
            )
        async with self._lock:
            record = self._latest(name)
            if qualifier is not None:
                removed = await self._delete_version(name, qualifier)
                if removed is not None:
                    await self._forget_package(removed.code_digest)
                return
            await self._store.delete(name)
            gone = await self._delete_lineage(name)
            del self._functions[name]
            self._changed(name)
            await self._run_delete_hooks(name)
            digests = {record.code_digest, *record.layer_digests}
            for version in gone:
                digests.update((version.code_digest, *version.layer_digests))
            for digest in digests:
                await self._forget_package(digest)

    async def _run_delete_hooks(self, name: str) -> None:
        for hook in self._delete_hooks:
            try:
                await hook(name)
            except Exception:  # the function is gone either way; its leftovers are logged
                log.warning("cleaning up after deleted function %s failed", name, exc_info=True)

    # --- SnapStart templates ---------------------------------------------------

    def pending_templates(self) -> list[FunctionRecord]:
        """Every version (``$LATEST`` included) whose SnapStart template is to be made."""
        return [record for record in self.records() if record.template == Template.PENDING.value]

    async def settle_template(self, record: FunctionRecord, outcome: Outcome) -> bool:
        """Record what making ``record``'s template found; False (nothing written) when
        that version changed, went or was settled meanwhile: a newer revision waits for
        its own. Only status changes, so no listener hears of it and no sandbox retires."""
        async with self._lock:
            current = self._current(record)
            if current is None or current.revision_id != record.revision_id:
                return False
            if current.template != Template.PENDING.value:
                return False
            settled = current.settled(outcome)
            if record.version == LATEST:
                await self._store.put(record.name, settled.to_json())
                self._functions[record.name] = settled
            else:
                key = version_keys.key(record.name, record.version)
                await self._store.put(key, settled.to_json())
                self._published[record.name].versions[record.version] = settled
            return True

    def _current(self, record: FunctionRecord) -> FunctionRecord | None:
        """The stored record of ``record``'s version now, or None if it is gone."""
        if record.version == LATEST:
            return self._functions.get(record.name)
        published = self._published.get(record.name)
        return published.versions.get(record.version) if published else None

    def records(self) -> Iterator[FunctionRecord]:
        """Every stored record: each function's $LATEST and its published versions."""
        yield from self._functions.values()
        for published in self._published.values():
            yield from published.versions.values()

    def uses_package(self, digest: str) -> bool:
        """Whether a function's (or a version's) code or one of its layers is ``digest``."""
        return any(
            record.code_digest == digest or digest in record.layer_digests
            for record in self.records()
        )

    async def _forget_package(self, digest: str) -> None:
        """Packages are shared by content: drop one only when nothing uses it."""
        if self.uses_package(digest):
            return
        if self._layers is not None and self._layers.uses_package(digest):
            return
        await self._packages.delete(digest)


_DEFAULT_LOGGING: dict[str, Any] = {
    "log_format": "Text",
    "application_log_level": None,
    "system_log_level": None,
    "log_group": None,
}


def _logging_of(record: FunctionRecord) -> dict[str, Any]:
    return {key: getattr(record, key) for key in _DEFAULT_LOGGING}


def _position(key: str) -> tuple[str, int]:
    """Where ``name`` or ``name:version`` sorts in a listing (a bare name: after its versions)."""
    name, _, version = key.partition(":")
    if not version:
        return name, 1 << 62
    return name, -1 if version == LATEST else int(version) if is_decimal(version) else 1 << 62


def _encode_marker(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_marker(marker: str) -> str:
    with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
        return base64.urlsafe_b64decode(marker.encode()).decode()
    raise InvalidParameterValue(f"Invalid Marker: {marker}")

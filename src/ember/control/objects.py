"""The API server's store of Function manifests: spec, status, generation, resourceVersion.

Objects are keyed by (namespace, name); the name is the Lambda function's
storage key (``Arns.key``: the bare name in the default account, ``ACCOUNT.name``
in another), so a name belongs to one namespace at a time within an account,
and each account sees only its own objects, under their bare names. The registry stays the
source of truth for the function itself; this store holds what the user
asked for (``spec``) and what the controller found (``status``).

Kubernetes' rules: ``resourceVersion`` changes on every write (status
included) and a replace naming a stale one is a conflict; ``generation``
changes only when ``spec`` does; users write spec, only the controller
writes status. Deleting sets ``deletionTimestamp``; the controller tears the
function down and then removes the object (``finalize``), so a crash in
between is finished on the next reconcile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from ember.control.arns import Arns, bare
from ember.control.models import FunctionRecord
from ember.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from ember.manifests import API_VERSION, KIND, Manifest, problems_of
from ember.storage.base import MetadataStore, PackageStore

Key = tuple[str, str]
Listener = Callable[[Key], None]
Clock = Callable[[], datetime]
MANAGED_BY = "ember.dev/managed-by"


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(labels: dict[str, str], selector: str | None) -> bool:
    """Kubernetes equality selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma = and."""
    for term in (selector or "").split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def check_selector(selector: str | None) -> None:
    for term in (selector or "").split(","):
        key = term.replace("!=", "=").replace("==", "=").split("=", 1)[0].strip().lstrip("!")
        if term.strip() and not key:
            raise InvalidParameterValue(f"Invalid label selector {selector!r}: empty key")


class FunctionObjects:
    """Function objects, durable in their own store and served from memory."""

    def __init__(
        self,
        store: MetadataStore,
        packages: PackageStore,
        clock: Clock,
        names: Arns | None = None,  # None: only the default account (tests)
    ) -> None:
        self._store = store
        self._names = names
        self._packages = packages
        self._clock = clock
        self._objects: dict[Key, dict[str, Any]] = {}
        # Invariant: above every resourceVersion ever handed out.
        self._version = 0
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []

    async def load(self) -> None:
        for key, document in (await self._store.load_all()).items():
            namespace, _, name = key.partition("/")
            body = orjson.loads(document)
            self._objects[(namespace, name)] = body
            self._version = max(self._version, int(body["metadata"]["resourceVersion"]))

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``manifests``): another node wrote the object
        ``namespace/name``; memory follows and the listeners hear of it (the controller
        reconciles it wherever it runs). Nothing is written. Idempotent."""
        namespace, _, name = key.partition("/")
        async with self._lock:
            if document is None:
                changed = self._objects.pop((namespace, name), None) is not None
            else:
                body = orjson.loads(document)
                changed = self._objects.get((namespace, name)) != body
                self._objects[(namespace, name)] = body
                self._version = max(self._version, int(body["metadata"]["resourceVersion"]))
        if changed:
            for listener in self._listeners:
                listener((namespace, name))

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(key)`` after every write (the controller's work queue)."""
        self._listeners.append(listener)

    # -- reads ----------------------------------------------------------------

    def _key(self, account: str | None, name: str) -> str:
        """The stored name of ``account``'s object ``name`` (None: the default account)."""
        if self._names is None or account is None:
            return name
        return self._names.key(account, name)

    def _owned(self, account: str | None, name: str) -> bool:
        if self._names is None or account is None:
            return True
        return self._names.owner(name)[0] == account

    def get(self, namespace: str, name: str, account: str | None = None) -> dict[str, Any]:
        """The object as its owner sees it (``metadata.name`` bare)."""
        found = self._objects.get((namespace, self._key(account, name)))
        if found is None:
            raise ResourceNotFound(
                f'functions.ember.dev "{name}" not found in namespace {namespace}'
            )
        return shown(found)

    def lookup(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((namespace, name))

    def all_keys(self) -> list[Key]:
        return sorted(self._objects)

    def owner(self, function: str) -> Key | None:
        """The object that manages the Lambda function ``function``, if any."""
        return next((key for key in self._objects if key[1] == function), None)

    def list(
        self, namespace: str | None, selector: str | None, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of ``account`` (None: every account's, stored names) matching both."""
        check_selector(selector)
        return [
            shown(body) if account is not None else copy.deepcopy(body)
            for key, body in sorted(self._objects.items())
            if (namespace is None or key[0] == namespace)
            and self._owned(account, key[1])
            and matches(body["metadata"].get("labels") or {}, selector)
        ]

    # -- writes by users ------------------------------------------------------

    async def create(
        self, namespace: str, body: dict[str, Any], account: str | None = None
    ) -> dict[str, Any]:
        return (await self.apply(namespace, None, body, create_only=True, account=account))[0]

    async def replace(
        self, namespace: str, name: str, body: dict[str, Any], account: str | None = None
    ) -> dict[str, Any]:
        return (await self.apply(namespace, name, body, replace_only=True, account=account))[0]

    async def apply(
        self,
        namespace: str,
        name: str | None,
        body: dict[str, Any],
        dry_run: bool = False,
        create_only: bool = False,
        replace_only: bool = False,
        account: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Create or update from a whole object; (the object, created|configured|unchanged).

        A ``metadata.resourceVersion`` in ``body`` must be the current one
        (ResourceConflict otherwise). ``status`` in ``body`` is ignored. The
        object is ``account``'s (None: the default account's).
        """
        desired = await self._checked(namespace, name, body, dry_run)
        stored = self._key(account, desired["metadata"]["name"])
        desired["metadata"]["name"] = stored
        key = (namespace, stored)
        async with self._lock:
            self._check_owner(key)
            old = self._objects.get(key)
            if old is None and replace_only:
                raise ResourceNotFound(f'functions.ember.dev "{key[1]}" not found')
            if old is not None and create_only:
                raise ResourceConflict(f'functions.ember.dev "{key[1]}" already exists')
            if old is not None and old["metadata"].get("deletionTimestamp"):
                raise ResourceConflict(f'functions.ember.dev "{key[1]}" is being deleted')
            expected = body.get("metadata", {}).get("resourceVersion")
            if old is not None and expected not in (None, old["metadata"]["resourceVersion"]):
                raise ResourceConflict(
                    f'Operation cannot be fulfilled on functions.ember.dev "{key[1]}": the object '
                    "has been modified; please apply your changes to the latest version and try "
                    "again"
                )
            merged, action = self._merge(old, desired)
            if action != "unchanged" and not dry_run:
                merged = await self._write(key, merged)
            return shown(merged), action

    async def delete(self, namespace: str, name: str, account: str | None = None) -> dict[str, Any]:
        """Mark for deletion; the controller removes the function, then the object."""
        async with self._lock:
            key = (namespace, self._key(account, name))
            self.get(namespace, name, account)  # ResourceNotFound
            body = copy.deepcopy(self._objects[key])
            if not body["metadata"].get("deletionTimestamp"):
                body["metadata"]["deletionTimestamp"] = timestamp(self._clock())
                body = await self._write(key, body)
            return shown(body)

    # -- writes by the controller ---------------------------------------------

    async def put_status(self, key: Key, status: dict[str, Any]) -> None:
        """Replace the status (never the spec, never the generation); gone objects are skipped."""
        async with self._lock:
            body = self._objects.get(key)
            if body is None or body.get("status") == status:
                return
            await self._write(key, {**body, "status": status}, notify=False)

    async def finalize(self, key: Key) -> None:
        """Remove an object marked for deletion (its function is already gone)."""
        async with self._lock:
            if key in self._objects:
                await self._store.delete("/".join(key))
                del self._objects[key]

    async def package(self, digest: str) -> bytes:
        return await self._packages.get(digest)

    # -- internals --------------------------------------------------------------

    async def _checked(
        self, namespace: str, name: str | None, body: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        """Validate ``body`` and store its package; the object as it will be stored."""
        problems = problems_of(Manifest("request", body))
        if problems:
            raise InvalidParameterValue("; ".join(f"{p.field}: {p.message}" for p in problems))
        metadata = body["metadata"]
        if metadata.get("namespace", namespace) != namespace:
            raise InvalidParameterValue(
                f"metadata.namespace: {metadata['namespace']!r} does not match the request's "
                f"namespace {namespace!r}"
            )
        if name is not None and metadata["name"] != name:
            raise InvalidParameterValue(
                f"metadata.name: {metadata['name']!r} does not match the request's name {name!r}"
            )
        spec = copy.deepcopy(body["spec"])
        spec["code"] = await self._code(spec["code"], dry_run)
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": metadata["name"],
                "namespace": namespace,
                "labels": dict(metadata.get("labels") or {}),
                "annotations": dict(metadata.get("annotations") or {}),
            },
            "spec": spec,
        }

    async def _code(self, code: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """``zipFile`` (base64) is stored as a package and replaced by its ``sha256``."""
        if "inline" in code:
            return {"inline": code["inline"]}
        if "zipFile" in code:
            try:
                data = base64.b64decode(code["zipFile"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidParameterValue("spec.code.zipFile: not valid base64") from None
            digest = hashlib.sha256(data).hexdigest()
            if not dry_run:
                await self._packages.put(digest, data)
            return {**{k: v for k, v in code.items() if k != "zipFile"}, "sha256": digest}
        if "sha256" not in code:
            raise InvalidParameterValue(
                "spec.code.path: the CLI reads the path and sends the package as spec.code.zipFile"
            )
        return dict(code)

    def _check_owner(self, key: Key) -> None:
        owner = self.owner(key[1])
        if owner is not None and owner != key:
            raise ResourceConflict(
                f"function {key[1]!r} is already defined in namespace {owner[0]!r}: "
                "names are unique across namespaces"
            )

    def _merge(
        self, old: dict[str, Any] | None, desired: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        if old is None:
            metadata = {
                **desired["metadata"],
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": timestamp(self._clock()),
            }
            return {**desired, "metadata": metadata, "status": {}}, "created"
        spec_changed = old["spec"] != desired["spec"]
        metadata = {
            **old["metadata"],
            "labels": desired["metadata"]["labels"],
            "annotations": desired["metadata"]["annotations"],
            "generation": old["metadata"]["generation"] + (1 if spec_changed else 0),
        }
        if not spec_changed and metadata == old["metadata"]:
            return old, "unchanged"
        return {**old, "metadata": metadata, "spec": desired["spec"]}, "configured"

    async def _write(self, key: Key, body: dict[str, Any], notify: bool = True) -> dict[str, Any]:
        self._version += 1
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self._version)}}
        await self._store.put("/".join(key), orjson.dumps(body).decode())
        self._objects[key] = body
        if notify:
            for listener in self._listeners:
                listener(key)
        return body


def shown(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored object as its owner sees it: ``metadata.name`` bare."""
    copied = copy.deepcopy(body)
    copied["metadata"]["name"] = bare(copied["metadata"]["name"])
    return copied


def lambda_object(record: FunctionRecord) -> dict[str, Any]:
    """How a function made with the Lambda API looks in a listing: no spec of its own."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": record.function_name,
            "namespace": "default",
            "labels": {},
            "annotations": {MANAGED_BY: "lambda-api"},
            "creationTimestamp": record.last_modified,
        },
        "spec": {
            "runtime": record.runtime,
            "handler": record.handler,
            "memoryMB": record.memory_size,
            "timeoutSeconds": record.timeout,
            "code": {"sha256": record.code_digest},
        },
        "status": {},
    }


def listing(
    objects: FunctionObjects,
    records: list[FunctionRecord],
    namespace: str | None,
    selector: str | None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """Manifest objects plus every registry function no object manages (namespace default):
    those of ``account`` (``records`` must be its functions), under their bare names."""
    found = objects.list(namespace, selector, account)
    if namespace in (None, "default"):
        managed = {body["metadata"]["name"] for body in objects.list(None, None)}
        found += [
            lambda_object(record)
            for record in records
            if record.name not in managed and matches({}, selector)
        ]
    return sorted(found, key=lambda body: (body["metadata"]["namespace"], body["metadata"]["name"]))

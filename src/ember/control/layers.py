"""Lambda layers: named, numbered, immutable zip versions that functions mount at /opt.

A layer is a name with versions 1, 2, ... (numbers are never reused, even
after a delete). Each version's zip lives once in the package store, keyed
by its digest, so a layer and a function (or two layers) with the same bytes
share one copy. Content is dropped only when no layer version and no
function uses it: a function keeps running a layer version deleted after it
was attached, as on Lambda (the function record keeps the digest).

Metadata is one JSON document per layer name in a MetadataStore of its own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from ember.control import validation
from ember.control.arns import Arns
from ember.errors import AccessDenied, InvalidParameterValue, ResourceNotFound, ValidationError
from ember.storage.base import CodeSource, MetadataStore, PackageStore

log = logging.getLogger("ember.control")

Clock = Callable[[], datetime]
InUse = Callable[[str], bool]
MAX_PAGE = 50
MAX_LAYERS_PER_FUNCTION = 5
_NAME = re.compile(r"^[a-zA-Z0-9-_]{1,140}$")
_LAYER_ARN = re.compile(
    r"^arn:(?:aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d):"
    r"(?P<account>\d{12}):layer:(?P<name>[a-zA-Z0-9-_]+)(?::(?P<version>[0-9]+))?$"
)
_VERSION_ARN_PATTERN = (
    r"arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1}:\d{12}:layer:"
    r"[a-zA-Z0-9-_]+:[0-9]+"
)
_NOT_FOUND = "The resource you requested does not exist."


def _utcnow() -> datetime:
    return datetime.now(UTC)


def created_date(moment: datetime) -> str:
    """Lambda's CreatedDate of a layer version: ``2026-11-28T13:07:49.123+0000``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class LayerVersion:
    """One published, immutable version of a layer."""

    name: str
    version: int
    description: str
    license_info: str | None
    compatible_runtimes: tuple[str, ...]
    compatible_architectures: tuple[str, ...]
    created: str
    digest: str  # hex SHA-256: the package store's key
    code_sha256: str  # base64 SHA-256, as Lambda reports it
    code_size: int


@dataclass
class Layer:
    name: str
    # Invariant: greater than every version ever published (deleted ones too).
    next_version: int = 1
    versions: dict[int, LayerVersion] = field(default_factory=dict)

    def to_json(self) -> str:
        versions = [asdict(v) for v in self.versions.values()]
        return orjson.dumps(
            {"name": self.name, "next_version": self.next_version, "versions": versions}
        ).decode()

    @classmethod
    def from_json(cls, document: str) -> Layer:
        raw: dict[str, Any] = orjson.loads(document)
        versions = {}
        for item in raw["versions"]:
            item["compatible_runtimes"] = tuple(item["compatible_runtimes"])
            item["compatible_architectures"] = tuple(item["compatible_architectures"])
            versions[int(item["version"])] = LayerVersion(**item)
        return cls(raw["name"], int(raw["next_version"]), versions)


@dataclass(frozen=True)
class LayerPage:
    items: list[Any]
    next_marker: str | None


class LayerRegistry:
    """Publish, read, list and delete layer versions; resolve a function's ``Layers``."""

    def __init__(
        self,
        store: MetadataStore,
        packages: PackageStore,
        arns: Arns,
        clock: Clock = _utcnow,
        code_source: CodeSource | None = None,
    ) -> None:
        self._store = store
        # The users' bucket ``Content.S3Bucket`` names (None: content inline only).
        self._code_source = code_source
        self._packages = packages
        self._arns = arns
        self._clock = clock
        self._layers: dict[str, Layer] = {}
        self._lock = asyncio.Lock()
        self._functions_use: InUse = lambda digest: False
        # check(key, new_bytes): refuses what would exceed the owner's code storage.
        self._check_storage: Callable[[str, int], None] = lambda key, size: None

    def share_packages_with(self, functions_use: InUse) -> None:
        """``functions_use(digest)``: whether any function still needs that package."""
        self._functions_use = functions_use

    def check_storage_with(self, check: Callable[[str, int], None]) -> None:
        """``check(key, new_bytes)`` raises when a publish would exceed the quota of
        the account owning layer ``key`` (functions and layers count together)."""
        self._check_storage = check

    def usage(self, account: str) -> int:
        """Bytes of every layer version of ``account``."""
        return sum(
            version.code_size
            for key, layer in self._layers.items()
            if self._arns.owner(key)[0] == account
            for version in layer.versions.values()
        )

    async def load(self) -> None:
        for name, document in (await self._store.load_all()).items():
            self._layers[name] = Layer.from_json(document)
        log.info("layers loaded: %d", len(self._layers))

    async def apply_remote(self, name: str, document: str | None) -> None:
        """The feed's callback (namespace ``layers``): another node published or deleted
        a version of layer ``name``; memory follows, nothing is written. Idempotent."""
        async with self._lock:
            if document is None:
                self._layers.pop(name, None)
            else:
                self._layers[name] = Layer.from_json(document)

    # --- ARNs ------------------------------------------------------------------

    def layer_arn(self, key: str) -> str:
        """The ARN of the layer stored under ``key`` (``Arns.key``: per account)."""
        account, name = self._arns.owner(key)
        return f"arn:aws:lambda:{self._arns.region}:{account}:layer:{name}"

    def version_arn(self, name: str, version: int) -> str:
        return f"{self.layer_arn(name)}:{version}"

    def _name(self, raw: str, account: str | None = None) -> str:
        """The key of a LayerName path parameter: a name of ``account`` (None: the
        default account) or a layer ARN (no version), of the ARN's account."""
        match = _LAYER_ARN.match(raw)
        if match is not None and match.group("version") is None:
            return self._arns.key(match.group("account"), match.group("name"))
        if not _NAME.match(raw):
            raise ValidationError.constraint(
                raw,
                "layerName",
                "Member must satisfy regular expression pattern: "
                r"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)"
                r"|[a-zA-Z0-9-_]+",
            )
        return self._arns.key(account or self._arns.account_id, raw)

    # --- reads -------------------------------------------------------------------

    def get(self, name: str, version: int, account: str | None = None) -> LayerVersion:
        if version < 1:
            raise InvalidParameterValue("Layer Version Cannot be less than 1")
        return self._get(self._name(name, account), version)

    def _get(self, key: str, version: int) -> LayerVersion:
        layer = self._layers.get(key)
        found = layer.versions.get(version) if layer is not None else None
        if found is None:
            raise ResourceNotFound(_NOT_FOUND)
        return found

    def get_by_arn(self, arn: str, account: str | None = None) -> LayerVersion:
        """The version ``arn`` names; ``account``'s caller may use only its own layers
        (another account's is AccessDenied, as Lambda says without a layer policy)."""
        match = _LAYER_ARN.match(arn)
        if match is None or match.group("version") is None:
            raise ValidationError.constraint(
                arn,
                "arn",
                f"Member must satisfy regular expression pattern: {_VERSION_ARN_PATTERN}",
            )
        if match.group("region") != self._arns.region:
            raise ResourceNotFound(_NOT_FOUND)
        caller = account or self._arns.account_id
        if match.group("account") != caller:
            raise AccessDenied(
                f"User: arn:aws:iam::{caller}:root is not authorized to perform: "
                f"lambda:GetLayerVersion on resource: {arn} because no resource-based "
                "policy allows the lambda:GetLayerVersion action"
            )
        key = self._arns.key(caller, match.group("name"))
        return self._get(key, int(match.group("version")))

    def list_layers(
        self,
        marker: str | None,
        max_items: int | None,
        runtime: str | None = None,
        architecture: str | None = None,
        account: str | None = None,
    ) -> LayerPage:
        """``account``'s layers in name order (keys), each with its latest version
        (matching ``runtime`` and ``architecture``)."""
        items: list[tuple[str, LayerVersion]] = []
        owner = account or self._arns.account_id
        for name in sorted(k for k in self._layers if self._arns.owner(k)[0] == owner):
            matching = [
                v
                for v in self._layers[name].versions.values()
                if _compatible(v, runtime, architecture)
            ]
            if matching:
                items.append((name, max(matching, key=lambda v: v.version)))
        return _page(items, marker, max_items, key=lambda item: item[0])

    def list_versions(
        self,
        name: str,
        marker: str | None,
        max_items: int | None,
        runtime: str | None = None,
        architecture: str | None = None,
        account: str | None = None,
    ) -> LayerPage:
        """A layer's versions, newest first (an unknown layer has none, as on Lambda)."""
        layer = self._layers.get(self._name(name, account))
        versions = sorted(
            (
                v
                for v in (layer.versions.values() if layer else ())
                if _compatible(v, runtime, architecture)
            ),
            key=lambda v: -v.version,
        )
        return _page(versions, marker, max_items, key=lambda v: f"{v.version:012d}", reverse=True)

    def uses_package(self, digest: str) -> bool:
        return any(
            v.digest == digest for layer in self._layers.values() for v in layer.versions.values()
        )

    async def content(self, name: str, version: int, account: str | None = None) -> bytes:
        return await self._packages.get(self.get(name, version, account).digest)

    def resolve(
        self, body: dict[str, Any], account: str | None = None
    ) -> tuple[LayerVersion, ...] | None:
        """A function's ``Layers`` (absent: None), each a version of ``account``'s
        (the function's owner) that exists now."""
        raw = body.get("Layers")
        if raw is None:
            return None
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise InvalidParameterValue("Layers must be a list of layer version ARNs.")
        if len(raw) > MAX_LAYERS_PER_FUNCTION:
            raise InvalidParameterValue("Cannot reference more than 5 layers.")
        resolved: list[LayerVersion] = []
        for arn in raw:
            match = _LAYER_ARN.match(arn)
            if match is None or match.group("version") is None:
                raise ValidationError.constraint(
                    raw,
                    "layers",
                    "Member must satisfy constraint: [Member must satisfy regular expression "
                    f"pattern: {_VERSION_ARN_PATTERN}]",
                )
            try:
                resolved.append(self.get_by_arn(arn, account))
            except ResourceNotFound:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.") from None
        names = [v.name for v in resolved]
        if len(set(names)) != len(names):
            raise InvalidParameterValue(
                "Two different versions of the same layer are not allowed to be referenced in "
                "the same function."
            )
        return tuple(resolved)

    # --- writes ------------------------------------------------------------------

    async def publish(
        self, raw_name: str, body: dict[str, Any], account: str | None = None
    ) -> LayerVersion:
        name = self._name(raw_name, account)
        if _LAYER_ARN.match(raw_name):
            raise InvalidParameterValue("PublishLayerVersion takes a layer name, not an ARN.")
        content = body.get("Content")
        if not isinstance(content, dict):
            raise ValidationError.constraint(content, "content", "Member must not be null")
        # Its file closes however the upload (or the fetch from S3) ends.
        with await validation.package(content, self._code_source) as package:
            settings = _layer_settings(body)
            async with self._lock:
                self._check_storage(name, package.size)
                layer = self._layers.get(name) or Layer(name)
                await self._packages.put(package.digest, package.file)
                version = LayerVersion(
                    name=name,
                    version=layer.next_version,
                    created=created_date(self._clock()),
                    digest=package.digest,
                    code_sha256=package.sha256,
                    code_size=package.size,
                    **settings,
                )
                updated = Layer(
                    name, layer.next_version + 1, {**layer.versions, version.version: version}
                )
                await self._store.put(name, updated.to_json())
                self._layers[name] = updated
            return version

    async def delete(self, raw_name: str, version: int, account: str | None = None) -> None:
        """Delete one version; deleting a missing one is not an error (as on Lambda)."""
        if version < 1:
            raise InvalidParameterValue("Layer Version Cannot be less than 1")
        name = self._name(raw_name, account)
        async with self._lock:
            layer = self._layers.get(name)
            if layer is None or version not in layer.versions:
                return
            gone = layer.versions[version]
            remaining = {n: v for n, v in layer.versions.items() if n != version}
            updated = replace(layer, versions=remaining)
            # The document stays while the layer has no versions: it keeps next_version.
            await self._store.put(name, updated.to_json())
            self._layers[name] = updated
            if not self.uses_package(gone.digest) and not self._functions_use(gone.digest):
                await self._packages.delete(gone.digest)


def _compatible(version: LayerVersion, runtime: str | None, architecture: str | None) -> bool:
    """Whether ``version`` passes ListLayers' filters (an absent one passes all)."""
    return (runtime is None or runtime in version.compatible_runtimes) and (
        architecture is None or architecture in version.compatible_architectures
    )


def _layer_settings(body: dict[str, Any]) -> dict[str, Any]:
    runtimes = body.get("CompatibleRuntimes") or []
    if not isinstance(runtimes, list) or len(runtimes) > 15:
        raise ValidationError.constraint(
            runtimes, "compatibleRuntimes", "Member must have length less than or equal to 15"
        )
    architectures = body.get("CompatibleArchitectures") or []
    if not isinstance(architectures, list) or any(
        a not in ("x86_64", "arm64") for a in architectures
    ):
        raise ValidationError.constraint(
            architectures,
            "compatibleArchitectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
        )
    license_info = body.get("LicenseInfo")
    if license_info is not None and (not isinstance(license_info, str) or len(license_info) > 512):
        raise ValidationError.constraint(
            license_info, "licenseInfo", "Member must have length less than or equal to 512"
        )
    return {
        "description": validation.description(body) or "",
        "license_info": license_info,
        "compatible_runtimes": tuple(str(r) for r in runtimes),
        "compatible_architectures": tuple(str(a) for a in architectures),
    }


def _page(
    items: list[Any],
    marker: str | None,
    max_items: int | None,
    key: Callable[[Any], str],
    reverse: bool = False,
) -> LayerPage:
    """One page of ``items`` (already in order); the marker is the key of the last one."""
    limit = MAX_PAGE if max_items is None else max_items
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError.constraint(
            limit, "maxItems", f"Member must have value between 1 and {MAX_PAGE}"
        )
    if marker:
        after = _decode_marker(marker)
        items = [i for i in items if (key(i) < after if reverse else key(i) > after)]
    chosen = items[:limit]
    more = len(items) > limit
    return LayerPage(chosen, _encode_marker(key(chosen[-1])) if more and chosen else None)


def _encode_marker(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode_marker(marker: str) -> str:
    with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
        return base64.urlsafe_b64decode(marker.encode()).decode()
    raise InvalidParameterValue(f"Invalid Marker: {marker}")

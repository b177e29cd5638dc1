"""Function URLs: a function's (or alias's) own HTTP endpoint, ``/url/NAME/`` on ember.

Lambda gives each URL a random host name (``<id>.lambda-url.<region>.on.aws``);
ember serves every URL on its own port under a path that names the function:
``http://HOST:PORT/url/NAME/`` and, for an alias, ``http://HOST:PORT/url/NAME:ALIAS/``;
and host-style as Lambda does, ``http://<url-id>.lambda-url.<region>.<url domain>:PORT/``,
the id derived from the key (``url_id``) so that every node finds the same one
without storing it. ``FunctionUrl`` names the host form when a URL domain is set.

Configs are kept in memory (every URL request looks one up) and written
through to a MetadataStore of their own, keyed ``NAME`` or ``NAME:ALIAS``.
``AuthType`` ``AWS_IAM`` is enforced when the URL is called
(``ember.invoke.urls``): a SigV4-signed request whose signer may
``lambda:InvokeFunctionUrl``; ``NONE`` is public.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from ember.control.arns import Arns, parse
from ember.control.registry import FunctionRegistry
from ember.errors import (
    InvalidParameterValue,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.storage.base import MetadataStore

log = logging.getLogger("ember.control")

Clock = Callable[[], datetime]
AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
PREFIX = "/url/"
_QUALIFIER = re.compile(r"^(?!\d+$)[0-9a-zA-Z-_]{1,128}$")
_QUALIFIER_PATTERN = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)"
_NOT_FOUND = "The resource you requested does not exist."
_CORS_LISTS = {
    "AllowHeaders": 100,
    "AllowMethods": 6,
    "AllowOrigins": 100,
    "ExposeHeaders": 100,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    """ISO-8601 with microseconds, as Lambda writes CreationTime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class UrlConfig:
    """One function URL's settings."""

    function: str
    qualifier: str | None  # an alias, or None for the unqualified function
    auth_type: str  # "NONE" (public) or "AWS_IAM" (signed and authorized callers only)
    cors: dict[str, Any] | None  # Lambda's Cors structure, as given
    invoke_mode: str  # "BUFFERED" or "RESPONSE_STREAM" (streamed as the function writes)
    creation_time: str
    last_modified_time: str

    @property
    def key(self) -> str:
        return key_of(self.function, self.qualifier)

    def path(self) -> str:
        """ember's path form of the URL: ``/url/NAME/`` or ``/url/NAME:ALIAS/``."""
        return f"{PREFIX}{self.key}/"

    def url(self, endpoint_url: str, host_suffix: str = "") -> str:
        """The URL clients call: host-style under ``host_suffix``
        (``.lambda-url.<region>.<domain>``) if given, else ember's path form."""
        if not host_suffix:
            return endpoint_url + self.path()
        parts = urlsplit(endpoint_url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{url_id(self.key)}{host_suffix}{port}/"

    def to_api(self, arns: Arns, endpoint_url: str, host_suffix: str = "") -> dict[str, Any]:
        """FunctionUrlConfig as Lambda returns it."""
        body: dict[str, Any] = {
            "FunctionUrl": self.url(endpoint_url, host_suffix),
            "FunctionArn": arns.function(self.function, self.qualifier),
            "AuthType": self.auth_type,
            "CreationTime": self.creation_time,
            "LastModifiedTime": self.last_modified_time,
            "InvokeMode": self.invoke_mode,
        }
        if self.cors is not None:
            body["Cors"] = self.cors
        return body


def key_of(function: str, qualifier: str | None) -> str:
    return f"{function}:{qualifier}" if qualifier else function


def url_id(key: str) -> str:
    """The host label of the URL ``key``: 32 of [a-z2-7], like Lambda's ids, a DNS label
    whatever the name (keys hold ``.`` and ``:``), the same on every node."""
    digest = hashlib.sha256(key.encode()).digest()
    return base64.b32encode(digest).decode().lower()[:32]


class FunctionUrls:
    """Create, read, change and delete function URL configs (interfaces §6)."""

    # Rows of functions that do not exist are deleted at load (a delete cut short by
    # a crash). Not in a cluster: there another node may have just created the
    # function, and the feed brings it after the load.
    prune_orphans = True

    def __init__(
        self,
        store: MetadataStore,
        registry: FunctionRegistry,
        arns: Arns,
        endpoint_url: str,
        clock: Clock = _utcnow,
    ) -> None:
        self._store = store
        self._registry = registry
        self.arns = arns
        self.endpoint_url = endpoint_url
        self._clock = clock
        self._configs: dict[str, UrlConfig] = {}
        self._ids: dict[str, str] = {}  # url_id -> key, for host-style URLs
        self._lock = asyncio.Lock()
        self._forgetting: set[asyncio.Task[None]] = set()  # strong refs until done
        registry.subscribe(self._function_changed)

    async def load(self) -> None:
        """Read every config; those of functions deleted meanwhile are dropped."""
        for key, document in (await self._store.load_all()).items():
            config = UrlConfig(**orjson.loads(document))
            if self._registry.lookup(config.function) is None:
                if self.prune_orphans:
                    await self._store.delete(key)
                continue
            self._keep(config)
        log.info("function urls loaded: %d", len(self._configs))

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``urls``): another node wrote the config
        ``key``; memory follows, nothing is written. Idempotent."""
        async with self._lock:
            if document is None:
                self._drop(key)
            else:
                self._keep(UrlConfig(**orjson.loads(document)))

    def _function_changed(self, name: str, local: bool) -> None:
        """A deleted function's URLs stop answering at once; their rows go right after.

        Durably too: a function recreated under the same name must not find its
        predecessor's URL again after a restart. The rows are the deleting node's to
        remove (``local``); this node hears of their removal through the feed.
        """
        if self._registry.lookup(name) is None:
            keys = [k for k, c in self._configs.items() if c.function == name]
            for key in keys:
                self._drop(key)
            if keys and local:
                task = asyncio.get_running_loop().create_task(self._forget(keys))
                self._forgetting.add(task)
                task.add_done_callback(self._forgetting.discard)

    async def _forget(self, keys: list[str]) -> None:
        async with self._lock:
            for key in keys:
                if key not in self._configs:  # not recreated meanwhile
                    await self._store.delete(key)

    # --- reads (the hot path: no I/O) ----------------------------------------------

    def get(self, function: str, qualifier: str | None = None) -> UrlConfig | None:
        return self._configs.get(key_of(function, qualifier))

    def key_of_id(self, url: str) -> str | None:
        """The key (``NAME`` or ``NAME:ALIAS``) of the URL whose host label is ``url``."""
        return self._ids.get(url)

    def list(self, function: str) -> list[UrlConfig]:
        return sorted(
            (c for c in self._configs.values() if c.function == function), key=lambda c: c.key
        )

    def find_function(self, function: str) -> str:
        """The name of an existing function (ListFunctionUrlConfigs' check)."""
        name, _ = self._target(function, None)
        if self._registry.lookup(name) is None:
            raise ResourceNotFound("Function does not exist")
        return name

    def find(self, function: str, qualifier: str | None = None) -> UrlConfig:
        """The config of an existing function (Lambda's errors otherwise)."""
        name, qualifier = self._target(function, qualifier)
        if self._registry.lookup(name) is None:
            raise ResourceNotFound(_NOT_FOUND)
        config = self.get(name, qualifier)
        if config is None:
            raise ResourceNotFound(_NOT_FOUND)
        return config

    # --- writes ------------------------------------------------------------------

    async def create(
        self, function: str, body: dict[str, Any], qualifier: str | None = None
    ) -> UrlConfig:
        name, qualifier = self._target(function, qualifier)
        self._function(name, qualifier)
        settings = _settings(body, require_auth=True)
        async with self._lock:
            if key_of(name, qualifier) in self._configs:
                raise ResourceConflict(
                    "Failed to create function url config for [functionArn = "
                    f"{self.arns.function(name, qualifier)}]. Error message:  "
                    "FunctionUrlConfig exists for this Lambda function"
                )
            now = _timestamp(self._clock())
            config = UrlConfig(
                function=name,
                qualifier=qualifier,
                auth_type=settings["auth_type"],
                cors=settings.get("cors"),
                invoke_mode=settings.get("invoke_mode", "BUFFERED"),
                creation_time=now,
                last_modified_time=now,
            )
            await self._save(config)
        return config

    async def update(
        self, function: str, body: dict[str, Any], qualifier: str | None = None
    ) -> UrlConfig:
        """Change the given settings only (Lambda's UpdateFunctionUrlConfig)."""
        name, qualifier = self._target(function, qualifier)
        self._function(name, qualifier)
        changes = _settings(body, require_auth=False)
        async with self._lock:
            old = self.find(name, qualifier)
            config = dataclasses.replace(
                old, last_modified_time=_timestamp(self._clock()), **changes
            )
            await self._save(config)
        return config

    async def delete(self, function: str, qualifier: str | None = None) -> None:
        name, qualifier = self._target(function, qualifier)
        async with self._lock:
            config = self.find(name, qualifier)
            await self._store.delete(config.key)
            self._drop(config.key)

    async def _save(self, config: UrlConfig) -> None:
        await self._store.put(config.key, orjson.dumps(dataclasses.asdict(config)).decode())
        self._keep(config)

    def _keep(self, config: UrlConfig) -> None:
        self._configs[config.key] = config
        self._ids[url_id(config.key)] = config.key

    def _drop(self, key: str) -> None:
        self._configs.pop(key, None)
        self._ids.pop(url_id(key), None)

    # --- helpers -----------------------------------------------------------------

    def _target(self, function: str, qualifier: str | None) -> tuple[str, str | None]:
        """(key, alias or None) from any spelling (a storage key, as the API resolved
        it, or an ARN); versions and $LATEST are refused."""
        ref = parse(function, qualifier)
        if ref.qualifier is not None and not _QUALIFIER.match(ref.qualifier):
            raise ValidationError.constraint(
                ref.qualifier,
                "qualifier",
                f"Member must satisfy regular expression pattern: {_QUALIFIER_PATTERN}",
            )
        return self.arns.resolve(ref), ref.qualifier

    def _function(self, name: str, qualifier: str | None) -> None:
        """The function (or alias) must exist: Lambda says ``Function does not exist``."""
        try:
            self._registry.get(name, qualifier)
        except ResourceNotFound:
            raise ResourceNotFound("Function does not exist") from None


def _settings(body: dict[str, Any], require_auth: bool) -> dict[str, Any]:
    """AuthType, Cors and InvokeMode from a request body (only those given)."""
    settings: dict[str, Any] = {}
    auth = body.get("AuthType")
    if auth is None and require_auth:
        raise ValidationError.constraint(None, "authType", "Member must not be null")
    if auth is not None:
        if auth not in AUTH_TYPES:
            raise ValidationError.constraint(
                auth, "authType", "Member must satisfy enum value set: [NONE, AWS_IAM]"
            )
        settings["auth_type"] = auth
    mode = body.get("InvokeMode")
    if mode is not None:
        if mode not in INVOKE_MODES:
            raise ValidationError.constraint(
                mode,
                "invokeMode",
                "Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]",
            )
        settings["invoke_mode"] = mode
    if "Cors" in body:
        settings["cors"] = _cors(body["Cors"])
    return settings


def _cors(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidParameterValue("Cors must be an object.")
    unknown = set(raw) - {*_CORS_LISTS, "AllowCredentials", "MaxAge"}
    if unknown:
        raise InvalidParameterValue(f"Unknown Cors setting(s): {', '.join(sorted(unknown))}")
    for key, limit in _CORS_LISTS.items():
        value = raw.get(key)
        if value is not None and (
            not isinstance(value, list)
            or len(value) > limit
            or not all(isinstance(v, str) for v in value)
        ):
            raise ValidationError.constraint(
                value, f"cors.{key[0].lower()}{key[1:]}", f"Member must be at most {limit} strings"
            )
    if "AllowCredentials" in raw and not isinstance(raw["AllowCredentials"], bool):
        raise InvalidParameterValue("Cors.AllowCredentials must be true or false.")
    age = raw.get("MaxAge")
    if age is not None and (not isinstance(age, int) or not 0 <= age <= 86400):
        raise ValidationError.constraint(
            age, "cors.maxAge", "Member must have value between 0 and 86400"
        )
    return dict(raw)


__all__ = ["FunctionUrls", "UrlConfig", "key_of", "url_id"]

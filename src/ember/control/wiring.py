"""The registry layer, wired: functions, layers and function URLs over one node's Storage.

Starts by loading (layers first: functions resolve their ``Layers`` against
them; URLs, resource policies and tags last: those of functions deleted meanwhile
are dropped); runs no
loop; closes nothing (the stores are the Storage's). Changes other nodes
commit reach each registry through the feed (namespaces ``metadata``,
``layers``, ``urls``, ``policies``, ``tags``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.config import Settings
from ember.control.arns import Arns
from ember.control.layers import LayerRegistry
from ember.control.policies import ResourcePolicies
from ember.control.registry import FunctionRegistry, Quotas
from ember.control.tags import FunctionTags
from ember.control.urls import FunctionUrls
from ember.lifecycle import Loop
from ember.storage.wiring import Storage


@dataclass(frozen=True)
class ControlPlane:
    names: Arns
    registry: FunctionRegistry
    layers: LayerRegistry
    urls: FunctionUrls
    policies: ResourcePolicies
    tags: FunctionTags

    @classmethod
    def build(cls, settings: Settings, storage: Storage) -> ControlPlane:
        names = Arns(settings.region, settings.account_id)
        code = storage.code_source
        layers = LayerRegistry(
            storage.metadata("layers"), storage.packages, names, code_source=code
        )
        tags = FunctionTags(storage.metadata("tags"), names)
        quotas = Quotas(settings.account_max_functions, settings.account_code_storage_bytes)
        registry = FunctionRegistry(
            storage.metadata("metadata"),
            storage.packages,
            names,
            layers=layers,
            quotas=quotas,
            code_source=code,
            tags=tags,
        )
        urls = FunctionUrls(storage.metadata("urls"), registry, names, settings.endpoint_url)
        policies = ResourcePolicies(storage.metadata("policies"), registry, names)
        # Embedded: the only writer. In a cluster another node may have just created it.
        urls.prune_orphans = policies.prune_orphans = storage.database is None
        tags.prune_orphans = storage.database is None
        storage.feed.watch("layers", layers.apply_remote)
        storage.feed.watch("metadata", registry.apply_remote)
        storage.feed.watch("urls", urls.apply_remote)
        storage.feed.watch("policies", policies.apply_remote)
        storage.feed.watch("tags", tags.apply_remote)
        return cls(names, registry, layers, urls, policies, tags)

    def exists(self, name: str) -> bool:
        """Whether the function ``name`` exists (what components drop orphans by)."""
        return self.registry.lookup(name) is not None

    def account_of(self, key: str) -> str | None:
        """The account owning the function (or layer) ``key``; None: the default account."""
        account = self.names.owner(key)[0]
        return None if account == self.names.account_id else account

    async def start(self) -> None:
        await self.layers.load()
        await self.registry.load()
        await self.urls.load()
        await self.policies.load()
        await self.tags.load()

    def loops(self) -> list[Loop]:
        return []

    def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None

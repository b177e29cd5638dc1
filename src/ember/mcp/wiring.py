"""MCP, wired: the tool catalog (namespace ``tools``), the MCP tokens (namespace
``tokens``) and the ``/mcp`` endpoint with its authentication.

Starts by loading the tokens, then the catalog (after the registry: tools of deleted functions
are dropped); runs the catalog's stored-delete loop and the list_changed
announcer; stops both; closes nothing (the store is the Storage's). A tool
exposed or hidden on another node reaches this node's catalog through the
feed, and so its MCP clients hear ``list_changed``; a token created or revoked
on another node arrives the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ember.auth.bearer import BearerAuth
from ember.auth.oauth import OAuthVerifier
from ember.auth.tokens import TokenStore
from ember.config import Settings
from ember.control.arns import Arns
from ember.lifecycle import Loop
from ember.mcp.catalog import Resolve, ToolCatalog
from ember.mcp.endpoint import Invoke, McpEndpoint
from ember.storage.wiring import Storage


@dataclass(frozen=True)
class Mcp:
    tools: ToolCatalog
    tokens: TokenStore
    endpoint: McpEndpoint
    exists: Callable[[str], bool]  # whether a function exists

    @classmethod
    def build(
        cls,
        settings: Settings,
        storage: Storage,
        resolve: Resolve,
        exists: Callable[[str], bool],
        invoke: Invoke,
    ) -> Mcp:
        """``resolve(function, qualifier)``: the registry's ``get``."""
        tools = ToolCatalog(storage.metadata("tools"), resolve)
        tools.prune_orphans = storage.database is None  # embedded: the only writer
        storage.feed.watch("tools", tools.apply_remote)
        tokens = TokenStore(storage.metadata("tokens"))
        storage.feed.watch("tokens", tokens.apply_remote)
        endpoint = McpEndpoint(
            tools,
            invoke,
            auth=authentication(settings, tokens),
            owner=Arns(settings.region, settings.account_id).owner,
            resource=settings.mcp_resource_url,
            issuer=settings.mcp_oauth_issuer,
        )
        return cls(tools, tokens, endpoint, exists)

    def function_changed(self, name: str, local: bool) -> None:
        """The registry's listener (see ``ToolCatalog.function_changed``)."""
        self.tools.function_changed(name, self.exists(name), local)

    async def start(self) -> None:
        await self.tokens.open()
        await self.tools.load(self.exists)

    def loops(self) -> list[Loop]:
        return [self.tools.run(), self.endpoint.feed.run()]

    def stop(self) -> None:
        self.tools.stop()
        self.endpoint.feed.stop()

    async def close(self) -> None:
        return None


def authentication(settings: Settings, tokens: TokenStore) -> BearerAuth:
    """How /mcp authenticates: required unless ``--auth none`` (and no ``--mcp-token``)."""
    issuer = settings.mcp_oauth_issuer
    oauth = (
        OAuthVerifier(issuer, settings.mcp_resource_url, settings.account_id)
        if issuer is not None
        else None
    )
    return BearerAuth(
        settings.account_id,
        required=settings.auth != "none",
        tokens=tokens,
        static_token=settings.mcp_token,
        oauth=oauth,
    )

"""MCP, wired: the tool catalog (namespace ``tools``) and the ``/mcp`` endpoint.

Starts by loading the catalog (after the registry: tools of deleted functions
are dropped); runs the catalog's stored-delete loop and the list_changed
announcer; stops both; closes nothing (the store is the Storage's). A tool
exposed or hidden on another node reaches this node's catalog through the
feed, and so its MCP clients hear ``list_changed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ember.config import Settings
from ember.lifecycle import Loop
from ember.mcp.catalog import Resolve, ToolCatalog
from ember.mcp.endpoint import Invoke, McpEndpoint
from ember.storage.wiring import Storage


@dataclass(frozen=True)
class Mcp:
    tools: ToolCatalog
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
        endpoint = McpEndpoint(
            tools,
            invoke,
            host=settings.host,
            token=settings.mcp_token,
            allowed_hosts=settings.mcp_allowed_hosts,
        )
        return cls(tools, endpoint, exists)

    def function_changed(self, name: str, local: bool) -> None:
        """The registry's listener (see ``ToolCatalog.function_changed``)."""
        self.tools.function_changed(name, self.exists(name), local)

    async def start(self) -> None:
        await self.tools.load(self.exists)

    def loops(self) -> list[Loop]:
        return [self.tools.run(), self.endpoint.feed.run()]

    def stop(self) -> None:
        self.tools.stop()
        self.endpoint.feed.stop()

    async def close(self) -> None:
        return None

"""What the controller needs of components other branches build (interfaces §4, §6).

The controller codes against these Protocols; ``Services.tools`` and
``Services.urls`` hold the real ToolCatalog and FunctionUrls once wired, and
None until then (the matching condition then reports MCPUnavailable or
URLsUnavailable).
"""

from __future__ import annotations

from typing import Any, Protocol


class ToolCatalogPort(Protocol):
    """The MCP tool catalog (``ember.mcp.catalog.ToolCatalog``)."""

    def get(self, function: str) -> Any | None:
        """The ToolSpec of ``function``, or None when it is not exposed."""
        ...

    async def expose(self, function: str, settings: dict[str, Any]) -> Any:
        """Expose (or re-expose with new settings) ``function`` as a tool; idempotent.

        ``settings`` is the body of ``PUT /_ember/functions/{name}/tool``
        (toolName, title, description, inputSchema, outputSchema, annotations).
        Raises ember.errors exceptions naming the bad field.
        """
        ...

    async def hide(self, function: str) -> None:
        """Stop exposing ``function``; no error when it is not exposed."""
        ...


class FunctionUrlsPort(Protocol):
    """Function URLs (``ember.control.urls.FunctionUrls``)."""

    def get(self, function: str, qualifier: str | None = None) -> Any | None:
        """The UrlConfig of ``function``, or None."""
        ...

    async def create(
        self, function: str, body: dict[str, Any], qualifier: str | None = None
    ) -> Any:
        """Create the URL config from a Lambda CreateFunctionUrlConfig body."""
        ...

    async def delete(self, function: str, qualifier: str | None = None) -> None:
        """Remove the URL config."""
        ...

"""What every ember MCP server shares: the server class and its change feed.

Imports only the MCP SDK (the stdio server runs inside the CLI).

Tool-list changes reach clients two ways, one per protocol era:
- 2026-07-28: a ``subscriptions/listen`` stream that asked for
  ``toolsListChanged`` gets ``notifications/tools/list_changed`` (through the
  SDK's subscription bus);
- 2025-11-25 and older: every handshake connection with a standalone channel
  (the session's GET stream over HTTP, the pipe over stdio) gets the same
  notification, since the capability ``tools.listChanged`` is declared.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

log = logging.getLogger("ember.mcp")


class ToolServer(Server[Any]):
    """The SDK's low-level server, declaring ``tools.listChanged`` to handshake clients.

    The SDK's session manager builds initialization options without
    NotificationOptions, which would declare ``listChanged: false``. The SDK's
    default OpenTelemetry middleware is dropped: ember exports no traces, and
    the span costs every call a few hundred microseconds.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.middleware = [
            m for m in self.middleware if type(m).__name__ != "OpenTelemetryMiddleware"
        ]

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection | None:
    """The connection a request arrived on.

    The SDK (2.3) offers no public way from a low-level handler's context to its
    connection; ``ServerSession`` keeps it as ``_connection``. This is the one
    private access, kept here, and it degrades to no legacy push if it moves.
    """
    connection = getattr(ctx.session, "_connection", None)
    return connection if isinstance(connection, Connection) else None


class ChangeFeed:
    """Fans "the tool list changed" out to every subscribed client, in both eras.

    ``announce`` is synchronous and cheap (callable from any listener); ``run``
    (owned by the process lifespan) does the sending, coalescing bursts.
    """

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)
        # Handshake-era connections that can be pushed to; each removes itself on close.
        self._legacy: dict[int, Connection] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self.sent = 0  # announcements delivered (statistics)

    def attach(self, server: Server[Any]) -> None:
        """Track the handshake connections of ``server`` as they make requests."""
        server.middleware.append(self._track)

    async def _track(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            connection = _connection_of(ctx)
            if connection is not None and connection.has_standalone_channel:
                self._remember(connection)
        return await call_next(ctx)

    def _remember(self, connection: Connection) -> None:
        key = id(connection)
        if key in self._legacy:
            return
        self._legacy[key] = connection
        connection.exit_stack.callback(self._legacy.pop, key, None)

    def legacy_connections(self) -> int:
        return len(self._legacy)

    def announce(self) -> None:
        """The tool list changed: tell every subscribed client soon."""
        self._wake.set()

    async def publish(self) -> None:
        """Send one list-changed notification to every subscriber now."""
        await self.bus.publish(ToolsListChanged())
        for connection in list(self._legacy.values()):
            # Best effort by contract: a closed stream drops it without raising.
            await connection.send_tool_list_changed()
        self.sent += 1

    async def run(self) -> None:
        """Deliver announcements until ``stop``; runs for the server's life."""
        while True:
            await self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self.publish()
            except Exception:
                log.exception("could not deliver a tools/list_changed notification")

    def stop(self) -> None:
        self._stopping = True
        self.listen.close()
        self._wake.set()

"""``ember mcp``: ember's tools over stdio, for hosts that launch MCP servers.

A bridge, not a second implementation: it is a client of a running ember's
``/mcp`` (the SDK's own client, over Streamable HTTP) and a server on
stdin/stdout (the SDK's low-level server), so validation, invocation, throttles
and results are exactly those of the HTTP endpoint. Tool-list changes heard on
a ``subscriptions/listen`` stream upstream are announced downstream in
whichever era the host speaks. Imports nothing of the server: the CLI runs it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from ember import __version__
from ember.mcp.protocol import ChangeFeed, ToolServer

log = logging.getLogger("ember.mcp.stdio")

RELISTEN_DELAY_SECONDS = 1.0
# A tool call may run for a function's whole timeout (900 s at most) plus Init.
READ_TIMEOUT_SECONDS = 960.0


class Bridge:
    """One stdio server in front of one upstream client."""

    def __init__(self, upstream: Client) -> None:
        self.upstream = upstream
        self.feed = ChangeFeed()
        self.server = ToolServer(
            "ember",
            version=__version__,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_subscriptions_listen=self.feed.listen,
        )
        self.feed.attach(self.server)

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        cursor = params.cursor if params is not None else None
        return await self.upstream.list_tools(cursor=cursor, cache_mode="bypass")

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        # An upstream protocol error (an unknown tool) is raised as the same MCPError.
        return await self.upstream.call_tool(params.name, params.arguments)

    async def follow_changes(self) -> None:
        """Announce downstream every tool-list change the upstream server reports."""
        while True:
            try:
                async with self.upstream.listen(tools_list_changed=True) as subscription:
                    async for _event in subscription:
                        self.feed.announce()
            except Exception as error:
                log.warning("tool-list changes from ember interrupted: %s; listening again", error)
            await anyio.sleep(RELISTEN_DELAY_SECONDS)

    async def serve(self) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.follow_changes)
            tasks.start_soon(self.feed.run)
            async with stdio_server() as (read, write):
                await self.server.run(read, write, self.server.create_initialization_options())
            self.feed.stop()
            tasks.cancel_scope.cancel()


async def bridge(url: str, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    timeout = httpx2.Timeout(30.0, read=READ_TIMEOUT_SECONDS)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        # No client-side cache: the list is ember's, and changes at any time.
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, cache=None) as upstream:
            await Bridge(upstream).serve()


def _leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first exception that is not itself a group."""
    first = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first


def serve_stdio(url: str, token: str | None) -> None:
    """Run the bridge until stdin closes. Logs (and only logs) go to stderr."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        anyio.run(bridge, url, token)
    except BaseExceptionGroup as group:
        # The SDK's task groups wrap a failed connection; say it in one line.
        unreachable = group.subgroup(httpx2.TransportError)
        if unreachable is not None:
            raise ConnectionError(
                f"cannot reach ember at {url}: is `ember serve` running? ({_leaf(unreachable)})"
            ) from None
        refused = group.subgroup(MCPError)
        if refused is not None:
            raise PermissionError(f"ember at {url} refused: {_leaf(refused)}") from None
        raise
    except httpx2.TransportError as error:
        raise ConnectionError(f"cannot reach ember at {url}: {error}") from None

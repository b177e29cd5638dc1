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
from mcp.shared.message import SessionMessage

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
            async with stdio_server() as (stdin, stdout), anyio.create_task_group() as relays:
                drain = Drain()
                inbound, read = anyio.create_memory_object_stream[SessionMessage | Exception]()
                write, outbound = anyio.create_memory_object_stream[SessionMessage]()
                relays.start_soon(drain.inbound, stdin, inbound)
                relays.start_soon(drain.outbound, outbound, stdout)
                await self.server.run(read, write, self.server.create_initialization_options())
            self.feed.stop()
            tasks.cancel_scope.cancel()


class Drain:
    """Stdin's end held back from the server until every request read is answered.

    The SDK's server ends the session when its read stream ends and answers the
    requests still running with "Connection closed"; a host that writes a request
    and closes stdin at once (a pipe, a one-shot script) must get its answer first.
    """

    def __init__(self) -> None:
        self.pending: set[types.RequestId] = set()  # requests read, not yet answered
        self.answered = anyio.Event()  # set when ``pending`` empties

    async def inbound(
        self,
        stdin: anyio.abc.ObjectReceiveStream[SessionMessage | Exception],
        server: anyio.abc.ObjectSendStream[SessionMessage | Exception],
    ) -> None:
        async with server:
            async for item in stdin:
                if isinstance(item, SessionMessage):
                    self._read(item.message)
                await server.send(item)
            self.answered = anyio.Event()
            if self.pending:
                await self.answered.wait()

    def _read(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest):
            self.pending.add(message.id)
        elif (
            isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/cancelled"
            and isinstance(message.params, dict)
        ):
            # A cancelled request may go unanswered: nothing is owed for it.
            self.pending.discard(message.params.get("requestId"))
            if not self.pending:
                self.answered.set()

    async def outbound(
        self,
        server: anyio.abc.ObjectReceiveStream[SessionMessage],
        stdout: anyio.abc.ObjectSendStream[SessionMessage],
    ) -> None:
        async with stdout:
            async for item in server:
                await stdout.send(item)
                message = item.message
                if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
                    self.pending.discard(message.id)
                    if not self.pending:
                        self.answered.set()


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

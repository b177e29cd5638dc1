"""The MCP server of ``ember serve``: Streamable HTTP at ``/mcp``.

Built on the SDK's low-level ``Server`` so that ``tools/list`` is read from
the catalog on every call (ordered by tool name, paged with opaque cursors,
``ttlMs: 0`` so clients never serve a stale list) and ``tools/call`` goes
through the invocation service, with the same throttles as any invoke.

Both protocol eras are served on the one endpoint: 2026-07-28 requests are
stateless by the protocol; handshake-era clients (2025-11-25 and older) get a
session, because only a session has the GET stream that legacy
``notifications/tools/list_changed`` travels on.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import jsonschema
import mcp_types as types
import orjson
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from ember import __version__
from ember.errors import EmberError, TooManyRequests
from ember.invoke.service import InvokeCommand, InvokeResult
from ember.mcp import results
from ember.mcp.catalog import ToolCatalog, ToolSpec
from ember.mcp.protocol import ChangeFeed, ToolServer

log = logging.getLogger("ember.mcp")

Invoke = Callable[[InvokeCommand], Awaitable[InvokeResult]]
Scope = dict[str, Any]
PAGE_SIZE = 50
INSTRUCTIONS = (
    "Each tool runs one serverless function on ember; a failed call comes back as a "
    "result with isError set and the function's errorType and errorMessage."
)


def render(spec: ToolSpec) -> types.Tool:
    """The tool as MCP clients see it."""
    annotations = (
        types.ToolAnnotations.model_validate(spec.annotations) if spec.annotations else None
    )
    return types.Tool(
        name=spec.tool_name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        annotations=annotations,
    )


def transport_security(host: str, allowed: tuple[str, ...] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host and Origin a browser page may not forge.

    Allowed: the loopback names on any port, the address ember listens on, and
    the operator's ``allowed`` host names (on any port, over http or https).
    """
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    names = [] if host in ("", "0.0.0.0", "::", "127.0.0.1", "localhost", "::1") else [host]
    for name in (*names, *allowed):
        name = f"[{name}]" if ":" in name else name
        hosts += [f"{name}:*", name]
        origins += [f"http://{name}:*", f"https://{name}:*", f"http://{name}", f"https://{name}"]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def _caller(ctx: ServerRequestContext[Any, Any]) -> str:
    """The caller's address, the key of per-caller rate limits (as for the REST API)."""
    client = getattr(ctx.request, "client", None)
    return str(client.host) if client is not None else "mcp"


class McpEndpoint:
    """The ``/mcp`` ASGI application and its server; ``run`` must wrap the serving."""

    def __init__(
        self,
        catalog: ToolCatalog,
        invoke: Invoke,
        *,
        host: str = "127.0.0.1",
        token: str | None = None,
        allowed_hosts: tuple[str, ...] = (),
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._catalog = catalog
        self._invoke = invoke
        self._token = token.encode() if token else None
        self._page_size = page_size
        # Compiled argument checkers by tool name, rebuilt when the spec is replaced.
        self._validators: dict[str, tuple[ToolSpec, Any]] = {}
        self.feed = ChangeFeed()
        self.server = ToolServer(
            "ember",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_subscriptions_listen=self.feed.listen,
            get_tool_input_schema=self._input_schema,
        )
        self.feed.attach(self.server)
        catalog.subscribe(self.feed.announce)
        catalog.subscribe(self._validators.clear)
        self._sessions = StreamableHTTPSessionManager(
            app=self.server, security_settings=transport_security(host, allowed_hosts)
        )

    # --- MCP handlers --------------------------------------------------------

    def _input_schema(self, tool_name: str) -> dict[str, Any] | None:
        spec = self._catalog.by_tool_name(tool_name)
        return spec.input_schema if spec is not None else None

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        cursor = params.cursor if params is not None else None
        after = "" if cursor is None else results.decode_cursor(cursor)
        if after is None:
            raise MCPError(types.INVALID_PARAMS, f"Invalid cursor: {cursor}")
        specs = [spec for spec in self._catalog.list() if spec.tool_name > after]
        page = specs[: self._page_size]
        more = len(specs) > len(page)
        return types.ListToolsResult(
            tools=[render(spec) for spec in page],
            next_cursor=results.encode_cursor(page[-1].tool_name) if more else None,
            # The list changes whenever a function is exposed, changed or deleted.
            ttl_ms=0,
            cache_scope="private",
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        spec = self._catalog.by_tool_name(params.name)
        if spec is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        arguments = params.arguments or {}
        problem = results.argument_errors(self._validator(spec), arguments)
        if problem is not None:
            return results.invalid_arguments(problem)
        command = InvokeCommand(
            function=spec.function,
            payload=orjson.dumps(arguments),
            qualifier=spec.qualifier,
            caller=_caller(ctx),
        )
        try:
            outcome = await self._invoke(command)
        except TooManyRequests as error:
            return results.throttled(error.message, error.reason, error.retry_after_seconds)
        except EmberError as error:
            return results.refused(error.code, error.message)
        result = results.function_result(outcome.body, outcome.function_error is not None)
        return self._checked(spec, result)

    def _validator(self, spec: ToolSpec) -> Any:
        cached = self._validators.get(spec.tool_name)
        if cached is None or cached[0] is not spec:
            cached = (spec, results.validator(spec.input_schema))
            self._validators[spec.tool_name] = cached
        return cached[1]

    def _checked(self, spec: ToolSpec, result: types.CallToolResult) -> types.CallToolResult:
        """A declared outputSchema is a promise: a result that breaks it is an error."""
        if spec.output_schema is None or result.is_error:
            return result
        try:
            jsonschema.validate(result.structured_content, spec.output_schema)
        except jsonschema.ValidationError as error:
            return results.error_result(
                f"The function's result does not match the tool's outputSchema: {error.message}",
                {"errorType": "InvalidOutput"},
            )
        return result

    # --- HTTP ------------------------------------------------------------------

    def _refusal(self, scope: Scope) -> bytes | None:
        """None when the request may pass; else its WWW-Authenticate challenge (RFC 6750)."""
        if self._token is None:
            return None
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credential = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(
                    credential.strip(), self._token
                ):
                    return None
                return b'Bearer realm="ember", error="invalid_token"'
        return b'Bearer realm="ember"'

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        challenge = self._refusal(scope)
        if challenge is not None:
            await _unauthorized(send, challenge)
            return
        await self._sessions.handle_request(scope, receive, send)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Serve MCP sessions for as long as the context lasts (enter it once)."""
        async with self._sessions.run():
            yield

    def statistics(self) -> dict[str, int]:
        return {
            "tools": len(self._catalog),
            "legacySessions": self.feed.legacy_connections(),
            "listChangedSent": self.feed.sent,
        }


async def _unauthorized(send: Any, challenge: bytes) -> None:
    body = orjson.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "Unauthorized"}}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", challenge),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

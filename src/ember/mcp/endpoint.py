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

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import mcp_types as types
import orjson
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from ember import __version__
from ember.auth.bearer import BearerAuth, Grant
from ember.errors import AuthError, EmberError, TooManyRequests
from ember.invoke.service import InvokeCommand, InvokeResult
from ember.mcp import results
from ember.mcp.catalog import ToolCatalog, ToolSpec
from ember.mcp.protocol import ChangeFeed, ToolServer

log = logging.getLogger("ember.mcp")

Invoke = Callable[[InvokeCommand], Awaitable[InvokeResult]]
Owner = Callable[[str], tuple[str, str]]  # function key -> (account, name): Arns.owner
Scope = MutableMapping[str, Any]
# Where __call__ leaves the request's Grant for the MCP handlers (ctx.request.scope).
GRANT_SCOPE_KEY = "ember.mcp.grant"
# RFC 9728: the metadata of the resource /mcp, at the root and path-suffixed (section 3.1).
METADATA_PATH = "/.well-known/oauth-protected-resource"
METADATA_PATHS = (METADATA_PATH, METADATA_PATH + "/mcp")
# The same grant for the SDK's pre-dispatch hooks, which see no request (one ASGI call
# runs in one context, so concurrent requests never see each other's).
_REQUEST_GRANT: ContextVar[Grant | None] = ContextVar("ember_mcp_grant", default=None)
PAGE_SIZE = 50
INSTRUCTIONS = (
    "Each tool runs one serverless function on ember; a failed call comes back as a "
    "result with isError set and the function's errorType and errorMessage."
)


def render(spec: ToolSpec, name: str) -> types.Tool:
    """The tool as MCP clients see it, called ``name``."""
    annotations = (
        types.ToolAnnotations.model_validate(spec.annotations) if spec.annotations else None
    )
    return types.Tool(
        name=name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        annotations=annotations,
    )


# DNS-rebinding protection (Host and Origin) is the Frontend's, for /mcp as for every
# route (``ember.auth.hosts``): one list of names, one answer; the SDK's own is off.
_NO_SDK_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


def resource_metadata(resource: str, issuer: str | None) -> dict[str, Any]:
    """The RFC 9728 document of the MCP resource ``resource`` (its URL)."""
    document: dict[str, Any] = {
        "resource": resource,
        "bearer_methods_supported": ["header"],
        "resource_name": "ember",
    }
    if issuer is not None:
        document["authorization_servers"] = [issuer]
    return document


def metadata_url(resource: str) -> str:
    """Where RFC 9728 section 3.1 puts the metadata of ``resource``: the well-known
    path between its origin and its path (``/.well-known/oauth-protected-resource/mcp``)."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path.rstrip('/')}"


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
        auth: BearerAuth,
        owner: Owner,
        resource: str,
        issuer: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._catalog = catalog
        self._invoke = invoke
        self._auth = auth
        self._owner = owner
        self._resource_metadata = resource_metadata(resource, issuer)
        self._metadata_url = metadata_url(resource)
        self._page_size = page_size
        # Compiled argument checkers by tool name, rebuilt when the spec is replaced.
        self._validators: dict[str, tuple[ToolSpec, Any]] = {}
        # Each account's tools by the name its clients see, rebuilt on any change.
        self._views: dict[str, dict[str, ToolSpec]] = {}
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
        catalog.subscribe(self._views.clear)
        self._sessions = StreamableHTTPSessionManager(
            app=self.server, security_settings=_NO_SDK_HOST_CHECK
        )

    # --- MCP handlers --------------------------------------------------------

    def _input_schema(self, tool_name: str) -> dict[str, Any] | None:
        """The schema the SDK checks ``Mcp-Param-*`` headers against, before dispatch
        (no request is passed to it: the grant comes from the context ``__call__`` set).
        None skips that check; it never stands in for the call's own checks."""
        grant = _REQUEST_GRANT.get()
        if grant is None or not grant.allows(tool_name):
            return None
        spec = self.view(grant.account_id).get(tool_name)
        return spec.input_schema if spec is not None else None

    def view(self, account: str) -> dict[str, ToolSpec]:
        """``account``'s tools by the name its clients see, ordered by that name.

        A tool of another account's function is not there. A tool named after
        its function's key (``ACCOUNT.name``) is shown by the bare name.
        """
        view = self._views.get(account)
        if view is None:
            prefix = f"{account}."
            mine = {
                spec.tool_name.removeprefix(prefix): spec
                for spec in self._catalog.list()
                if self._owner(spec.function)[0] == account
            }
            view = self._views[account] = {name: mine[name] for name in sorted(mine)}
        return view

    def _grant(self, ctx: ServerRequestContext[Any, Any]) -> Grant:
        """The request's grant: ``__call__`` leaves one on every HTTP request; an
        in-process client (no HTTP request) has the grant of no credentials."""
        if ctx.request is None:
            grant: object = self._auth.anonymous
        else:
            grant = ctx.request.scope.get(GRANT_SCOPE_KEY)
        if not isinstance(grant, Grant):
            raise MCPError(types.INVALID_REQUEST, "Unauthorized")
        return grant

    def _visible(self, grant: Grant) -> list[tuple[str, ToolSpec]]:
        return [
            (name, spec) for name, spec in self.view(grant.account_id).items() if grant.allows(name)
        ]

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        cursor = params.cursor if params is not None else None
        after = "" if cursor is None else results.decode_cursor(cursor)
        if after is None:
            raise MCPError(types.INVALID_PARAMS, f"Invalid cursor: {cursor}")
        tools = [(name, spec) for name, spec in self._visible(self._grant(ctx)) if name > after]
        page = tools[: self._page_size]
        more = len(tools) > len(page)
        return types.ListToolsResult(
            tools=[render(spec, name) for name, spec in page],
            next_cursor=results.encode_cursor(page[-1][0]) if more else None,
            # The list changes whenever a function is exposed, changed or deleted.
            ttl_ms=0,
            cache_scope="private",
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        grant = self._grant(ctx)
        spec = self.view(grant.account_id).get(params.name) if grant.allows(params.name) else None
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
            origin="mcp",
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

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"].startswith(METADATA_PATH):
            await self._metadata(scope, send)
            return
        try:
            grant = await self._auth.authenticate(_authorization(scope))
        except AuthError as refused:
            await _unauthorized(send, self._challenge(scope), refused.message)
            return
        scope[GRANT_SCOPE_KEY] = grant
        _REQUEST_GRANT.set(grant)
        await self._sessions.handle_request(scope, receive, send)

    def _challenge(self, scope: Scope) -> bytes:
        """RFC 9728 section 5.1: where to find the authorization server (+ RFC 6750's error)."""
        challenge = f'Bearer realm="ember", resource_metadata="{self._metadata_url}"'
        if _authorization(scope) is not None:
            challenge += ', error="invalid_token"'
        return challenge.encode()

    async def _metadata(self, scope: Scope, send: Any) -> None:
        """RFC 9728 Protected Resource Metadata: unauthenticated, GET only."""
        if scope["path"] not in METADATA_PATHS:
            await _respond(send, 404, {"error": "not_found"})
        elif scope.get("method") not in ("GET", "HEAD"):
            await _respond(send, 405, {"error": "method_not_allowed"}, [(b"allow", b"GET")])
        else:
            await _respond(send, 200, self._resource_metadata)

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


def _authorization(scope: Scope) -> bytes | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            return bytes(value)
    return None


async def _unauthorized(send: Any, challenge: bytes, message: str) -> None:
    # "Unauthorized" is what clients show; the reason rides along in data.
    error = {"code": -32001, "message": "Unauthorized", "data": {"reason": message}}
    body = {"jsonrpc": "2.0", "id": None, "error": error}
    await _respond(send, 401, body, [(b"www-authenticate", challenge)])


async def _respond(
    send: Any, status: int, body: object, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(body)})

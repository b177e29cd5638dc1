"""The /mcp endpoint's authentication and per-account tool views, over its real ASGI app.

Raw 2026-07-28 JSON-RPC posts through httpx2's ASGI transport: every request
carries its own bearer token, so one endpoint serves several accounts at once.
Function keys of another account are ``ACCOUNT.name`` (``Arns.key``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import orjson

from ember.auth.bearer import BearerAuth
from ember.auth.tokens import TokenStore
from ember.control.arns import Arns
from ember.invoke.service import InvokeCommand, InvokeResult
from ember.mcp.catalog import ToolCatalog
from ember.mcp.endpoint import McpEndpoint
from ember.storage.memory import MemoryMetadataStore

DEFAULT = "000000000000"
OTHER = "123456789012"
RESOURCE = "http://127.0.0.1:9900/mcp"
SCHEMA = {"type": "object"}
ARNS = Arns("us-east-1", DEFAULT)


class Rig:
    def __init__(self, endpoint: McpEndpoint, catalog: ToolCatalog, tokens: TokenStore) -> None:
        self.endpoint = endpoint
        self.catalog = catalog
        self.tokens = tokens
        self.invoked: list[str] = []
        self.http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=endpoint), base_url="http://127.0.0.1:9900"
        )

    async def expose(self, account: str, name: str, **settings: Any) -> None:
        await self.catalog.expose(
            ARNS.key(account, name), {"inputSchema": SCHEMA, "description": name, **settings}
        )

    async def rpc(self, method: str, params: dict[str, Any], token: str | None) -> httpx2.Response:
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": method,
        }
        if method == "tools/call":
            headers["mcp-name"] = params["name"]
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
        return await self.http.post("/mcp", content=orjson.dumps(body), headers=headers)

    async def names(self, token: str | None) -> list[str]:
        response = await self.rpc("tools/list", {}, token)
        assert response.status_code == 200, response.text
        return [tool["name"] for tool in response.json()["result"]["tools"]]

    async def call(self, name: str, token: str | None) -> dict[str, Any]:
        response = await self.rpc("tools/call", {"name": name, "arguments": {}}, token)
        assert response.status_code in (200, 400, 404), response.text
        body: dict[str, Any] = response.json()
        return body


def scenario(body: Callable[[Rig], Awaitable[None]], *, required: bool = True) -> None:
    async def run() -> None:
        tokens = TokenStore(MemoryMetadataStore())
        await tokens.open()
        catalog = ToolCatalog(MemoryMetadataStore(), lambda name, qualifier: name)
        invoked: list[str] = []

        async def invoke(command: InvokeCommand) -> InvokeResult:
            invoked.append(command.function)
            return InvokeResult(200, b'{"ok": true}', "rid", "$LATEST", None)

        endpoint = McpEndpoint(
            catalog,
            invoke,
            auth=BearerAuth(DEFAULT, required=required, tokens=tokens, static_token=None),
            owner=ARNS.owner,
            resource=RESOURCE,
            issuer="https://idp.example",
        )
        rig = Rig(endpoint, catalog, tokens)
        rig.invoked = invoked
        async with endpoint.run(), rig.http:
            await body(rig)

    asyncio.run(run())


def test_each_token_sees_only_its_accounts_tools_by_their_bare_names() -> None:
    async def body(rig: Rig) -> None:
        await rig.expose(DEFAULT, "add")
        await rig.expose(DEFAULT, "mul")
        await rig.expose(OTHER, "add")
        await rig.expose(OTHER, "div", toolName="divide")
        _, mine = await rig.tokens.create(DEFAULT)
        _, theirs = await rig.tokens.create(OTHER)
        _, narrow = await rig.tokens.create(DEFAULT, ("mul", "nonexistent"))
        assert await rig.names(mine) == ["add", "mul"]
        assert await rig.names(theirs) == ["add", "divide"]
        assert await rig.names(narrow) == ["mul"]

        assert "result" in await rig.call("add", theirs)
        assert rig.invoked == [f"{OTHER}.add"]
        assert "result" in await rig.call("add", mine)
        assert rig.invoked[-1] == "add"
        # Another account's tool, or one outside the allow-list, is an unknown tool.
        for name, token in (("divide", mine), ("mul", theirs), ("add", narrow)):
            refused = await rig.call(name, token)
            assert refused["error"]["message"] == f"Unknown tool: {name}", refused
        assert len(rig.invoked) == 2

        # A revoked token is refused at once; a changed catalog shows at once.
        entry = rig.tokens.tokens(OTHER)[0]
        await rig.tokens.delete(entry.token_id)
        assert (await rig.rpc("tools/list", {}, theirs)).status_code == 401
        await rig.catalog.hide("mul")
        assert await rig.names(mine) == ["add"]

    scenario(body)


def test_refusals_carry_the_resource_metadata_challenge() -> None:
    async def body(rig: Rig) -> None:
        missing = await rig.rpc("tools/list", {}, None)
        assert missing.status_code == 401
        challenge = missing.headers["www-authenticate"]
        url = "http://127.0.0.1:9900/.well-known/oauth-protected-resource/mcp"
        assert challenge == f'Bearer realm="ember", resource_metadata="{url}"'
        wrong = await rig.rpc("tools/list", {}, "ember_mcp_nope")
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].endswith(', error="invalid_token"')

        for path in (
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
        ):
            document = await rig.http.get(path)
            assert document.status_code == 200
            assert document.json() == {
                "resource": RESOURCE,
                "authorization_servers": ["https://idp.example"],
                "bearer_methods_supported": ["header"],
                "resource_name": "ember",
            }
        assert (await rig.http.post("/.well-known/oauth-protected-resource")).status_code == 405
        assert (await rig.http.get("/.well-known/oauth-protected-resource/x")).status_code == 404

    scenario(body)


def test_without_auth_requests_act_for_the_default_account() -> None:
    async def body(rig: Rig) -> None:
        await rig.expose(DEFAULT, "add")
        await rig.expose(OTHER, "sub")
        assert await rig.names(None) == ["add"]
        _, theirs = await rig.tokens.create(OTHER)
        assert await rig.names(theirs) == ["sub"]

    scenario(body, required=False)


def test_mcp_param_headers_are_checked_against_the_callers_own_tool() -> None:
    """Two accounts' tools share the name ``geo``; only the second mirrors ``region``
    into an ``Mcp-Param-Region`` header. Each caller's header is checked against its own."""
    mirrored = {
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    }

    async def body(rig: Rig) -> None:
        await rig.expose(DEFAULT, "geo")
        await rig.expose(OTHER, "geo", inputSchema=mirrored)
        _, mine = await rig.tokens.create(DEFAULT)
        _, theirs = await rig.tokens.create(OTHER)

        async def post(token: str, header: str) -> httpx2.Response:
            rig.http.headers["mcp-param-region"] = header
            try:
                return await rig.rpc(
                    "tools/call", {"name": "geo", "arguments": {"region": "eu"}}, token
                )
            finally:
                del rig.http.headers["mcp-param-region"]

        mismatch = await post(theirs, "us")
        assert mismatch.status_code == 400, mismatch.text
        assert mismatch.json()["error"]["code"] == -32020
        assert (await post(theirs, "eu")).status_code == 200
        # The default account's geo declares no header: nothing to mismatch.
        assert (await post(mine, "us")).status_code == 200
        assert rig.invoked == [f"{OTHER}.geo", "geo"]

    scenario(body)

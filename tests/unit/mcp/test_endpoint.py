"""The MCP endpoint's handlers, through the SDK's in-process client.

The invocation service is the one part replaced: an ``invoke`` coroutine that
answers from a table, so every outcome of an invoke can be produced on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
import orjson
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from ember.auth.bearer import BearerAuth
from ember.control.arns import Arns
from ember.errors import ResourceNotFound, TooManyRequests
from ember.invoke.service import InvokeCommand, InvokeResult
from ember.mcp.catalog import ToolCatalog
from ember.mcp.endpoint import McpEndpoint
from ember.storage.memory import MemoryMetadataStore

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
ACCOUNT = "000000000000"
Outcome = Callable[[InvokeCommand], InvokeResult]


def answer(body: Any, function_error: str | None = None) -> Outcome:
    return lambda command: InvokeResult(200, orjson.dumps(body), "rid", "$LATEST", function_error)


def refuse(error: Exception) -> Outcome:
    def raise_it(command: InvokeCommand) -> InvokeResult:
        raise error

    return raise_it


class Functions:
    """Stands in for the invocation service: each function answers from ``outcomes``."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}
        self.commands: list[InvokeCommand] = []

    def resolve(self, name: str, qualifier: str | None) -> object:
        if name not in self.outcomes:
            raise ResourceNotFound(name)
        return name

    async def invoke(self, command: InvokeCommand) -> InvokeResult:
        self.commands.append(command)
        return self.outcomes[command.function](command)


def scenario(
    body: Callable[[Client, ToolCatalog, Functions], Awaitable[None]],
    page_size: int = 50,
    mode: str = "auto",
) -> None:
    async def run() -> None:
        functions = Functions()
        catalog = ToolCatalog(MemoryMetadataStore(), functions.resolve)
        endpoint = McpEndpoint(
            catalog,
            functions.invoke,
            auth=BearerAuth(ACCOUNT, required=False),
            owner=Arns("us-east-1", ACCOUNT).owner,
            resource="http://127.0.0.1:9900/mcp",
            page_size=page_size,
        )
        async with Client(endpoint.server, mode=mode, cache=None) as client:
            await body(client, catalog, functions)

    asyncio.run(run())


async def expose(
    catalog: ToolCatalog, functions: Functions, name: str, outcome: Outcome, **settings: Any
) -> None:
    functions.outcomes[name] = outcome
    await catalog.expose(name, {"description": f"{name} tool", "inputSchema": SCHEMA, **settings})


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_pages_are_ordered_and_cursors_opaque(mode: str) -> None:
    async def body(client: Client, catalog: ToolCatalog, functions: Functions) -> None:
        for name in ("e", "c", "a", "d", "b"):
            await expose(catalog, functions, name, answer({}))
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await client.list_tools(cursor=cursor)
            seen += [tool.name for tool in page.tools]
            pages += 1
            if page.next_cursor is None:
                break
            assert page.next_cursor not in seen  # opaque, not a tool name
            cursor = page.next_cursor
        assert seen == ["a", "b", "c", "d", "e"]
        assert pages == 3
        with pytest.raises(MCPError) as error:
            await client.list_tools(cursor="not-a-cursor!")
        assert error.value.error.code == types.INVALID_PARAMS

    scenario(body, page_size=2, mode=mode)


def test_tool_rendering_and_freshness_hints() -> None:
    async def body(client: Client, catalog: ToolCatalog, functions: Functions) -> None:
        await expose(
            catalog,
            functions,
            "adder",
            answer({"sum": 1}),
            title="Adder",
            toolName="add",
            outputSchema={"type": "object", "properties": {"sum": {"type": "integer"}}},
            annotations={"readOnlyHint": True, "openWorldHint": False},
        )
        page = await client.list_tools()
        assert page.ttl_ms == 0
        [tool] = page.tools
        dumped = tool.model_dump(by_alias=True, exclude_none=True)
        assert dumped == {
            "name": "add",
            "title": "Adder",
            "description": "adder tool",
            "inputSchema": SCHEMA,
            "outputSchema": {"type": "object", "properties": {"sum": {"type": "integer"}}},
            "annotations": {"readOnlyHint": True, "openWorldHint": False},
        }

    scenario(body)


def test_results_of_every_kind() -> None:
    async def body(client: Client, catalog: ToolCatalog, functions: Functions) -> None:
        await expose(catalog, functions, "obj", answer({"sum": 3}))
        await expose(catalog, functions, "text", answer("hello"))
        await expose(catalog, functions, "list", answer([1, 2]))
        await expose(
            catalog,
            functions,
            "fails",
            answer({"errorType": "ValueError", "errorMessage": "bad a"}, "Unhandled"),
        )
        await expose(
            catalog,
            functions,
            "throttled",
            refuse(TooManyRequests("Rate exceeded.", "CallerRateLimitExceeded", 2.2)),
        )
        await expose(catalog, functions, "gone", refuse(ResourceNotFound("Function not found")))

        result = await client.call_tool("obj", {"a": 1})
        assert result.structured_content == {"sum": 3}
        assert orjson.loads(result.content[0].text) == {"sum": 3}  # type: ignore[union-attr]
        assert not result.is_error
        result = await client.call_tool("text", {"a": 1})
        assert result.content[0].text == "hello"  # type: ignore[union-attr]
        assert result.structured_content is None
        result = await client.call_tool("list", {"a": 1})
        assert result.content[0].text == "[1,2]"  # type: ignore[union-attr]

        result = await client.call_tool("fails", {"a": 1})
        assert result.is_error
        assert "ValueError: bad a" in result.content[0].text  # type: ignore[union-attr]
        assert result.meta is not None and result.meta["errorType"] == "ValueError"

        result = await client.call_tool("throttled", {"a": 1})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "CallerRateLimitExceeded" in text and "Retry after 3 s" in text
        assert result.meta is not None and result.meta["retryAfterSeconds"] == 3

        result = await client.call_tool("gone", {"a": 1})
        assert result.is_error
        assert "ResourceNotFoundException" in result.content[0].text  # type: ignore[union-attr]

    scenario(body)


def test_arguments_are_checked_before_any_invocation() -> None:
    async def body(client: Client, catalog: ToolCatalog, functions: Functions) -> None:
        await expose(catalog, functions, "adder", answer({"sum": 3}), qualifier="live")
        result = await client.call_tool("adder", {"a": "one"})
        assert result.is_error
        assert "arguments.a: 'one' is not of type 'integer'" in result.content[0].text  # type: ignore[union-attr]
        result = await client.call_tool("adder", {})
        assert "'a' is a required property" in result.content[0].text  # type: ignore[union-attr]
        assert functions.commands == []
        await client.call_tool("adder", {"a": 2})
        [command] = functions.commands
        assert (command.function, command.qualifier, orjson.loads(command.payload)) == (
            "adder",
            "live",
            {"a": 2},
        )

    scenario(body)


def test_unknown_tool_is_a_protocol_error() -> None:
    async def body(client: Client, catalog: ToolCatalog, functions: Functions) -> None:
        with pytest.raises(MCPError) as error:
            await client.call_tool("nope", {})
        assert error.value.error.code == types.INVALID_PARAMS

    scenario(body)


def test_a_result_breaking_the_output_schema_is_an_error() -> None:
    async def body(client: Client, catalog: ToolCatalog, functions: Functions) -> None:
        schema = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}
        await expose(catalog, functions, "liar", answer({"total": 3}), outputSchema=schema)
        result = await client.call_tool("liar", {"a": 1})
        assert result.is_error
        assert "outputSchema" in result.content[0].text  # type: ignore[union-attr]

    scenario(body)

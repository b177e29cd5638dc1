"""End-to-end MCP: the SDK's own client against a real `ember serve`.

Over Streamable HTTP in both protocol eras (2026-07-28, stateless; 2025-11-25,
the initialize handshake) and over stdio through `ember mcp`: list, call,
argument validation, function errors and timeouts, throttles, list-changed
after a deploy, the bearer token, DNS-rebinding protection, persistence, and
a slow tool that does not hold up other clients.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import EMBER, Server, make_zip, sandboxes_of, server_at, wait_until

Deploy = Callable[..., dict[str, Any]]
Spawn = Callable[..., Server]

APP = """
import time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError("asked to fail: " + event["fail"])
    return {"sum": event.get("a", 0) + event.get("b", 0), "version": VERSION}
"""
SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"type": "integer"},
        "b": {"type": "integer"},
        "fail": {"type": "string"},
        "sleep": {"type": "number"},
    },
    "required": ["a", "b"],
    "additionalProperties": False,
}
# "auto" probes server/discover and settles on 2026-07-28 (asserted); "legacy" is the
# initialize handshake at 2025-11-25.
ERAS = ["auto", "legacy"]


def source(version: int = 1) -> str:
    return f"VERSION = {version}\n{APP}"


def expose(server: Server, function: str, **settings: Any) -> dict[str, Any]:
    body = {"description": "Adds a and b.", "inputSchema": SCHEMA, **settings}
    response = server.http.put(f"/_ember/functions/{function}/tool", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def run(body: Callable[[], Awaitable[None]]) -> None:
    anyio.run(body)


_TOKENS: dict[str, str] = {}


def mcp_token(url: str) -> str:
    """An MCP token of the default account on the server at ``url`` (one per server):
    /mcp requires one, as servers run with authentication on."""
    if url not in _TOKENS:
        response = server_at(url).http.post("/_ember/tokens", json={}, timeout=10)
        assert response.status_code == 201, response.text
        _TOKENS[url] = response.json()["Token"]
    return _TOKENS[url]


@asynccontextmanager
async def client(target: Any, mode: str, **options: Any) -> AsyncIterator[Client]:
    """The SDK's client of ``target``; an /mcp URL is given the server's token."""
    if not isinstance(target, str):
        async with Client(target, mode=mode, cache=None, **options) as session:
            yield session
        return
    headers = {"authorization": f"Bearer {mcp_token(target.removesuffix('/mcp'))}"}
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        Client(
            streamable_http_client(target, http_client=http), mode=mode, cache=None, **options
        ) as session,
    ):
        yield session


def stdio(url: str, *args: str) -> StdioServerParameters:
    token = [] if "--token" in args else ["--token", mcp_token(url)]
    return StdioServerParameters(
        command=EMBER,
        args=["mcp", "--endpoint", url, *token, *args],
        env={"PATH": os.environ["PATH"]},
    )


def text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def all_tools(session: Client) -> dict[str, types.Tool]:
    tools: dict[str, types.Tool] = {}
    cursor = None
    while True:
        page = await session.list_tools(cursor=cursor)
        tools.update({tool.name: tool for tool in page.tools})
        cursor = page.next_cursor
        if cursor is None:
            return tools


async def check_list_call_and_errors(session: Client, tool: str, function: str) -> None:
    """What every transport and era must do the same way."""
    listed = (await all_tools(session))[tool]
    assert listed.input_schema == SCHEMA
    assert listed.description == "Adds a and b."

    result = await session.call_tool(tool, {"a": 2, "b": 40})
    assert not result.is_error
    assert result.structured_content == {"sum": 42, "version": 1}
    assert json.loads(text(result)) == {"sum": 42, "version": 1}

    result = await session.call_tool(tool, {"a": "two", "b": 40})
    assert result.is_error
    assert "arguments.a: 'two' is not of type 'integer'" in text(result)

    result = await session.call_tool(tool, {"a": 1, "b": 1, "fail": "on purpose"})
    assert result.is_error
    assert "ValueError: asked to fail: on purpose" in text(result)

    with pytest.raises(MCPError) as error:
        await session.call_tool(f"{tool}-missing", {})
    assert error.value.error.code == types.INVALID_PARAMS


@pytest.mark.parametrize("mode", ERAS)
def test_list_call_and_errors_over_http(server: Server, deploy: Deploy, mode: str) -> None:
    name = deploy(source())["FunctionName"]
    expose(server, name, toolName=f"t.{name}", annotations={"readOnlyHint": True})

    async def body() -> None:
        async with client(server.url + "/mcp", mode) as session:
            expected = "2026-07-28" if mode != "legacy" else "2025-11-25"
            assert session.protocol_version == expected
            assert session.server_capabilities.tools is not None
            assert session.server_capabilities.tools.list_changed
            await check_list_call_and_errors(session, f"t.{name}", name)
            tool = (await all_tools(session))[f"t.{name}"]
            assert tool.annotations is not None and tool.annotations.read_only_hint

    run(body)


def test_validation_errors_start_no_sandbox(server: Server, deploy: Deploy) -> None:
    name = deploy(source())["FunctionName"]
    expose(server, name)

    async def body() -> None:
        async with client(server.url + "/mcp", "auto") as session:
            result = await session.call_tool(name, {"a": 1})
            assert result.is_error
            assert "'b' is a required property" in text(result)
            result = await session.call_tool(name, {"a": 1, "b": 2, "c": 3})
            assert "Additional properties are not allowed" in text(result)

    run(body)
    assert sandboxes_of(server, name) == []


def test_timeouts_and_throttles_are_tool_errors(server: Server, deploy: Deploy) -> None:
    name = deploy(source(), Timeout=1)["FunctionName"]
    expose(server, name)
    limit = {"scope": "function", "algorithm": "fixed-window", "rate": "2/m"}
    response = server.http.put(f"/_ember/functions/{name}/limits", json=limit, timeout=10)
    assert response.status_code == 200, response.text

    async def body() -> None:
        async with client(server.url + "/mcp", "auto") as session:
            result = await session.call_tool(name, {"a": 1, "b": 1, "sleep": 5})
            assert result.is_error
            assert "timed out" in text(result)
            assert (await session.call_tool(name, {"a": 1, "b": 1})).structured_content
            result = await session.call_tool(name, {"a": 1, "b": 1})
            assert result.is_error
            assert "throttled" in text(result) and "Retry after" in text(result)
            assert result.meta is not None
            assert result.meta["errorType"] == "TooManyRequestsException"
            assert result.meta["retryAfterSeconds"] >= 1

    run(body)


@asynccontextmanager
async def legacy_notifications(
    target: str | StdioServerParameters,
) -> AsyncIterator[tuple[Client, anyio.Event]]:
    """A handshake-era client and an event set when tools/list_changed arrives."""
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    async with client(target, "legacy", message_handler=on_message) as session:
        yield session, changed


async def wait_for(event: anyio.Event) -> None:
    with anyio.fail_after(20):
        await event.wait()


async def in_thread(action: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(action)


def check_list_changed(url: str, target: str | StdioServerParameters, aws: Any, name: str) -> None:
    """Both eras hear a redeploy of an exposed function; a deletion hides its tool."""

    async def body() -> None:
        async with (
            client(target, "auto") as modern,
            legacy_notifications(target) as (legacy, changed),
            modern.listen(tools_list_changed=True) as subscription,
        ):
            assert name in await all_tools(legacy)  # the session's GET stream is open now
            await in_thread(
                lambda: aws.update_function_code(
                    FunctionName=name, ZipFile=make_zip({"app.py": source(2)})
                )
            )
            with anyio.fail_after(20):
                async for _event in subscription:
                    break
            await wait_for(changed)
            assert (await modern.call_tool(name, {"a": 1, "b": 1})).structured_content == {
                "sum": 2,
                "version": 2,
            }
            await in_thread(lambda: aws.delete_function(FunctionName=name))
            with anyio.fail_after(20):
                async for _event in subscription:
                    break
            assert name not in await all_tools(modern)
            assert name not in await all_tools(legacy)

    run(body)


def test_list_changed_over_http(server: Server, aws: Any, deploy: Deploy) -> None:
    name = deploy(source())["FunctionName"]
    expose(server, name)
    check_list_changed(server.url, server.url + "/mcp", aws, name)


@pytest.mark.parametrize("mode", ERAS)
def test_stdio_through_ember_mcp(server: Server, deploy: Deploy, mode: str) -> None:
    name = deploy(source())["FunctionName"]
    expose(server, name)

    async def body() -> None:
        async with client(stdio(server.url), mode) as session:
            await check_list_call_and_errors(session, name, name)

    run(body)


def test_list_changed_over_stdio(server: Server, aws: Any, deploy: Deploy) -> None:
    name = deploy(source())["FunctionName"]
    expose(server, name)
    check_list_changed(server.url, stdio(server.url), aws, name)


def test_tool_settings_api_and_cli(server: Server, deploy: Deploy, tmp_path: Path) -> None:
    name = deploy(source())["FunctionName"]
    schema = tmp_path / "in.json"
    schema.write_text(json.dumps(SCHEMA))
    cli = [EMBER, "--endpoint", server.url, "tool"]

    def ember(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], env=server.cli_env(), capture_output=True, text=True, timeout=60
        )

    done = ember(
        "expose", name, "--description", "Adds.", "--input-schema", str(schema),
        "--title", "Adder", "--tool-name", f"add_{name[-6:]}", "--read-only", "--no-destructive",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"exposed {name} as tool add_{name[-6:]}" in done.stdout
    document = server.http.get(f"/_ember/functions/{name}/tool", timeout=10).json()
    assert document["title"] == "Adder"
    assert document["annotations"] == {"readOnlyHint": True, "destructiveHint": False}
    listed = json.loads(ember("ls", "--json").stdout)
    assert name in [entry["FunctionName"] for entry in listed]
    assert name in ember("ls").stdout

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "array"}))
    done = ember("expose", name, "--description", "x", "--input-schema", str(bad))
    assert done.returncode == 1
    assert "InvalidParameterValueException" in done.stderr and "inputSchema" in done.stderr
    done = ember("expose", "no-such-function", "--description", "x", "--input-schema", str(schema))
    assert done.returncode == 1 and "ResourceNotFoundException" in done.stderr

    assert ember("hide", name).returncode == 0
    assert ember("hide", name).returncode == 0  # hiding twice is fine
    response = server.http.get(f"/_ember/functions/{name}/tool", timeout=10)
    assert response.status_code == 404
    assert name not in [entry["FunctionName"] for entry in json.loads(ember("ls", "--json").stdout)]


def test_tools_survive_a_restart(spawn_server: Spawn, tmp_path: Path) -> None:
    first = spawn_server(tmp_path / "data")
    create = {
        "FunctionName": "keeper",
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": "arn:aws:iam::000000000000:role/r",
        "Code": {
            "ZipFile": __import__("base64").b64encode(make_zip({"app.py": source()})).decode()
        },
    }
    assert first.http.post("/2015-03-31/functions", json=create, timeout=30).is_success
    expose(first, "keeper", title="Keeper")
    first.stop()
    second = spawn_server(tmp_path / "data")

    async def body() -> None:
        async with client(second.url + "/mcp", "auto") as session:
            tools = await all_tools(session)
            assert tools["keeper"].title == "Keeper"
            result = await session.call_tool("keeper", {"a": 3, "b": 4})
            assert result.structured_content == {"sum": 7, "version": 1}

    run(body)


def mcp_post(
    url: str, headers: dict[str, str] | None = None, *, authorize: bool = True
) -> httpx.Response:
    """One raw 2026-07-28 tools/list request (with the server's token if ``authorize``)."""
    token = {"authorization": f"Bearer {mcp_token(url)}"} if authorize else {}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    return httpx.post(
        url + "/mcp",
        json=body,
        headers={
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/list",
            **token,
            **(headers or {}),
        },
        timeout=10,
    )


def test_bearer_token_and_allowed_hosts(spawn_server: Spawn, tmp_path: Path) -> None:
    server = spawn_server(None, "--mcp-token", "s3cret", "--mcp-allow-host", "ember.example")
    missing = mcp_post(server.url, authorize=False)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = mcp_post(server.url, {"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    right = mcp_post(server.url, {"authorization": "Bearer s3cret"})
    assert right.status_code == 200, right.text
    assert right.json()["result"]["tools"] == []
    # A host name the operator allowed passes the DNS-rebinding check; others still do not.
    token = {"authorization": "Bearer s3cret"}
    for allowed in ({"host": "ember.example"}, {"origin": "https://ember.example"}):
        assert mcp_post(server.url, {**token, **allowed}).status_code == 200
    assert mcp_post(server.url, {**token, "host": "evil.example"}).status_code == 421

    async def sdk_with_token(token: str) -> None:
        async with (
            httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http,
            client(streamable_http_client(server.url + "/mcp", http_client=http), "legacy") as c,
        ):
            await c.list_tools()

    run(lambda: sdk_with_token("s3cret"))
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in an exception group
        run(lambda: sdk_with_token("wrong"))

    async def stdio_with_token(*args: str) -> None:
        async with client(stdio(server.url, *args), "auto") as session:
            assert (await session.list_tools()).tools == []

    run(lambda: stdio_with_token("--token", "s3cret"))
    refused = subprocess.run(
        [EMBER, "mcp", "--endpoint", server.url, "--token", "wrong"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("refused: Unauthorized"), refused.stderr


def test_dns_rebinding_is_refused(server: Server) -> None:
    port = server.port
    assert mcp_post(server.url, {"host": "evil.example"}).status_code == 421
    assert mcp_post(server.url, {"host": f"evil.example:{port}"}).status_code == 421
    assert mcp_post(server.url, {"origin": "http://evil.example"}).status_code == 403
    assert mcp_post(server.url, {"origin": f"http://localhost:{port}"}).status_code == 200
    assert mcp_post(server.url, {"host": f"localhost:{port}"}).status_code == 200


def test_a_slow_tool_does_not_hold_up_other_clients(server: Server, deploy: Deploy) -> None:
    name = deploy(source(), Timeout=120)["FunctionName"]
    expose(server, name)

    async def body() -> None:
        async with (
            client(server.url + "/mcp", "2026-07-28") as slow,
            client(server.url + "/mcp", "legacy") as other,
            anyio.create_task_group() as tasks,
        ):
            outcome: list[types.CallToolResult] = []

            async def slow_call() -> None:
                outcome.append(await slow.call_tool(name, {"a": 0, "b": 0, "sleep": 60}))

            tasks.start_soon(slow_call)
            await in_thread(
                lambda: wait_until(
                    lambda: any(s["state"] == "busy" for s in sandboxes_of(server, name))
                )
            )
            assert name in await all_tools(other)
            # A second sandbox of the same function serves the other client meanwhile.
            result = await other.call_tool(name, {"a": 20, "b": 22})
            assert result.structured_content == {"sum": 42, "version": 1}
            assert outcome == []  # the slow call is still running
            tasks.cancel_scope.cancel()

    run(body)


def test_stdio_answers_a_request_sent_just_before_stdin_closes(
    server: Server, deploy: Deploy
) -> None:
    """A host that writes its requests and closes stdin at once still gets every answer
    (with a slow tool call among them) before `ember mcp` exits."""
    name = deploy(source())["FunctionName"]
    tool = expose(server, name)["toolName"]
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "closer", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {"a": 2, "b": 3, "sleep": 0.5}},
        },
    ]
    params = stdio(server.url)
    done = subprocess.run(
        [params.command, *params.args],
        input="".join(json.dumps(m) + "\n" for m in messages),
        capture_output=True,
        text=True,
        env=params.env,
        timeout=60,
    )
    answers = {m["id"]: m for m in map(json.loads, done.stdout.splitlines()) if "id" in m}
    assert set(answers) == {1, 2}, (done.stdout, done.stderr)
    assert "result" in answers[2], answers[2]
    assert json.loads(answers[2]["result"]["content"][0]["text"])["sum"] == 5
    assert done.returncode == 0, done.stderr


def test_a_tool_call_is_recorded_with_its_origin(server: Server, deploy: Deploy) -> None:
    name = deploy(source())["FunctionName"]
    expose(server, name, toolName=f"h.{name}")

    async def body() -> None:
        async with client(server.url + "/mcp", ERAS[0]) as session:
            assert not (await session.call_tool(f"h.{name}", {"a": 2, "b": 40})).is_error

    run(body)

    def origins() -> list[str]:
        page = server.http.get(f"/_ember/functions/{name}/invocations", timeout=10).json()
        return [record["Origin"] for record in page["Invocations"]]

    assert wait_until(origins, timeout=30) == ["mcp"]

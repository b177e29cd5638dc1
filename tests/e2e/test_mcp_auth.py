"""End-to-end MCP authentication: account tokens, tool allow-lists, OAuth 2.1 access
tokens and RFC 9728 metadata, with a real `ember serve` and the SDK's own client.

OAuth tokens come from a tiny issuer served by the test (``oauth_issuer``): ember
fetches its metadata and JWKS over HTTP exactly as it would an IdP's.

Requests to ember's own API go unsigned here (``--auth`` has no guard yet on this
branch); ``signed`` is what the two-account test uses once accounts exist.
"""

from __future__ import annotations

import base64
import configparser
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import EMBER, ROLE, Server, make_zip, server_at, wait_until
from oauth_issuer import running

Deploy = Callable[..., dict[str, Any]]
Spawn = Callable[..., Server]
PRM = "/.well-known/oauth-protected-resource"

APP = """
def handler(event, context):
    return {"sum": event["a"] + event["b"]}
"""
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}


def expose(url: str, function: str, **headers: str) -> None:
    body = {"description": "Adds.", "inputSchema": SCHEMA}
    response = server_at(url).http.put(
        f"/_ember/functions/{function}/tool", json=body, headers=headers, timeout=10
    )
    assert response.status_code == 200, response.text


def create_token(url: str, **body: Any) -> dict[str, Any]:
    response = server_at(url).http.post("/_ember/tokens", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return dict(response.json())


@asynccontextmanager
async def session(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(
            streamable_http_client(url + "/mcp", http_client=http), mode=mode, cache=None
        ) as client,
    ):
        yield client


def tool_names(url: str, token: str | None, mode: str = "auto") -> list[str]:
    names: list[str] = []

    async def body() -> None:
        async with session(url, token, mode) as client:
            names.extend(tool.name for tool in (await client.list_tools()).tools)

    anyio.run(body)
    return sorted(names)


def call(url: str, token: str, tool: str) -> Any:
    """The call's structured result, or the message of the protocol error it raised."""

    async def body() -> Any:
        async with session(url, token) as client:
            try:
                return (await client.call_tool(tool, {"a": 2, "b": 3})).structured_content
            except MCPError as error:
                return error.error.message

    return anyio.run(body)


def raw_list(url: str, token: str | None = None) -> httpx.Response:
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/list",
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
    return httpx.post(url + "/mcp", json=body, headers=headers, timeout=10)


def other_account(server: Server) -> str:
    """A second account of ``server``, made by the default account's root."""
    response = server.http.post("/_ember/accounts", json={"Name": "other"})
    assert response.status_code == 201, response.text
    return str(response.json()["AccountId"])


def test_the_tokens_api(server: Server) -> None:
    other_id = other_account(server)
    created = create_token(server.url, Tools=["add", "mul"])
    assert set(created) == {"TokenId", "Token", "AccountId", "Tools", "Created"}
    assert created["Token"].startswith("ember_mcp_")
    assert created["AccountId"] == "000000000000"
    assert created["Tools"] == ["add", "mul"]
    other = create_token(server.url, AccountId=other_id)
    assert other["AccountId"] == other_id and other["Tools"] is None

    listed = server.http.get("/_ember/tokens", timeout=10).json()["Tokens"]
    mine = [entry for entry in listed if entry["TokenId"] in (created["TokenId"], other["TokenId"])]
    assert len(mine) == 2
    assert all("Token" not in entry for entry in listed)

    bad = server.http.post("/_ember/tokens", json={"Tools": "add"}, timeout=10)
    assert bad.status_code == 400
    assert bad.headers["x-amzn-ErrorType"].startswith("InvalidParameterValueException")
    unknown = server.http.post("/_ember/tokens", json={"Scope": "x"}, timeout=10)
    assert unknown.status_code == 400

    gone = server.http.delete(f"/_ember/tokens/{other['TokenId']}", timeout=10)
    assert gone.status_code == 204
    again = server.http.delete(f"/_ember/tokens/{other['TokenId']}", timeout=10)
    assert again.status_code == 404
    assert raw_list(server.url, other["Token"]).status_code == 401


def test_the_tokens_cli(server: Server) -> None:
    def ember(*args: str) -> str:
        done = subprocess.run(
            [EMBER, "--endpoint", server.url, "tokens", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=server.cli_env(),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    lines = ember("create", "--tools", "add", "--tools", "mul,div").splitlines()
    token_id = lines[0].split()[1]
    token = lines[1]
    assert token.startswith("ember_mcp_")
    assert raw_list(server.url, token).status_code == 200
    listing = ember("ls")
    assert token_id in listing and "add,mul,div" in listing and token not in listing
    other_id = other_account(server)
    assert ember("create", "--account", other_id, "--json").count(other_id) == 1
    assert ember("rm", token_id).strip() == f"revoked {token_id}"
    assert raw_list(server.url, token).status_code == 401


def test_tokens_see_only_their_accounts_tools(server: Server, deploy: Deploy) -> None:
    first = deploy(APP)["FunctionName"]
    second = deploy(APP)["FunctionName"]
    expose(server.url, first)
    expose(server.url, second)
    every = create_token(server.url)["Token"]
    narrow = create_token(server.url, Tools=[second])["Token"]
    other = create_token(server.url, AccountId=other_account(server))["Token"]

    assert {first, second} <= set(tool_names(server.url, every))
    assert tool_names(server.url, narrow, "legacy") == [second]
    assert tool_names(server.url, narrow) == [second]
    # Another account holds none of the default account's functions.
    assert tool_names(server.url, other) == []

    assert call(server.url, narrow, second) == {"sum": 5}
    for token, tool in ((narrow, first), (other, first)):
        assert call(server.url, token, tool) == f"Unknown tool: {tool}"


def test_no_token_is_refused_with_the_resource_metadata(server: Server) -> None:
    metadata_url = f"{server.url}{PRM}/mcp"
    missing = raw_list(server.url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == (
        f'Bearer realm="ember", resource_metadata="{metadata_url}"'
    )
    wrong = raw_list(server.url, "ember_mcp_forged")
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].endswith('error="invalid_token"')
    for url in (server.url + PRM, metadata_url):
        document = httpx.get(url, timeout=10)
        assert document.status_code == 200
        assert document.json() == {
            "resource": server.url + "/mcp",
            "bearer_methods_supported": ["header"],
            "resource_name": "ember",
        }


def test_auth_none_leaves_mcp_open(spawn_server: Spawn) -> None:
    server = spawn_server(None, "--auth", "none")
    response = raw_list(server.url)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["tools"] == []


def test_oauth_access_tokens_of_a_configured_issuer(spawn_server: Spawn) -> None:
    with running() as issuer:
        server = spawn_server(None, "--mcp-oauth-issuer", issuer.url)
        resource = server.url + "/mcp"
        document = httpx.get(server.url + PRM, timeout=10).json()
        assert document["authorization_servers"] == [issuer.url]
        assert document["resource"] == resource

        assert tool_names(server.url, issuer.token(resource)) == []
        assert tool_names(server.url, issuer.token(resource, ember_account="123456789012")) == []
        for refused in (
            issuer.token("http://elsewhere/mcp"),
            issuer.token(resource, iss="http://evil.example"),
            issuer.token(resource, lifetime=-300),
        ):
            response = raw_list(server.url, refused)
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
        # Account tokens still work next to OAuth.
        assert raw_list(server.url, create_token(server.url)["Token"]).status_code == 200


def test_a_proxy_names_the_resource(spawn_server: Spawn) -> None:
    with running() as issuer:
        resource = "https://tools.example/ember/mcp"
        server = spawn_server(None, "--mcp-oauth-issuer", issuer.url, "--mcp-resource", resource)
        challenge = raw_list(server.url).headers["www-authenticate"]
        assert f'resource_metadata="https://tools.example{PRM}/ember/mcp"' in challenge
        assert httpx.get(server.url + PRM, timeout=10).json()["resource"] == resource
        assert raw_list(server.url, issuer.token(resource)).status_code == 200
        assert raw_list(server.url, issuer.token(server.url + "/mcp")).status_code == 401


def test_a_token_made_on_one_node_works_on_every_node(
    spawn_server: Spawn, postgres_url: str, tmp_path: Any
) -> None:
    a = spawn_server(tmp_path / "node-a", "--database", postgres_url)
    b = spawn_server(tmp_path / "node-b", "--database", postgres_url)
    created = create_token(a.url)
    wait_until(lambda: raw_list(b.url, created["Token"]).status_code == 200)
    listed = b.http.get("/_ember/tokens", timeout=10).json()["Tokens"]
    assert [entry["TokenId"] for entry in listed] == [created["TokenId"]]
    gone = a.http.delete(f"/_ember/tokens/{created['TokenId']}", timeout=10)
    assert gone.status_code == 204
    wait_until(lambda: raw_list(b.url, created["Token"]).status_code == 401)


# --- Two accounts (needs POST /_ember/accounts and signed requests: helper "authn") ---


def signed(url: str, keys: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    """A SigV4-signed request as ``keys`` (AccessKeyId, SecretAccessKey)."""
    data = httpx.Request(method, url + path, json=body).content if body is not None else b""
    request = AWSRequest(
        method, url + path, data=data, headers={"content-type": "application/json"}
    )
    credentials = Credentials(keys["AccessKeyId"], keys["SecretAccessKey"])
    SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    return httpx.request(
        method, url + path, content=data, headers=dict(request.headers), timeout=30
    )


def test_two_accounts_tokens_see_different_tools(server: Server, deploy: Deploy) -> None:
    account = signed_root_create_account(server)
    mine = deploy(APP)["FunctionName"]
    expose(server.url, mine)
    theirs = f"{mine}-b"
    created = signed(
        server.url,
        account,
        "POST",
        "/2015-03-31/functions",
        {
            "FunctionName": theirs,
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "Role": ROLE,
            "Code": {"ZipFile": base64.b64encode(make_zip({"app.py": APP})).decode()},
        },
    )
    assert created.status_code == 201, created.text
    body = {"description": "Adds.", "inputSchema": SCHEMA}
    exposed = signed(server.url, account, "PUT", f"/_ember/functions/{theirs}/tool", body)
    assert exposed.status_code == 200, exposed.text
    token = signed(server.url, account, "POST", "/_ember/tokens", {})
    assert token.status_code == 201, token.text
    assert token.json()["AccountId"] == account["AccountId"]

    assert tool_names(server.url, token.json()["Token"]) == [theirs]
    assert theirs not in tool_names(server.url, create_token(server.url)["Token"])
    assert mine not in tool_names(server.url, token.json()["Token"])
    assert call(server.url, token.json()["Token"], theirs) == {"sum": 5}


def signed_root_create_account(server: Server) -> dict[str, Any]:
    """A new account (and its root key), made by the default account's root."""
    profile = configparser.ConfigParser()
    profile.read(server.data_dir / "credentials")
    root = {
        "AccessKeyId": profile["ember"]["aws_access_key_id"],
        "SecretAccessKey": profile["ember"]["aws_secret_access_key"],
    }
    response = signed(server.url, root, "POST", "/_ember/accounts", {"Name": "second"})
    assert response.status_code == 201, response.text
    return dict(response.json())

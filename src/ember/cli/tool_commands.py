"""CLI commands of MCP: `ember tool expose|ls|hide` and `ember mcp` (stdio).

Registered on the main group by ``main.py``; they reach the client through
``ctx.obj`` (the CLI's shared state), so this module needs nothing of main.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ember.cli.client import EmberClient, normalize_endpoint

HINTS = {
    "read_only": "readOnlyHint",
    "destructive": "destructiveHint",
    "idempotent": "idempotentHint",
    "open_world": "openWorldHint",
}


def _client(ctx: click.Context) -> EmberClient:
    client: EmberClient = ctx.obj.client()
    return client


def read_schema(path: Path, option: str) -> dict[str, Any]:
    """A JSON object from PATH, or a usage error naming the option."""
    try:
        schema = json.loads(path.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from exc
    if not isinstance(schema, dict):
        raise click.BadParameter("must hold a JSON object (a JSON Schema)", param_hint=option)
    return schema


@click.group()
def tool() -> None:
    """Expose functions as MCP tools (served at /mcp and by `ember mcp`)."""


@tool.command(name="expose")
@click.argument("name")
@click.option("--description", required=True, help="What the tool does, for the model.")
@click.option(
    "--input-schema",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSON Schema (2020-12, type object) of the arguments.",
)
@click.option("--title", help="Human-readable title.")
@click.option("--tool-name", help="Name the tool is called by [default: NAME].")
@click.option(
    "--output-schema",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Schema (type object) the function's result conforms to.",
)
@click.option("--read-only/--no-read-only", default=None, help="readOnlyHint.")
@click.option("--destructive/--no-destructive", default=None, help="destructiveHint.")
@click.option("--idempotent/--no-idempotent", default=None, help="idempotentHint.")
@click.option("--open-world/--no-open-world", default=None, help="openWorldHint.")
@click.option("--qualifier", help="Version or alias the tool invokes [default: $LATEST].")
@click.pass_context
def expose(
    ctx: click.Context,
    name: str,
    description: str,
    input_schema: Path,
    title: str | None,
    tool_name: str | None,
    output_schema: Path | None,
    qualifier: str | None,
    read_only: bool | None,
    destructive: bool | None,
    idempotent: bool | None,
    open_world: bool | None,
) -> None:
    """Expose function NAME as an MCP tool."""
    hints = {
        "read_only": read_only,
        "destructive": destructive,
        "idempotent": idempotent,
        "open_world": open_world,
    }
    settings: dict[str, Any] = {
        "description": description,
        "inputSchema": read_schema(input_schema, "--input-schema"),
    }
    if output_schema is not None:
        settings["outputSchema"] = read_schema(output_schema, "--output-schema")
    for key, value in (("title", title), ("toolName", tool_name), ("qualifier", qualifier)):
        if value is not None:
            settings[key] = value
    annotations = {HINTS[key]: value for key, value in hints.items() if value is not None}
    if annotations:
        settings["annotations"] = annotations
    with _client(ctx) as client:
        exposed = client.expose_tool(name, settings)
    click.echo(f"exposed {name} as tool {exposed.get('toolName')}")


@tool.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the raw documents.")
@click.pass_context
def tool_ls(ctx: click.Context, as_json: bool) -> None:
    """List exposed functions and their tools."""
    with _client(ctx) as client:
        tools = client.tools()
    if as_json:
        click.echo(json.dumps(tools, indent=2))
    elif not tools:
        click.echo("No tools.")
    else:
        Console().print(tools_table(tools))


def tools_table(tools: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TOOL", "FUNCTION", "QUALIFIER", "HINTS", "DESCRIPTION"):
        table.add_column(column, no_wrap=column != "DESCRIPTION")
    for entry in tools:
        hints = entry.get("annotations") or {}
        table.add_row(
            str(entry.get("toolName", "")),
            str(entry.get("FunctionName", "")),
            str(entry.get("qualifier") or ""),
            ",".join(sorted(key.removesuffix("Hint") for key, on in hints.items() if on)),
            str(entry.get("description", "")),
        )
    return table


@tool.command(name="hide")
@click.argument("name")
@click.pass_context
def hide(ctx: click.Context, name: str) -> None:
    """Stop exposing function NAME as a tool."""
    with _client(ctx) as client:
        client.hide_tool(name)
    click.echo(f"hid {name}")


@click.command(name="mcp")
@click.option("--endpoint", help="URL of the ember server [default: the global --endpoint].")
@click.option(
    "--token",
    envvar="EMBER_MCP_TOKEN",
    help="Bearer token of the server's /mcp (from `ember tokens create`, or its --mcp-token).",
)
@click.pass_context
def mcp(ctx: click.Context, endpoint: str | None, token: str | None) -> None:
    """Serve ember's tools over stdio (for hosts that launch MCP servers).

    A client of a running ember: lists and calls go to its /mcp endpoint, and
    tool-list changes are passed on. Logs go to stderr; stdout is the protocol.
    """
    # Imported here: only this command needs the MCP SDK's client and server.
    from ember.mcp.stdio import serve_stdio

    url = normalize_endpoint(endpoint or ctx.obj.endpoint)
    serve_stdio(url + "/mcp", token)

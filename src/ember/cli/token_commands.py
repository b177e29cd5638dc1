"""CLI commands of MCP tokens: `ember tokens create|ls|rm`.

Registered on the main group by ``main.py``; they reach the client through
``ctx.obj`` (the CLI's shared state), so requests are signed like any other.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ember.cli.client import EmberClient


def _client(ctx: click.Context) -> EmberClient:
    client: EmberClient = ctx.obj.client()
    return client


@click.group()
def tokens() -> None:
    """Bearer tokens for /mcp: one account's tools each, optionally fewer."""


def _names(values: tuple[str, ...]) -> list[str] | None:
    """``--tools a --tools b,c`` as ["a", "b", "c"]; None when none was given."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names or None


@tokens.command(name="create")
@click.option("--account", help="Account the token acts for [default: the caller's].")
@click.option(
    "--tools",
    multiple=True,
    help="Tools the token may see and call (repeatable, or NAME,NAME) "
    "[default: every tool of the account].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer.")
@click.pass_context
def create(ctx: click.Context, account: str | None, tools: tuple[str, ...], as_json: bool) -> None:
    """Create an MCP token; it is shown this once (only its hash is kept)."""
    with _client(ctx) as client:
        created = client.create_token(account, _names(tools))
    if as_json:
        click.echo(json.dumps(created, indent=2))
        return
    click.echo(f"token {created['TokenId']} for account {created['AccountId']}")
    click.echo(created["Token"])


@tokens.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the raw documents.")
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List MCP tokens (ids, never the tokens)."""
    with _client(ctx) as client:
        entries = client.mcp_tokens()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    elif not entries:
        click.echo("No tokens.")
    else:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("TOKEN ID", "ACCOUNT", "TOOLS", "CREATED"):
            table.add_column(column, no_wrap=True)
        for entry in entries:
            tools = entry.get("Tools")
            table.add_row(
                str(entry.get("TokenId")),
                str(entry.get("AccountId")),
                "(all)" if tools is None else ",".join(tools),
                str(entry.get("Created")),
            )
        Console().print(table)


@tokens.command(name="rm")
@click.argument("token_id")
@click.pass_context
def rm(ctx: click.Context, token_id: str) -> None:
    """Revoke the MCP token TOKEN_ID."""
    with _client(ctx) as client:
        client.delete_token(token_id)
    click.echo(f"revoked {token_id}")

"""CLI commands of accounts and access keys: `ember accounts create|ls`, `ember keys create|ls|rm`.

Registered on the main group by ``main.py``; they reach the client through
``ctx.obj`` (the CLI's shared state), so this module needs nothing of main.
A secret key is printed once, when it is made: the server never shows it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ember.cli.client import EmberClient


def _client(ctx: click.Context) -> EmberClient:
    client: EmberClient = ctx.obj.client()
    return client


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def usage_hint(key_id: str, secret: str) -> str:
    """How to sign with a new key, from the CLI or boto3 / the AWS CLI."""
    return (
        "The secret key is shown only now. To use this key:\n"
        f"  export AWS_ACCESS_KEY_ID={key_id} AWS_SECRET_ACCESS_KEY={secret}\n"
        "  (the ember CLI, boto3 and the AWS CLI read these; or put them in a profile of "
        "~/.aws/credentials and pass --profile)"
    )


@click.group()
def accounts() -> None:
    """Accounts: each owns its functions, layers and keys."""


@accounts.command(name="create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer (with the secret).")
@click.pass_context
def accounts_create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create account NAME and its root access key."""
    with _client(ctx) as client:
        created = client.create_account(name)
    if as_json:
        click.echo(json.dumps(created, indent=2))
        return
    click.echo(f"created account {created['AccountId']} ({created.get('Name', name)})")
    click.echo(f"root access key: {created['AccessKeyId']}")
    click.echo(f"secret key:      {created['SecretAccessKey']}")
    click.echo(usage_hint(str(created["AccessKeyId"]), str(created["SecretAccessKey"])))


@accounts.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the raw list.")
@click.pass_context
def accounts_ls(ctx: click.Context, as_json: bool) -> None:
    """List the accounts you may see."""
    with _client(ctx) as client:
        found = client.accounts()
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("No accounts.")
    else:
        rows = [[str(a.get(k, "")) for k in ("AccountId", "Name", "Created")] for a in found]
        Console().print(_table(("ACCOUNT", "NAME", "CREATED"), rows))


@click.group()
def keys() -> None:
    """Access keys: an account's root key, or a user's, limited by an IAM policy."""


def read_policy(path: Path | None) -> str | None:
    """The policy document in PATH as JSON text, or a usage error naming --policy."""
    if path is None:
        return None
    text = path.read_text()
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--policy") from exc
    if not isinstance(document, dict):
        raise click.BadParameter("must hold an IAM policy (a JSON object)", param_hint="--policy")
    return text


@keys.command(name="create")
@click.option("--account", help="Account the key belongs to [default: yours].")
@click.option("--user", help="User the key belongs to [default: the account's root].")
@click.option(
    "--policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="IAM policy (JSON file) that limits what the user may do.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer (with the secret).")
@click.pass_context
def keys_create(
    ctx: click.Context,
    account: str | None,
    user: str | None,
    policy: Path | None,
    as_json: bool,
) -> None:
    """Create an access key."""
    document = read_policy(policy)
    with _client(ctx) as client:
        created = client.create_key(account, user, document)
    if as_json:
        click.echo(json.dumps(created, indent=2))
        return
    owner = f"user {created['UserName']}" if created.get("UserName") else "root"
    click.echo(f"created access key {created['AccessKeyId']} ({owner} of {created['AccountId']})")
    click.echo(f"secret key: {created['SecretAccessKey']}")
    click.echo(usage_hint(str(created["AccessKeyId"]), str(created["SecretAccessKey"])))


def keys_table(found: list[dict[str, Any]]) -> Table:
    rows = [
        [
            str(key.get("AccessKeyId", "")),
            str(key.get("AccountId", "")),
            str(key.get("UserName") or "(root)"),
            str(key.get("Created", "")),
        ]
        for key in found
    ]
    return _table(("ACCESS KEY", "ACCOUNT", "USER", "CREATED"), rows)


@keys.command(name="ls")
@click.option("--account", help="Only this account's keys [default: yours].")
@click.option("--json", "as_json", is_flag=True, help="Print the raw list.")
@click.pass_context
def keys_ls(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """List access keys (never their secrets)."""
    with _client(ctx) as client:
        found = client.keys(account)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("No keys.")
    else:
        Console().print(keys_table(found))


@keys.command(name="rm")
@click.argument("key_id")
@click.pass_context
def keys_rm(ctx: click.Context, key_id: str) -> None:
    """Revoke access key KEY_ID."""
    with _client(ctx) as client:
        client.delete_key(key_id)
    click.echo(f"deleted access key {key_id}")

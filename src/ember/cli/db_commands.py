"""`ember db status` and `ember db upgrade`: schema versions, for operators who migrate by hand.

These commands open the data dir or the database directly (the server need
not run); the work is in ``ember.dbadmin``, loaded inside each command, as
``serve`` loads the server, so that the CLI's other commands never import it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ember.dbadmin import SchemaState


def _target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--database",
        "database_url",
        envvar="EMBER_DATABASE_URL",
        default=None,
        help="PostgreSQL URL of a cluster (instead of --data-dir).",
    )(command)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="EMBER_DATA_DIR",
        default=Path(".ember-data"),
        show_default=True,
        help="Data directory of an embedded ember.",
    )(command)


@click.group()
def db() -> None:
    """Schema versions of the data dir or the cluster database."""


@db.command()
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def status(data_dir: Path, database_url: str | None, as_json: bool) -> None:
    """Show each file's or component's schema version and whether an upgrade is needed."""
    from ember import dbadmin
    from ember.errors import StartupRefused

    try:
        states = dbadmin.pg_status(database_url) if database_url else _sqlite_status(data_dir)
    except StartupRefused as refused:
        raise click.ClickException(refused.message) from None
    needed = any(state.pending for state in states)
    if as_json:
        document = {"upgradeNeeded": needed, "schemas": [state.as_json() for state in states]}
        click.echo(json.dumps(document, indent=2))
        return
    for state in states:
        click.echo(f"{state.name}: version {state.stored}, this ember has {state.known}")
    if any(state.newer for state in states):
        click.echo("written by a newer ember: upgrade ember")
    elif needed:
        click.echo("upgrade needed: run `ember db upgrade`")
    else:
        click.echo("up to date")


@db.command()
@_target_options
def upgrade(data_dir: Path, database_url: str | None) -> None:
    """Apply pending schema migrations (the server also does this at start)."""
    from ember import dbadmin
    from ember.errors import StartupRefused

    try:
        if database_url:
            before = dbadmin.pg_upgrade(database_url)
        else:
            _require(data_dir)
            before = dbadmin.sqlite_upgrade(data_dir)
    except StartupRefused as refused:
        raise click.ClickException(refused.message) from None
    _report(before)


def _sqlite_status(data_dir: Path) -> list[SchemaState]:
    from ember import dbadmin

    _require(data_dir)
    return dbadmin.sqlite_status(data_dir)


def _require(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise click.ClickException(f"no data dir at {data_dir}")


def _report(before: list[SchemaState]) -> None:
    for state in before:
        if state.pending:
            click.echo(f"{state.name}: migrated from version {state.stored} to {state.known}")
        else:
            click.echo(f"{state.name}: already at version {state.known}")

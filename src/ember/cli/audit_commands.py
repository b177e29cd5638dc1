"""`ember audit`: the audit log of control-plane changes, newest first.

Registered on the main group by ``main.py``; it reaches the client through
``ctx.obj`` (the CLI's shared state), as the queue commands do.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ember.cli.client import EmberClient

COLUMNS = ("TIME", "PRINCIPAL", "ACTION", "RESOURCE", "RESULT", "REQUEST ID")


def events_table(events: list[dict[str, Any]]) -> Table:
    """One row per event; a denied or failed change shows its status and error in red."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, no_wrap=column not in ("RESOURCE", "PRINCIPAL"))
    for event in events:
        table.add_row(
            str(event.get("Time", "")),
            str(event.get("Principal", "")),
            str(event.get("Action", "")),
            str(event.get("Resource", "")),
            _result(event),
            str(event.get("RequestId", "")),
        )
    return table


def _result(event: dict[str, Any]) -> Text:
    status, error = event.get("Status"), event.get("Error")
    if not event.get("Allowed"):
        return Text(f"denied {status} {error or ''}".rstrip(), style="red")
    if isinstance(status, int) and status >= 400:
        return Text(f"{status} {error or ''}".rstrip(), style="yellow")
    return Text(str(status))


@click.command()
@click.option("--since", help="Oldest entry: ISO 8601, Unix seconds, or an age (10m, 2h, 1d).")
@click.option("--until", help="Entries before this (same forms as --since).")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Page size."
)
@click.option("--next", "marker", help="Continue from a previous page's NextMarker.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw response.")
@click.pass_context
def audit(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    limit: int,
    marker: str | None,
    as_json: bool,
) -> None:
    """Control-plane changes, allowed and denied, newest first (your account's; the
    default account's root sees every account's)."""
    client: EmberClient = ctx.obj.client()
    with client:
        page = client.audit(since=since, until=until, limit=limit, marker=marker)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    events = page["Events"]
    if not events:
        click.echo("No audit entries.")
    else:
        Console().print(events_table(events))
    if page.get("NextMarker"):
        click.echo(f"More: ember audit --next {page['NextMarker']}", err=True)

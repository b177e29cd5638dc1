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

COLUMNS = ("TIME", "PRINCIPAL", "ACTION", "RESOURCE", "RESULT")
# Columns that fold onto more lines, rather than squeeze the others, on a narrow terminal.
FOLDED = ("PRINCIPAL", "RESOURCE", "RESULT")


def events_table(events: list[dict[str, Any]]) -> Table:
    """One row per event; a denied change shows its status and error in red.

    ARNs lose their constant prefix (``arn:aws:iam::``, ``arn:aws:lambda:REGION:``)
    and times their milliseconds, so that a row fits a terminal; ``--json`` has
    them whole, and the request ids.
    """
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in COLUMNS:
        if column in FOLDED:
            table.add_column(column, overflow="fold", min_width=12)
        else:
            table.add_column(column, no_wrap=True)
    for event in events:
        table.add_row(
            str(event.get("Time", "")).replace("T", " ")[:19],
            _short_arn(str(event.get("Principal", ""))),
            str(event.get("Action", "")),
            _short_arn(str(event.get("Resource", ""))),
            _result(event),
        )
    return table


def _short_arn(arn: str) -> str:
    """``arn:aws:SERVICE:REGION:ACCOUNT:rest`` -> ``ACCOUNT:rest``; anything else as is."""
    parts = arn.split(":", 4)
    return parts[4] if len(parts) == 5 and parts[0] == "arn" else arn


def _result(event: dict[str, Any]) -> Text:
    status, error = event.get("Status"), str(event.get("Error") or "").removesuffix("Exception")
    if not event.get("Allowed"):
        return Text(f"denied {status} {error}".rstrip(), style="red")
    if isinstance(status, int) and status >= 400:
        return Text(f"{status} {error}".rstrip(), style="yellow")
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

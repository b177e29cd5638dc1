"""`ember workers ls|drain`: the cluster's worker hosts, as the node asked sees them.

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

COLUMNS = ("ID", "ADDRESS", "STATE", "BUSY", "SANDBOXES", "MEMORY MB", "RUNTIMES", "ISOLATION")
_STATE_STYLE = {"live": "green", "draining": "yellow", "silent": "red"}


def workers_table(workers: list[dict[str, Any]]) -> Table:
    """One row per worker: busy of live sandboxes of its cap, memory reserved of
    its capacity, and for a worker not live, how long it has been silent."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in COLUMNS:
        numeric = column in ("BUSY", "SANDBOXES", "MEMORY MB")
        table.add_column(
            column, no_wrap=column != "RUNTIMES", justify="right" if numeric else "left"
        )
    for worker in workers:
        table.add_row(
            str(worker.get("id")),
            str(worker.get("address")),
            _state(worker),
            str(worker.get("busy")),
            f"{worker.get('sandboxes')}/{worker.get('maxSandboxes')}",
            f"{worker.get('memoryReservedMB')}/{worker.get('memoryMB')}",
            ", ".join(worker.get("runtimes") or []),
            str(worker.get("isolation")),
        )
    return table


def _state(worker: dict[str, Any]) -> Text:
    state = str(worker.get("state"))
    silence = worker.get("lastHeartbeatSecondsAgo")
    label = state
    if state == "silent" and isinstance(silence, int | float):
        label = f"silent {silence:.0f} s"
    return Text(label, style=_STATE_STYLE.get(state, ""))


@click.group()
def workers() -> None:
    """The cluster's worker hosts (`ember worker`): list them, drain one."""


@workers.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the raw document.")
@click.pass_context
def workers_ls(ctx: click.Context, as_json: bool) -> None:
    """Each worker: address, state (live, draining, silent), busy and live sandboxes,
    memory reserved, runtimes and isolation."""
    client: EmberClient = ctx.obj.client()
    with client:
        listing = client.workers()
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    found = listing.get("workers") or []
    if not found:
        click.echo(listing.get("note") or "No worker has registered.")
        return
    Console().print(workers_table(found))


@workers.command(name="drain")
@click.argument("worker_id", metavar="ID")
@click.pass_context
def workers_drain(ctx: click.Context, worker_id: str) -> None:
    """Send worker ID no new calls; its calls in flight finish. A worker restarted
    under the same id takes calls again."""
    client: EmberClient = ctx.obj.client()
    with client:
        worker = client.drain_worker(worker_id)
    click.echo(
        f"worker {worker.get('id')} is draining: no new calls; "
        f"{worker.get('busy')} call(s) in flight finish there"
    )

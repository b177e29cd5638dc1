"""CLI commands of asynchronous invocation: `ember dlq ...`, `ember queue stats`, serve options.

Registered on the main group by ``main.py``; they reach the client through
``ctx.obj`` (the CLI's shared state), so this module needs nothing of main.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ember.cli.client import EmberClient


def async_serve_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`serve` options of the async path, handed to the command as ``async_settings``."""

    @click.option(
        "--queue",
        "queue_backend",
        envvar="EMBER_QUEUE",
        type=click.Choice(["sqlite", "postgresql", "memory"]),
        default=None,
        help="Where Event invokes are durable before the 202: sqlite (the data dir), "
        "postgresql (--database); memory: lost on exit. [default: postgresql with "
        "--database, else sqlite]",
    )
    @click.option(
        "--pollers",
        envvar="EMBER_POLLERS",
        type=click.IntRange(min=0),
        default=32,
        show_default=True,
        help="Concurrent deliveries of queued events (0: accept only).",
    )
    @click.option(
        "--retry-base-delay",
        envvar="EMBER_RETRY_BASE_DELAY",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="Seconds before an async retry (x1, then x2); also scales throttle backoff.",
    )
    @click.option(
        "--visibility-margin",
        envvar="EMBER_VISIBILITY_MARGIN",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="Seconds a taken event stays hidden beyond its function's timeout before "
        "another poller (or node) may take it again.",
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        queue_backend: str | None,
        pollers: int,
        retry_base_delay: float,
        visibility_margin: float,
        **kwargs: Any,
    ) -> Any:
        kwargs["async_settings"] = {
            "queue_backend": queue_backend or "",
            "pollers": pollers,
            "retry_base_delay_seconds": retry_base_delay,
            "visibility_margin_seconds": visibility_margin,
        }
        return command(*args, **kwargs)

    return wrapper


def _client(ctx: click.Context) -> EmberClient:
    client: EmberClient = ctx.obj.client()
    return client


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def dlq() -> None:
    """Dead letters: async events that failed for good and had no OnFailure destination."""


@dlq.command(name="ls")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw documents.")
@click.pass_context
def dlq_ls(ctx: click.Context, name: str, as_json: bool) -> None:
    """List NAME's dead letters."""
    with _client(ctx) as client:
        letters = client.dead_letters(name)
    if as_json:
        click.echo(json.dumps(letters, indent=2))
        return
    if not letters:
        click.echo(f"No dead letters for {name}.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "REQUEST ID", "CONDITION", "ATTEMPTS", "ERROR", "FAILED AT"):
        table.add_column(column, no_wrap=column != "ERROR")
    for letter in letters:
        error = ": ".join(x for x in (letter.get("errorType"), letter.get("errorMessage")) if x)
        table.add_row(
            str(letter.get("id")),
            str(letter.get("requestId")),
            str(letter.get("condition")),
            str(letter.get("approximateInvokeCount")),
            error,
            _when(letter.get("failedAt")),
        )
    Console().print(table)


@dlq.command(name="show")
@click.argument("name")
@click.argument("dead_letter_id", metavar="ID")
@click.pass_context
def dlq_show(ctx: click.Context, name: str, dead_letter_id: str) -> None:
    """Print one dead letter, with its event, as JSON."""
    with _client(ctx) as client:
        click.echo(json.dumps(client.dead_letter(name, dead_letter_id), indent=2))


@dlq.command(name="redrive")
@click.argument("name")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.pass_context
def dlq_redrive(ctx: click.Context, name: str, ids: tuple[str, ...]) -> None:
    """Put NAME's dead letters (all, or the IDs given) back on the queue, same request ids."""
    with _client(ctx) as client:
        moved = client.redrive(name, list(ids) if ids else None)
    click.echo(f"redrove {moved} event(s) of {name}")


@dlq.command(name="purge")
@click.argument("name")
@click.pass_context
def dlq_purge(ctx: click.Context, name: str) -> None:
    """Delete every dead letter of NAME."""
    with _client(ctx) as client:
        purged = client.purge_dead_letters(name)
    click.echo(f"purged {purged} dead letter(s) of {name}")


@click.group(name="queue")
def queue() -> None:
    """The asynchronous event queue."""


@queue.command(name="stats")
@click.option("--json", "as_json", is_flag=True, help="Print the raw document.")
@click.pass_context
def queue_stats(ctx: click.Context, as_json: bool) -> None:
    """Per function: queue depth, in flight, oldest event age, retrying, dead letters."""
    with _client(ctx) as client:
        stats = client.queue_stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    functions = stats.get("functions") or []
    if not functions:
        click.echo("The queue is empty.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("FUNCTION", "DEPTH", "IN FLIGHT", "OLDEST", "RETRYING", "DEAD LETTERS"):
        table.add_column(column, no_wrap=True, justify="left" if column == "FUNCTION" else "right")
    for row in functions:
        age = row.get("oldestAgeSeconds")
        table.add_row(
            str(row.get("function")),
            str(row.get("depth")),
            str(row.get("inFlight")),
            "" if age is None else f"{age:.1f} s",
            str(row.get("retrying")),
            str(row.get("deadLetters")),
        )
    Console().print(table)

"""`ember invocations` (the history) and `ember top` (a live view), and the `serve`
options of observability. Registered on the main group by ``main.py``; commands
reach the client through ``ctx.obj`` (the CLI's shared state)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ember.cli.client import EmberClient

REFRESH_SECONDS = 1.0
ERROR_OUTCOMES = ["error", "timeout"]


def serve_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`serve` options of observability, handed to the command as ``observe_settings``."""

    @click.option(
        "--history-size",
        envvar="EMBER_HISTORY_SIZE",
        type=click.IntRange(min=1),
        default=10_000,
        show_default=True,
        help="Invocation records kept per function (the newest).",
    )
    @click.option(
        "--observe/--no-observe",
        envvar="EMBER_OBSERVE",
        default=True,
        show_default=True,
        help="Record every call (metrics, history, series); --no-observe records none.",
    )
    @click.option(
        "--otlp-endpoint",
        envvar="EMBER_OTLP_ENDPOINT",
        help="OTLP/HTTP collector (e.g. http://127.0.0.1:4318) to send a span tree per "
        "call to; needs `pip install ember[otel]`. [default: no tracing]",
    )
    @click.option(
        "--metrics-public",
        envvar="EMBER_METRICS_PUBLIC",
        is_flag=True,
        help="Answer GET /metrics to anyone unsigned (default: loopback clients and "
        "--metrics-token holders only; others sign).",
    )
    @click.option(
        "--metrics-token",
        envvar="EMBER_METRICS_TOKEN",
        help="A bearer token that lets a scraper read GET /metrics unsigned.",
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        history_size: int,
        observe: bool,
        otlp_endpoint: str | None,
        metrics_public: bool,
        metrics_token: str | None,
        **kwargs: Any,
    ) -> Any:
        kwargs["observe_settings"] = {
            "history_size": history_size,
            "observe": observe,
            "otlp_endpoint": otlp_endpoint or None,
            "metrics_public": metrics_public,
            "metrics_token": metrics_token or None,
        }
        return command(*args, **kwargs)

    return wrapper


def _client(ctx: click.Context) -> EmberClient:
    client: EmberClient = ctx.obj.client()
    return client


# -- ember invocations -----------------------------------------------------------


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _outcome(record: dict[str, Any]) -> Text:
    outcome = str(record.get("Outcome", ""))
    if outcome == "success":
        return Text(outcome)
    return Text(f"{outcome} {record.get('ErrorType') or ''}".rstrip(), style="red")


def invocations_table(records: list[dict[str, Any]]) -> Table:
    """One row per invocation, newest first; ``--json`` has every field."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    # The request id is what a user copies into `show`: never cut; the rest folds.
    table.add_column("START", overflow="fold", min_width=10)
    table.add_column("REQUEST ID", no_wrap=True, min_width=36)
    for column in ("VERSION", "ORIGIN", "DURATION MS", "INIT MS", "MEMORY", "OUTCOME"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(
            str(record.get("Start", "")).replace("T", " ")[:23],
            str(record.get("RequestId", "")),
            str(record.get("Version", "")),
            str(record.get("Origin", "")),
            _ms(record.get("DurationMs")),
            _ms(record.get("InitDurationMs")),
            f"{record.get('MaxMemoryUsedMB', 0)}/{record.get('MemorySizeMB', 0)} MB",
            _outcome(record),
        )
    return table


@click.group()
def invocations() -> None:
    """The invocation history: what each call did, newest first."""


@invocations.command(name="ls")
@click.argument("name")
@click.option("--errors", is_flag=True, help="Only failed calls (error or timeout).")
@click.option("--since", help="Oldest start: ISO 8601, Unix seconds, or an age (10m, 2h, 1d).")
@click.option("--until", help="Starts before this (same forms as --since).")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Page size."
)
@click.option("--next", "marker", help="Continue from a previous page's NextMarker.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw response.")
@click.pass_context
def invocations_ls(
    ctx: click.Context,
    name: str,
    errors: bool,
    since: str | None,
    until: str | None,
    limit: int,
    marker: str | None,
    as_json: bool,
) -> None:
    """The recorded invocations of function NAME, newest first."""
    with _client(ctx) as client:
        page = client.invocations(
            name,
            since=since,
            until=until,
            outcomes=ERROR_OUTCOMES if errors else None,
            limit=limit,
            marker=marker,
        )
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    records = page["Invocations"]
    if not records:
        click.echo("No invocations recorded.")
    else:
        Console().print(invocations_table(records))
    if page.get("NextMarker"):
        click.echo(f"More: ember invocations ls {name} --next {page['NextMarker']}", err=True)


@invocations.command(name="show")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the raw response.")
@click.pass_context
def invocations_show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """One invocation by REQUEST_ID: its record, then its log lines."""
    with _client(ctx) as client:
        found = client.invocation(request_id)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    record = found["Invocation"]
    width = max(len(key) for key in record)
    for key, value in record.items():
        click.echo(f"{key.ljust(width)}  {'-' if value is None else value}")
    attempts = found.get("Attempts") or []
    if len(attempts) > 1:
        click.echo(f"{'Attempts'.ljust(width)}  {len(attempts)}")
    click.echo("")
    click.echo(found.get("Logs") or "(no log lines found)", nl=False)


# -- ember top -------------------------------------------------------------------


def quantile(bounds: list[float], counts: list[int], q: float) -> float | None:
    """The ``q`` quantile of a bucket histogram: the upper bound of its bucket."""
    total = sum(counts)
    if total <= 0:
        return None
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if count and seen >= q * total:
            return bounds[min(index, len(bounds) - 1)]
    return bounds[-1]


def top_rows(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per function, what happened between two ``/_ember/top`` snapshots."""
    elapsed = max(1e-3, float(after["Time"]) - float(before["Time"]))
    earlier = {row["FunctionName"]: row for row in before.get("Functions", [])}
    bounds = [float(b) for b in after.get("DurationBoundsMs", [])]
    rows = []
    for row in after.get("Functions", []):
        old = earlier.get(row["FunctionName"], {})

        def delta(key: str, row: dict[str, Any] = row, old: dict[str, Any] = old) -> int:
            return int(row.get(key, 0)) - int(old.get(key, 0))

        old_buckets = old.get("DurationBuckets") or [0] * len(row["DurationBuckets"])
        buckets = [a - b for a, b in zip(row["DurationBuckets"], old_buckets, strict=False)]
        rows.append(
            {
                "function": row["FunctionName"],
                "rate": delta("Invocations") / elapsed,
                "errors": delta("Errors"),
                "throttles": delta("Throttles"),
                "p50": quantile(bounds, buckets, 0.5),
                "p99": quantile(bounds, buckets, 0.99),
                "concurrency": int(row.get("ConcurrentExecutions", 0)),
                "cold_starts": delta("ColdStarts"),
            }
        )
    rows.sort(key=lambda r: (-r["rate"], r["function"]))
    return rows


def top_table(rows: list[dict[str, Any]], node: str) -> Table:
    table = Table(title=f"ember top: node {node}", box=None, header_style="bold", pad_edge=False)
    table.add_column("FUNCTION", overflow="fold")
    for column in ("CALLS/S", "ERRORS", "THROTTLES", "P50 MS", "P99 MS", "CONC", "COLD"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["function"],
            f"{row['rate']:.1f}",
            Text(str(row["errors"]), style="red" if row["errors"] else ""),
            Text(str(row["throttles"]), style="yellow" if row["throttles"] else ""),
            "-" if row["p50"] is None else f"<={row['p50']:g}",
            "-" if row["p99"] is None else f"<={row['p99']:g}",
            str(row["concurrency"]),
            str(row["cold_starts"]),
        )
    return table


@click.command()
@click.option("--once", is_flag=True, help="Print one frame (one interval) and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=REFRESH_SECONDS,
    show_default=True,
    help="Seconds between frames.",
)
@click.pass_context
def top(ctx: click.Context, once: bool, interval: float) -> None:
    """A live view of this node's functions: calls/s, errors, throttles, p50/p99
    duration (bucket bounds), concurrency and cold starts, over each interval."""
    sleep = ctx.obj.sleep
    with _client(ctx) as client:
        before = client.top()
        if once:
            sleep(interval)
            after = client.top()
            Console().print(top_table(top_rows(before, after), str(after.get("Node", ""))))
            return
        frame: RenderableType = Text("waiting for the first interval...")
        with Live(frame, refresh_per_second=4, screen=False) as live:
            try:
                while True:
                    sleep(interval)
                    after = client.top()
                    live.update(top_table(top_rows(before, after), str(after.get("Node", ""))))
                    before = after
            except KeyboardInterrupt:
                return

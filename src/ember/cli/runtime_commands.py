"""`ember runtimes install|ls|rm`: the Node.js majors the server runs functions on.

Registered on the main group by ``main.py``. The server does the work (it
downloads Node into its own data dir); the CLI only asks and reports.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ember.cli.client import EmberClient


@click.group()
def runtimes() -> None:
    """Node.js runtimes of the server: install one from npm, list, remove."""


@runtimes.command(name="install")
@click.argument("runtime", metavar="RUNTIME")
@click.pass_context
def runtimes_install(ctx: click.Context, runtime: str) -> None:
    """Install RUNTIME (nodejs20.x, nodejs22.x, nodejs24.x) on the server: the newest
    Node of that major from the npm registry, checked against its sha512. In a cluster,
    every node installs it too; the command waits for the worker hosts."""
    client: EmberClient = ctx.obj.client()
    click.echo(f"Installing {runtime} on {client.endpoint} (downloading Node from npm)...")
    with client:
        done = client.install_runtime(runtime)
    click.echo(f"Installed {done.get('runtime')}: Node {done.get('version')}")
    workers = done.get("workers")
    if workers is None:
        return
    # A cluster: every worker host installs it too, and the server waited for them.
    for worker, has in sorted(workers.items()):
        click.echo(f"  worker {worker}: {'installed' if has else 'NOT YET'}")
    missing = [worker for worker, has in workers.items() if not has]
    if missing:
        raise click.ClickException(
            f"{len(missing)} worker(s) have not installed {runtime} yet (see their logs); "
            "they keep trying, and `ember workers ls` shows each one's runtimes"
        )


@runtimes.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the raw document.")
@click.pass_context
def runtimes_ls(ctx: click.Context, as_json: bool) -> None:
    """The Node majors the server has, and every runtime it can run."""
    client: EmberClient = ctx.obj.client()
    with client:
        listing = client.runtimes()
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("RUNTIME", "VERSION", "PATH"):
        table.add_column(column, no_wrap=True)
    for entry in listing.get("runtimes") or []:
        table.add_row(str(entry.get("runtime")), str(entry.get("version")), str(entry["path"]))
    Console().print(table)
    click.echo("Available: " + ", ".join(listing.get("available") or []))


@runtimes.command(name="rm")
@click.argument("runtime", metavar="RUNTIME")
@click.pass_context
def runtimes_rm(ctx: click.Context, runtime: str) -> None:
    """Remove an installed RUNTIME (in a cluster, from every node); functions on it fail
    to start until it is back."""
    client: EmberClient = ctx.obj.client()
    with client:
        client.remove_runtime(runtime)
    click.echo(f"Removed {runtime}")

"""The cluster's two roles on the command line: `serve --role frontend` and `ember worker`."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ember.cli import node_options

TOKEN_ENV = "EMBER_CLUSTER_TOKEN"


def cluster_token(path: Path | None) -> bytes | None:
    """The channel's shared secret: the file's content, else EMBER_CLUSTER_TOKEN's."""
    if path is not None:
        try:
            token = path.read_bytes().strip()
        except OSError as exc:
            raise click.BadParameter(str(exc), param_hint="--cluster-token-file") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip().encode()
    if token and len(token) < 16:
        raise click.UsageError("the cluster token must be at least 16 bytes long")
    return token or None


def role_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`serve` options of the cluster roles, handed to the command as ``role_settings``."""

    @click.option(
        "--role",
        type=click.Choice(["all", "frontend"]),
        default="all",
        show_default=True,
        help="all: every component here; frontend: the API, routing and pollers, with "
        "calls run on `ember worker` hosts (needs --database and a cluster token).",
    )
    @click.option(
        "--cluster-token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"The channel's shared secret (or env {TOKEN_ENV}).",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, role: str, cluster_token_file: Path | None, **kwargs: Any) -> Any:
        token = cluster_token(cluster_token_file)
        if role == "frontend" and (token is None or not kwargs.get("database_url")):
            raise click.UsageError(
                f"--role frontend needs --database and a cluster token "
                f"(--cluster-token-file or {TOKEN_ENV})"
            )
        return command(*args, role_settings={"role": role, "cluster_token": token}, **kwargs)

    return wrapper


@click.command()
@click.option("--listen", required=True, help="HOST:PORT the channel listens on.")
@click.option("--advertise", help="HOST:PORT frontends reach it at. [default: --listen]")
@click.option(
    "--database",
    "database_url",
    envvar="EMBER_DATABASE_URL",
    required=True,
    help="The cluster's PostgreSQL URL (membership, and code blobs by default).",
)
@click.option(
    "--blobs",
    envvar="EMBER_BLOBS",
    default="",
    help="Code and layers: postgresql or s3://BUCKET?endpoint=URL. [default: postgresql]",
)
@click.option(
    "--data-dir",
    envvar="EMBER_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".ember-worker"),
    show_default=True,
    help="Unpacked code and layers, stray sandbox output, the worker's id.",
)
@node_options.sandbox
@click.option("--max-sandboxes", type=click.IntRange(min=1), default=512, show_default=True)
@click.option(
    "--memory", type=click.IntRange(min=128), help="MB offered to sandboxes. [default: 3/4 of RAM]"
)
@node_options.keep_alive
@click.option(
    "--endpoint",
    default="http://127.0.0.1:9900",
    show_default=True,
    help="The ember URL functions' SDK calls reach (AWS_ENDPOINT_URL in sandboxes).",
)
@node_options.region
@click.option("--cluster-token-file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def worker(
    listen: str,
    advertise: str | None,
    database_url: str,
    blobs: str,
    data_dir: Path,
    sandbox: str,
    max_sandboxes: int,
    memory: int | None,
    keep_alive: float,
    endpoint: str,
    region: str,
    cluster_token_file: Path | None,
    log_level: str,
) -> None:
    """Run a worker host: sandboxes for the cluster's frontends, no public API."""
    # Imported here so that client commands never load the server.
    from ember.config import Settings
    from ember.errors import StartupRefused
    from ember.worker_node import run, split_address

    token = cluster_token(cluster_token_file)
    if token is None:
        raise click.UsageError(
            f"a worker needs the cluster token (--cluster-token-file or {TOKEN_ENV})"
        )
    if blobs == "local":
        raise click.BadParameter(
            "a worker reads the code the frontends stored: postgresql or s3://...",
            param_hint="--blobs",
        )
    for option, value in (("--listen", listen), ("--advertise", advertise)):
        try:
            if value:
                split_address(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    url = urlsplit(endpoint)
    extra: dict[str, Any] = {} if memory is None else {"worker_memory_mb": memory}
    settings = Settings(
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        data_dir=data_dir,
        region=region,
        database_url=database_url,
        blobs=blobs,
        sandbox=sandbox,
        max_sandboxes=max_sandboxes,
        keep_alive_seconds=keep_alive,
        cluster_token=token,
        listen=listen,
        advertise=advertise or listen,
        **extra,
    )
    try:
        run(settings, log_level=log_level)
    except StartupRefused as refused:
        raise click.ClickException(refused.message) from None

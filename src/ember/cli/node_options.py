"""Options that ``ember serve`` and ``ember worker`` share, defined once: both run
sandboxes, so both take them with the same names, defaults and environment."""

from __future__ import annotations

import click

keep_alive = click.option(
    "--keep-alive",
    envvar="EMBER_KEEP_ALIVE",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds an idle warm sandbox is kept.",
)
sandbox = click.option(
    "--sandbox",
    envvar="EMBER_SANDBOX",
    type=click.Choice(["zygote", "process"]),
    default="zygote",
    show_default=True,
    help="zygote: isolated (needs root); process: no isolation, for development.",
)
region = click.option("--region", envvar="EMBER_REGION", default="us-east-1", show_default=True)

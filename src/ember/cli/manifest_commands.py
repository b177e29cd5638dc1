"""kubectl-style commands over Function manifests: schema, apply, diff, get, describe, delete.

Files are read and checked here (``ember.manifests``), code directories are
zipped here, and what the server needs goes over HTTP to
``/_ember/apis/ember.dev/v1``; nothing of a file set is sent if any of it is
invalid.
"""

from __future__ import annotations

import base64
import copy
import difflib
import hashlib
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML

from ember.cli.client import EmberClient
from ember.cli.dependencies import dependency_layer
from ember.cli.manifest_api import ManifestApi
from ember.manifests import Manifest, ManifestError, check, function_schema, load

KINDS = ("functions", "function", "fn", "functions.ember.dev")
MANAGED_BY = "ember.dev/managed-by"


class InvalidManifests(click.ClickException):
    """Every problem of the file set, one per line, then exit 1."""

    exit_code = 1

    def __init__(self, error: ManifestError) -> None:
        super().__init__(f"{len(error.problems)} problem(s); nothing was applied")
        self.error = error

    def show(self, file: Any = None) -> None:
        for problem in self.error.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"error: InvalidManifest: {self.message}", err=True)


def to_yaml(document: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def read_manifests(paths: tuple[Path, ...]) -> list[Manifest]:
    """Load and check every document of ``paths``; InvalidManifests lists all problems."""
    try:
        manifests = load(list(paths))
        check(manifests)
    except ManifestError as exc:
        raise InvalidManifests(exc) from None
    return manifests


def _package(manifest: Manifest) -> bytes:
    from ember.cli.main import read_package  # main imports this module

    code_path = Path(manifest.body["spec"]["code"]["path"])
    if not code_path.is_absolute():
        code_path = manifest.base_dir / code_path
    return read_package(code_path)


def prepare(manifest: Manifest, client: EmberClient | None, upload: bool) -> dict[str, Any]:
    """The object to send: namespace filled in, the package attached (or only its digest).

    ``requirements`` become a dependency layer (built client-side, interfaces §2)
    appended to ``layers``; without ``client`` (diff) they are left as written.
    """
    body = copy.deepcopy(manifest.body)
    body.pop("status", None)
    metadata = body["metadata"]
    metadata.setdefault("namespace", "default")
    for server_set in ("uid", "generation", "creationTimestamp", "deletionTimestamp"):
        metadata.pop(server_set, None)
    spec = body["spec"]
    code = spec["code"]
    if "path" in code:
        data = _package(manifest)
        code["sha256"] = hashlib.sha256(data).hexdigest()
        if upload:
            code["zipFile"] = base64.b64encode(data).decode()
    if spec.get("requirements") and client is not None:
        try:
            arn = dependency_layer(client, list(spec["requirements"]), spec["runtime"])
        except NotImplementedError as exc:
            raise click.ClickException(
                f"{manifest.source}: spec.requirements needs dependency layers ({exc})"
            ) from None
        spec["layers"] = [*spec.get("layers", []), arn]
    return body


def _client(ctx: click.Context) -> EmberClient:
    return ctx.find_root().obj.client()  # type: ignore[no-any-return]


@click.command()
def schema() -> None:
    """Print the JSON Schema of the Function manifest (draft 2020-12)."""
    click.echo(json.dumps(function_schema(), indent=2))


@click.command()
@click.option(
    "-f", "--filename", "paths", multiple=True, required=True, type=click.Path(path_type=Path)
)
@click.option("--prune", is_flag=True, help="Delete objects matching -l that the files lack.")
@click.option("-l", "--selector", help="Label selector for --prune, e.g. app=shop.")
@click.option(
    "--dry-run", is_flag=True, help="Validate and show what would change; change nothing."
)
@click.pass_context
def apply(
    ctx: click.Context, paths: tuple[Path, ...], prune: bool, selector: str | None, dry_run: bool
) -> None:
    """Create or update the functions of PATH (files or directories of YAML)."""
    if prune and not selector:
        raise click.UsageError("--prune needs a label selector (-l key=value)")
    manifests = read_manifests(paths)
    suffix = " (dry run)" if dry_run else ""
    with _client(ctx) as client:
        api = ManifestApi(client)
        bodies = [prepare(manifest, client, upload=not dry_run) for manifest in manifests]
        # A dry run of the whole set first (no packages sent): what the server refuses
        # (a name owned by another namespace, an object being deleted) stops everything.
        planned = []
        for body in bodies:
            light = {**body, "spec": {**body["spec"], "code": dict(body["spec"]["code"])}}
            light["spec"]["code"].pop("zipFile", None)
            planned.append(api.apply(light, dry_run=True)[0])
        for body, action in zip(bodies, planned, strict=True):
            if not dry_run and action != "unchanged":
                action, _ = api.apply(body)
            click.echo(f"function.ember.dev/{body['metadata']['name']} {action}{suffix}")
        if prune:
            keep = {(b["metadata"]["namespace"], b["metadata"]["name"]) for b in bodies}
            for found in api.list(None, selector):
                metadata = found["metadata"]
                key = (metadata["namespace"], metadata["name"])
                if key in keep or metadata.get("annotations", {}).get(MANAGED_BY):
                    continue
                if not dry_run:
                    api.delete(*key)
                click.echo(f"function.ember.dev/{key[1]} pruned{suffix}")


def _comparable(body: dict[str, Any] | None) -> dict[str, Any]:
    if body is None:
        return {}
    metadata = body["metadata"]
    return {
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata.get("namespace", "default"),
            "labels": metadata.get("labels") or {},
            "annotations": metadata.get("annotations") or {},
        },
        "spec": body["spec"],
    }


@click.command()
@click.option(
    "-f", "--filename", "paths", multiple=True, required=True, type=click.Path(path_type=Path)
)
@click.pass_context
def diff(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Show what `apply` would change, as a unified diff; exit 1 when anything would."""
    manifests = read_manifests(paths)
    changed = False
    with _client(ctx) as client:
        api = ManifestApi(client)
        for manifest in manifests:
            local = prepare(manifest, None, upload=False)
            namespace, name = local["metadata"]["namespace"], local["metadata"]["name"]
            live = to_yaml(_comparable(api.get(namespace, name))).splitlines(keepends=True)
            if live == ["{}\n"]:
                live = []
            wanted = to_yaml(_comparable(local)).splitlines(keepends=True)
            lines = list(
                difflib.unified_diff(live, wanted, f"live/{namespace}/{name}", f"{manifest.source}")
            )
            changed = changed or bool(lines)
            click.echo("".join(lines), nl=False)
    if changed:
        sys.exit(1)


def _condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (body.get("status") or {}).get("conditions", []):
        if condition["type"] == kind:
            return dict(condition)
    return None


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00").replace("+0000", "+00:00"))
    except ValueError:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _ready(body: dict[str, Any]) -> str:
    if (body["metadata"].get("annotations") or {}).get(MANAGED_BY):
        return "-"
    condition = _condition(body, "Ready")
    if condition is None:
        return "Unknown"
    current = condition.get("observedGeneration") == body["metadata"].get("generation")
    return condition["status"] if current else "Unknown"


def functions_table(items: list[dict[str, Any]], wide: bool) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ["NAME", "RUNTIME", "READY", "VERSION", "AGE"]
    if wide:
        columns = ["NAMESPACE", *columns, "GENERATION", "MEMORY", "TIMEOUT", "LABELS"]
    for column in columns:
        table.add_column(column, no_wrap=True)
    now = datetime.now(UTC)
    for body in items:
        metadata, spec = body["metadata"], body["spec"]
        row = [
            metadata["name"],
            str(spec.get("runtime", "")),
            _ready(body),
            "$LATEST",
            _age(metadata.get("creationTimestamp"), now),
        ]
        if wide:
            labels = ",".join(f"{k}={v}" for k, v in sorted((metadata.get("labels") or {}).items()))
            row = [
                metadata.get("namespace", "default"),
                *row,
                str(metadata.get("generation", "-")),
                f"{spec.get('memoryMB', 128)} MB",
                f"{spec.get('timeoutSeconds', 3)} s",
                labels or "-",
            ]
        table.add_row(*row)
    return table


def get_functions(
    client: EmberClient, name: str | None, namespace: str | None, selector: str | None, output: str
) -> None:
    """`ember get functions`: manifest objects and Lambda-API functions alike."""
    items = ManifestApi(client).list(namespace, selector)
    if name is not None:
        items = [item for item in items if item["metadata"]["name"] == name]
        if not items:
            raise click.ClickException(f'functions.ember.dev "{name}" not found')
    if output == "json":
        document: Any = items[0] if name else {"kind": "FunctionList", "items": items}
        click.echo(json.dumps(document, indent=2))
    elif output == "yaml":
        click.echo(
            to_yaml(items[0] if name else {"kind": "FunctionList", "items": items}), nl=False
        )
    elif not items:
        click.echo("No functions.")
    else:
        Console(width=200).print(functions_table(items, output == "wide"))


@click.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.pass_context
def describe(ctx: click.Context, kind: str, name: str, namespace: str) -> None:
    """Show function NAME: metadata, spec, status conditions and recent events."""
    with _client(ctx) as client:
        body = ManifestApi(client).get(namespace, name)
        if body is None:
            found = [
                i for i in ManifestApi(client).list(namespace) if i["metadata"]["name"] == name
            ]
            if not found:
                raise click.ClickException(f'functions.ember.dev "{name}" not found')
            body = found[0]
    metadata = body["metadata"]
    click.echo(f"Name:         {metadata['name']}")
    click.echo(f"Namespace:    {metadata.get('namespace', 'default')}")
    labels = ", ".join(f"{k}={v}" for k, v in sorted((metadata.get("labels") or {}).items()))
    click.echo(f"Labels:       {labels or '<none>'}")
    click.echo(f"Generation:   {metadata.get('generation', '-')}")
    click.echo(f"Created:      {metadata.get('creationTimestamp', '-')}")
    if metadata.get("deletionTimestamp"):
        click.echo(f"Deleting:     since {metadata['deletionTimestamp']}")
    click.echo("Spec:")
    spec = copy.deepcopy(body["spec"])
    click.echo("".join(f"  {line}\n" for line in to_yaml(spec).splitlines()), nl=False)
    status = body.get("status") or {}
    click.echo(f"Status:       observedGeneration {status.get('observedGeneration', '-')}")
    conditions = status.get("conditions") or []
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TYPE", "STATUS", "REASON", "MESSAGE"):
        table.add_column(column)
    for condition in conditions:
        table.add_row(
            condition["type"], condition["status"], condition["reason"], condition["message"]
        )
    console = Console(width=200)
    if conditions:
        console.print(table)
    click.echo("Events (condition transitions, newest first):")
    for condition in sorted(conditions, key=lambda c: c["lastTransitionTime"], reverse=True):
        click.echo(
            f"  {condition['lastTransitionTime']}  {condition['type']}={condition['status']}"
            f"  {condition['reason']}"
        )
    if not conditions:
        click.echo("  <none>")


@click.command()
@click.argument("target", nargs=-1)
@click.option("-f", "--filename", "paths", multiple=True, type=click.Path(path_type=Path))
@click.option("-n", "--namespace", default="default", show_default=True)
@click.pass_context
def delete(
    ctx: click.Context, target: tuple[str, ...], paths: tuple[Path, ...], namespace: str
) -> None:
    """Delete the functions of -f PATH, or `delete function NAME`."""
    keys: list[tuple[str, str]] = []
    if paths:
        keys = [manifest.key for manifest in read_manifests(paths)]
    elif len(target) == 2 and target[0] in KINDS:
        keys = [(namespace, target[1])]
    elif len(target) == 1:
        keys = [(namespace, target[0])]
    else:
        raise click.UsageError("use `ember delete -f PATH` or `ember delete function NAME`")
    with _client(ctx) as client:
        api = ManifestApi(client)
        for key in keys:
            api.delete(*key)
            click.echo(f"function.ember.dev/{key[1]} deleted")


COMMANDS = [schema, apply, diff, describe, delete]

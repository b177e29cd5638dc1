"""The `ember` command line: `serve` starts the platform, the rest drive its API.

Every command except `serve` is a plain HTTP client of the server (see
`client.py`). Errors print one line, `error: <Code>: <message>`, to stderr and
exit 1; usage errors are click's and exit 2.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from ember import __version__
from ember.cli import (
    account_commands,
    audit_commands,
    credentials,
    db_commands,
    dependencies,
    manifest_commands,
    node_dependencies,
    node_options,
    observe_commands,
    queue_commands,
    roles,
    runtime_commands,
    token_commands,
    tool_commands,
    worker_commands,
)
from ember.cli.client import ApiError, EmberClient, SigV4
from ember.cli.zips import deterministic_zip

DEFAULT_ENDPOINT = "http://127.0.0.1:9900"
DEFAULT_RUNTIME = "python3.11"
DEFAULT_ROLE = "arn:aws:iam::000000000000:role/ember"
FOLLOW_INTERVAL_SECONDS = 0.5
SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
SKIPPED_SUFFIXES = (".pyc",)
# Zip timestamps are pinned so the same tree always hashes to the same CodeSha256.

ClientFactory = Callable[[str], EmberClient]


@dataclass
class CliState:
    """What every command shares. Tests pass their own via `CliRunner.invoke(obj=...)`.

    Without a `client_factory`, clients sign with the credentials `lookup`
    finds (see `credentials.py`); a factory builds clients as it likes.
    """

    client_factory: ClientFactory | None = None
    sleep: Callable[[float], None] = time.sleep
    endpoint: str = field(default=DEFAULT_ENDPOINT)
    lookup: credentials.Lookup = field(default_factory=credentials.Lookup)

    def client(self) -> EmberClient:
        """A new client of the selected endpoint; close it (use `with`)."""
        if self.client_factory is not None:
            return self.client_factory(self.endpoint)
        return EmberClient(self.endpoint, auth=SigV4(self.credentials()))

    def credentials(self) -> credentials.Credentials:
        try:
            return credentials.find(self.lookup)
        except credentials.CredentialsError as exc:
            raise Failure("NoCredentials", str(exc)) from exc


class Failure(click.ClickException):
    """A one-line, exit-1 error: `error: <code>: <message>` on stderr."""

    exit_code = 1

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.code}: {self.message}", err=True)


class EmberGroup(click.Group):
    """Turns API and local I/O errors from any command into a one-line Failure."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise Failure(exc.code, exc.message) from exc
        except OSError as exc:
            raise Failure(type(exc).__name__, str(exc)) from exc


# -- packaging ---------------------------------------------------------------


def iter_package_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield (archive name, path) for every file under `root`, sorted by name.

    Skips `__pycache__` and `.git` directories and `.pyc` files: they are
    build or VCS artefacts, and would make the hash depend on local state.
    """
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for filename in filenames:
            if filename.endswith(SKIPPED_SUFFIXES):
                continue
            path = Path(dirpath, filename)
            found.append((path.relative_to(root).as_posix(), path))
    yield from sorted(found)


def zip_directory(root: Path) -> bytes:
    """Zip `root` in memory, deterministically: same tree, same bytes.

    Order, timestamps and permissions are fixed (only the executable bit is
    kept), so the server's CodeSha256 changes only when the contents do.
    """
    return deterministic_zip(iter_package_files(root))


def read_package(path: Path) -> bytes:
    """The deployment zip for PATH: a directory is zipped, a .zip file is sent as is."""
    if path.is_dir():
        if not any(True for _ in iter_package_files(path)):
            raise Failure("InvalidPackage", f"nothing to deploy in {path}")
        return zip_directory(path)
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        return path.read_bytes()
    raise Failure("InvalidPackage", f"{path} is neither a directory nor a .zip file")


# -- option parsing ----------------------------------------------------------


def parse_networks(
    _ctx: click.Context | None, _param: click.Parameter | None, values: tuple[str, ...]
) -> tuple[str, ...]:
    """Repeated ``--trusted-proxy`` CIDRs (or addresses), normalised (``10.0.0.7/24`` is
    ``10.0.0.0/24``): a typo must not start a server that silently trusts nobody."""
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise click.BadParameter(f"expected an address or CIDR, got {value!r}") from None
    return tuple(networks)


def parse_brokers(
    _ctx: click.Context | None, _param: click.Parameter | None, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """Repeated ``--broker NAME=amqp://...``; the URL is never echoed (it may hold a
    password). A later NAME wins."""
    brokers: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or ":" in name:
            raise click.BadParameter("expected NAME=amqp://USER:PASSWORD@HOST:PORT")
        if not url.startswith(("amqp://", "amqps://", "nats://", "tls://")):
            raise click.BadParameter(
                f"broker {name}: the URL must start with amqp://, amqps:// (RabbitMQ) "
                "or nats://, tls:// (NATS JetStream)"
            )
        brokers[name] = url
    return tuple(brokers.items())


def parse_env(
    _ctx: click.Context | None, _param: click.Parameter | None, values: tuple[str, ...]
) -> dict[str, str] | None:
    """Parse repeated `--env K=V` into a dict (None if none were given).

    Splits on the first "=", so values may contain "="; a later K wins.
    """
    if not values:
        return None
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        env[key.strip()] = value
    return env


def validate_json(payload: bytes, source: str) -> bytes:
    """Return `payload` if it is JSON; otherwise a usage error naming `source`."""
    try:
        json.loads(payload)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=source) from exc
    return payload


# -- output helpers ----------------------------------------------------------


def describe(config: dict[str, Any]) -> str:
    """`python3.12, 128 MB, 3 s` for a function configuration."""
    return f"{config.get('Runtime')}, {config.get('MemorySize')} MB, {config.get('Timeout')} s"


def function_error_summary(function_error: str, payload: bytes) -> str:
    """One line for a failed invocation, from Lambda's error document if there is one."""
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    if isinstance(document, dict) and "errorMessage" in document:
        kind = document.get("errorType", "Error")
        return f"{function_error}: {kind}: {document['errorMessage']}"
    return f"{function_error}: the function failed"


def functions_table(functions: list[dict[str, Any]]) -> Table:
    """The `ember ls` table, sorted by name."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("NAME", no_wrap=True)
    table.add_column("RUNTIME")
    table.add_column("MEMORY", justify="right")
    table.add_column("TIMEOUT", justify="right")
    table.add_column("LAST MODIFIED")
    for fn in sorted(functions, key=lambda f: str(f.get("FunctionName", ""))):
        table.add_row(
            str(fn.get("FunctionName", "")),
            str(fn.get("Runtime", "")),
            f"{fn.get('MemorySize', '')} MB",
            f"{fn.get('Timeout', '')} s",
            str(fn.get("LastModified", "")),
        )
    return table


def _state(ctx: click.Context) -> CliState:
    return ctx.ensure_object(CliState)


# -- commands ----------------------------------------------------------------


@click.group(cls=EmberGroup)
@click.option(
    "--endpoint",
    envvar="EMBER_ENDPOINT",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    help="URL of the ember server.",
)
@click.option(
    "--profile",
    envvar="AWS_PROFILE",
    help="Profile of AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) to sign with.",
)
@click.option(
    "--region",
    envvar="AWS_REGION",
    help="Region to sign for [default: the credentials' region, else us-east-1].",
)
@click.option(
    "--data-dir",
    envvar="EMBER_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data dir of the server, whose credentials file is used [default: .ember-data].",
)
@click.version_option(__version__, prog_name="ember")
@click.pass_context
def main(
    ctx: click.Context,
    endpoint: str,
    profile: str | None,
    region: str | None,
    data_dir: Path | None,
) -> None:
    """ember: a self-hostable serverless platform that speaks Lambda's API.

    Requests are signed (AWS SigV4) with the first credentials found in:
    AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; --profile in
    AWS_SHARED_CREDENTIALS_FILE; EMBER_CREDENTIALS; <data dir>/credentials;
    ~/.aws/credentials [ember].
    """
    state = _state(ctx)
    state.endpoint = endpoint
    state.lookup = credentials.Lookup(profile=profile, region=region, data_dir=data_dir)


main.add_command(queue_commands.dlq)
main.add_command(queue_commands.queue)
for _command in manifest_commands.COMMANDS:
    main.add_command(_command)
main.add_command(tool_commands.tool)
main.add_command(tool_commands.mcp)
main.add_command(token_commands.tokens)
main.add_command(db_commands.db)
main.add_command(audit_commands.audit)
main.add_command(account_commands.accounts)
main.add_command(account_commands.keys)
main.add_command(roles.worker)
main.add_command(worker_commands.workers)
main.add_command(observe_commands.invocations)
main.add_command(observe_commands.top)
main.add_command(runtime_commands.runtimes)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9900, show_default=True)
@click.option(
    "--data-dir",
    envvar="EMBER_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".ember-data"),
    show_default=True,
    help="Where metadata, code and logs are kept.",
)
@node_options.region
@click.option("--account-id", envvar="EMBER_ACCOUNT_ID", default="000000000000", show_default=True)
@click.option(
    "--read-timeout",
    envvar="EMBER_READ_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a request head may take from its first byte, and a request body may "
    "send nothing, before the connection is closed.",
)
@node_options.keep_alive
@node_options.sandbox
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
    default="info",
    show_default=True,
)
@click.option(
    "--account-concurrency",
    envvar="EMBER_ACCOUNT_CONCURRENCY",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Concurrent executions of each account (reserved concurrency is carved out of it).",
)
@click.option(
    "--account-max-functions",
    envvar="EMBER_ACCOUNT_MAX_FUNCTIONS",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Functions each account may have.",
)
@click.option(
    "--account-code-storage",
    "account_code_storage",
    envvar="EMBER_ACCOUNT_CODE_STORAGE",
    type=click.IntRange(min=1),
    default=80_530_636_800,
    show_default=True,
    help="Bytes of code (functions, versions, layers) each account may store.",
)
@click.option(
    "--throttle-backend",
    envvar="EMBER_THROTTLE_BACKEND",
    type=click.Choice(["memory", "redis"]),
    default="memory",
    show_default=True,
    help="Where rate limits and concurrency leases live; redis: shared by every frontend.",
)
@click.option(
    "--redis-url",
    envvar="EMBER_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="The Redis of --throttle-backend redis.",
)
@click.option(
    "--database",
    "database_url",
    envvar="EMBER_DATABASE_URL",
    help="PostgreSQL URL (postgresql://USER@HOST:PORT/DB): cluster mode, every node "
    "sharing it. [default: embedded, SQLite in the data dir]",
)
@click.option(
    "--blobs",
    envvar="EMBER_BLOBS",
    default="",
    help="Code and layers: local, postgresql or s3://BUCKET?endpoint=URL. "
    "[default: postgresql with --database, else local]",
)
@click.option(
    "--code-s3-endpoint",
    envvar="EMBER_CODE_S3_ENDPOINT",
    default="",
    help="S3-compatible endpoint (http(s)://HOST:PORT) of your buckets: CreateFunction "
    "and UpdateFunctionCode take S3Bucket/S3Key there, read with the AWS_* credentials "
    "of this process. [default: code inline (ZipFile) only]",
)
@click.option(
    "--throttle-unavailable",
    envvar="EMBER_THROTTLE_UNAVAILABLE",
    type=click.Choice(["deny", "allow"]),
    default="deny",
    show_default=True,
    help="While Redis cannot be reached: deny every call (503), or allow calls "
    "without rate limits, concurrency counted per node.",
)
@click.option(
    "--schedule-minute-seconds",
    envvar="EMBER_SCHEDULE_MINUTE_SECONDS",
    type=click.FloatRange(min=0.05),
    default=60.0,
    show_default=True,
    help="Length of a minute for rate(...) schedules; for tests only.",
)
@click.option(
    "--mcp-token",
    envvar="EMBER_MCP_TOKEN",
    help="A static bearer token for /mcp, acting for the default account (required on "
    "/mcp then, even with --auth none).",
)
@click.option(
    "--mcp-oauth-issuer",
    envvar="EMBER_MCP_OAUTH_ISSUER",
    help="An OAuth 2.1 authorization server (URL) whose JWT access tokens /mcp accepts.",
)
@click.option(
    "--mcp-resource",
    envvar="EMBER_MCP_RESOURCE",
    help="The URL clients reach /mcp at, when behind a proxy: the audience of OAuth "
    "tokens. [default: http://HOST:PORT/mcp]",
)
@click.option(
    "--allow-host",
    "--mcp-allow-host",
    "allowed_hosts",
    multiple=True,
    help="Another host name the API and /mcp accept in Host/Origin, e.g. behind a proxy "
    "(repeatable; loopback and --host always are; others get 421/403).",
)
@click.option(
    "--url-domain",
    envvar="EMBER_URL_DOMAIN",
    default="",
    help="Domain of host-style function URLs, ID.lambda-url.REGION.DOMAIN; given, "
    "FunctionUrl uses that form. [default: served under localhost, FunctionUrl /url/NAME/]",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    callback=parse_networks,
    help="A proxy (CIDR) whose X-Forwarded-For names the client (repeatable; none by "
    "default): the client keys rate limits without --auth, and URL events' sourceIp.",
)
@click.option(
    "--audit-retention",
    envvar="EMBER_AUDIT_RETENTION",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Entries the audit log of control-plane changes keeps (the newest).",
)
@click.option(
    "--auth",
    envvar="EMBER_AUTH",
    type=click.Choice(["sigv4", "none"]),
    default="sigv4",
    show_default=True,
    help="sigv4: every API request must be signed with an access key (the first start "
    "writes the root's to DATA_DIR/credentials) and /mcp needs a bearer token; none: "
    "anyone is the root (loopback only, for development).",
)
@click.option(
    "--broker",
    "brokers",
    envvar="EMBER_BROKERS",
    multiple=True,
    callback=parse_brokers,
    help="A broker event source mappings may name (repeatable): NAME=amqp://USER:PASS@HOST:PORT "
    "(RabbitMQ; EventSourceArn arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID) or "
    "NAME=nats://HOST:4222 (NATS JetStream; arn:ember:nats:REGION:ACCOUNT:stream:NAME:STREAM). "
    "Credentials stay in the server: never logged nor answered.",
)
@click.option(
    "--master-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Base64 key sealing the access keys at rest (EMBER_MASTER_KEY wins). "
    "[default: DATA_DIR/master.key, made on first start]",
)
@roles.role_options
@queue_commands.async_serve_options
@observe_commands.serve_options
def serve(
    host: str,
    port: int,
    data_dir: Path,
    region: str,
    account_id: str,
    read_timeout: float,
    keep_alive: float,
    sandbox: str,
    log_level: str,
    account_concurrency: int,
    account_max_functions: int,
    account_code_storage: int,
    throttle_backend: str,
    redis_url: str,
    database_url: str | None,
    blobs: str,
    code_s3_endpoint: str,
    throttle_unavailable: str,
    schedule_minute_seconds: float,
    mcp_token: str | None,
    mcp_oauth_issuer: str | None,
    mcp_resource: str | None,
    allowed_hosts: tuple[str, ...],
    url_domain: str,
    trusted_proxies: tuple[str, ...],
    audit_retention: int,
    auth: str,
    master_key_file: Path | None,
    brokers: tuple[tuple[str, str], ...],
    async_settings: dict[str, Any],
    role_settings: dict[str, Any],
    observe_settings: dict[str, Any],
) -> None:
    """Run the ember server in the foreground."""
    # Imported here so that client commands never load the server.
    from ember.config import Settings
    from ember.errors import StartupRefused
    from ember.server import serve as run_server

    settings = Settings(
        host=host,
        port=port,
        data_dir=data_dir,
        region=region,
        account_id=account_id,
        read_timeout_seconds=read_timeout,
        keep_alive_seconds=keep_alive,
        sandbox=sandbox,
        account_concurrency=account_concurrency,
        account_max_functions=account_max_functions,
        account_code_storage_bytes=account_code_storage,
        throttle_backend=throttle_backend,
        redis_url=redis_url,
        database_url=database_url or None,
        blobs=blobs,
        code_s3_endpoint=code_s3_endpoint or None,
        throttle_unavailable=throttle_unavailable,
        schedule_minute_seconds=schedule_minute_seconds,
        mcp_token=mcp_token or None,
        mcp_oauth_issuer=mcp_oauth_issuer or None,
        mcp_resource=mcp_resource or None,
        allowed_hosts=allowed_hosts,
        url_domain=url_domain,
        trusted_proxies=trusted_proxies,
        audit_retention=audit_retention,
        auth=auth,
        master_key_file=master_key_file,
        brokers=brokers,
        **async_settings,
        **role_settings,
        **observe_settings,
    )
    try:
        run_server(settings, log_level=log_level)
    except StartupRefused as refused:
        # Refusals raised while building (the queue's file opens there) rather
        # than in the lifespan: one line for the operator too, no traceback.
        raise click.ClickException(refused.message) from None


@main.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--handler", help="module.function, e.g. app.handler (optional for provided* runtimes)."
)
@click.option("--runtime", help=f"Runtime identifier [default on create: {DEFAULT_RUNTIME}].")
@click.option("--memory", type=click.IntRange(min=1), help="Memory in MB.")
@click.option("--timeout", type=click.IntRange(min=1), help="Timeout in seconds.")
@click.option("--env", "env", multiple=True, callback=parse_env, help="KEY=VALUE, repeatable.")
@click.option("--role", help=f"Execution role ARN [default on create: {DEFAULT_ROLE}].")
@click.option("--description")
@click.option(
    "--layer", "layers", multiple=True, help="Layer version ARN to attach, repeatable, in order."
)
@click.pass_context
def deploy(
    ctx: click.Context,
    name: str,
    path: Path,
    handler: str | None,
    runtime: str | None,
    memory: int | None,
    timeout: int | None,
    env: dict[str, str] | None,
    role: str | None,
    description: str | None,
    layers: tuple[str, ...],
) -> None:
    """Create function NAME from PATH (a directory or a .zip), or update it if it exists.

    On update, only the options given (and --handler) change. A directory with a
    requirements.txt (or pyproject.toml dependencies) gets them installed by pip
    into a layer (reused while they do not change), attached ahead of its layers.
    A directory with a package.json gets `npm ci --omit=dev` run on a copy, and its
    node_modules zipped with the code (runtime nodejs22.x unless --runtime).
    """
    node_project = node_dependencies.is_node_project(path)
    package = read_node_package(path) if node_project else read_package(path)
    options: dict[str, Any] = {}
    for key, value in (
        ("Handler", handler),
        ("Runtime", runtime),
        ("MemorySize", memory),
        ("Timeout", timeout),
        ("Role", role),
        ("Description", description),
    ):
        if value is not None:
            options[key] = value
    if env is not None:
        options["Environment"] = {"Variables": env}
    with _state(ctx).client() as client:
        existing = function_configuration(client, name)
        if node_project and runtime is None and existing is None:
            options["Runtime"] = node_dependencies.DEFAULT_NODE_RUNTIME
        attached = deploy_layers(client, path, options, existing, list(layers))
        if attached is not None:
            options["Layers"] = attached
        if existing is not None:
            client.update_function_code(name, package)
            config = client.update_function_configuration(name, options)
            action = "updated"
        else:
            config = client.create_function(create_body(name, package, options))
            action = "created"
    click.echo(f"deployed {name} ({describe(config)}) sha256={config.get('CodeSha256')} ({action})")


def read_node_package(path: Path) -> bytes:
    """A Node project's zip: its files and the production node_modules npm installed."""
    try:
        with node_dependencies.installed_copy(path) as built:
            return zip_directory(built)
    except node_dependencies.NpmError as exc:
        raise Failure("DependencyInstallFailed", str(exc)) from exc


def function_configuration(client: EmberClient, name: str) -> dict[str, Any] | None:
    """NAME's configuration, or None when it does not exist (one GetFunction)."""
    try:
        return dict(client.get_function(name).get("Configuration") or {})
    except ApiError as exc:
        if exc.code == "ResourceNotFoundException" or exc.status == 404:
            return None
        raise


def deploy_layers(
    client: EmberClient,
    path: Path,
    options: dict[str, Any],
    existing: dict[str, Any] | None,
    layers: list[str],
) -> list[str] | None:
    """The Layers to deploy with: the dependency layer first, then the function's own.

    None means "leave Layers as they are" (no requirements, no --layer, and no
    dependency layer to take off).
    """
    current = [str(layer["Arn"]) for layer in (existing or {}).get("Layers") or []]
    own = layers or [arn for arn in current if f":layer:{dependencies.PREFIX}" not in arn]
    requirements = dependencies.find_requirements(path) if path.is_dir() else None
    if requirements is None:
        return own if (layers or own != current) else None
    runtime = str(options.get("Runtime") or (existing or {}).get("Runtime") or DEFAULT_RUNTIME)
    try:
        deps = dependencies.dependency_layer(client, requirements, runtime, workdir=path)
    except dependencies.DependencyError as exc:
        raise Failure("DependencyInstallFailed", str(exc)) from exc
    return [deps, *own]


def create_body(name: str, package: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """CreateFunction's body: the given options over the CLI's defaults."""
    return {
        "FunctionName": name,
        "Runtime": DEFAULT_RUNTIME,
        "Role": DEFAULT_ROLE,
        **options,
        "Code": {"ZipFile": base64.b64encode(package).decode("ascii")},
    }


@main.command()
@click.argument("name")
@click.option("--payload", help="Event as a JSON string [default: {}].")
@click.option(
    "--payload-file", type=click.File("rb"), help="Read the event from a file ('-': stdin)."
)
@click.option("--log", is_flag=True, help="Print the invocation's log tail to stderr.")
@click.option("--async", "run_async", is_flag=True, help="Queue the event (InvocationType Event).")
@click.pass_context
def invoke(
    ctx: click.Context,
    name: str,
    payload: str | None,
    payload_file: IO[bytes] | None,
    log: bool,
    run_async: bool,
) -> None:
    """Invoke NAME synchronously and print its response.

    Exits 1 if the function failed (the error document is still printed).
    With --async, print the accepted event's request id instead.
    """
    if payload is not None and payload_file is not None:
        raise click.UsageError("give either --payload or --payload-file, not both")
    if payload_file is not None:
        event = validate_json(payload_file.read(), "--payload-file")
    else:
        event = validate_json((payload or "{}").encode("utf-8"), "--payload")
    if run_async:
        with _state(ctx).client() as client:
            click.echo(f"queued {name}: request id {client.invoke_async(name, event)}")
        return
    with _state(ctx).client() as client:
        result = client.invoke(name, event, log_tail=log)
    if log and result.log_result:
        click.echo(result.log_result.rstrip("\n"), err=True)
    click.echo(result.payload)
    if result.function_error:
        summary = function_error_summary(result.function_error, result.payload)
        click.echo(f"error: {summary}", err=True)
        ctx.exit(1)


@main.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the raw ListFunctions list.")
@click.pass_context
def list_functions(ctx: click.Context, as_json: bool) -> None:
    """List functions."""
    with _state(ctx).client() as client:
        functions = client.list_functions()
    if as_json:
        click.echo(json.dumps(functions, indent=2))
    elif not functions:
        click.echo("No functions.")
    else:
        Console().print(functions_table(functions))


@main.command()
@click.argument("name")
@click.argument("function", required=False)
@click.option("-n", "--namespace", help="Only this namespace [default: all].")
@click.option("-l", "--selector", help="Label selector, e.g. app=shop.")
@click.option(
    "-o", "--output", type=click.Choice(["table", "wide", "yaml", "json"]), default="table"
)
@click.pass_context
def get(
    ctx: click.Context,
    name: str,
    function: str | None,
    namespace: str | None,
    selector: str | None,
    output: str,
) -> None:
    """`get functions [NAME]`: list as kubectl does; `get NAME`: GetFunction as JSON."""
    with _state(ctx).client() as client:
        if name in manifest_commands.KINDS:
            manifest_commands.get_functions(client, function, namespace, selector, output)
        else:
            click.echo(json.dumps(client.get_function(name), indent=2))


@main.command()
@click.argument("name")
@click.option("--egress/--no-egress", default=None, help="Allow network beyond loopback.")
@click.option(
    "--isolation",
    type=click.Choice(["standard", "strong"]),
    help="standard: namespaces + seccomp; strong: gVisor.",
)
@click.pass_context
def sandbox(ctx: click.Context, name: str, egress: bool | None, isolation: str | None) -> None:
    """Show or change NAME's sandbox settings (ember extension)."""
    changes: dict[str, Any] = {}
    if egress is not None:
        changes["Egress"] = egress
    if isolation is not None:
        changes["Isolation"] = isolation
    with _state(ctx).client() as client:
        settings = client.sandbox_settings(name, changes or None)
    click.echo(
        f"{name}: egress {'on' if settings['Egress'] else 'off'}, isolation {settings['Isolation']}"
    )


@main.command()
@click.argument("name")
@click.pass_context
def rm(ctx: click.Context, name: str) -> None:
    """Delete function NAME."""
    with _state(ctx).client() as client:
        client.delete_function(name)
    click.echo(f"deleted {name}")


@main.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.pass_context
def logs(ctx: click.Context, name: str, follow: bool) -> None:
    """Print NAME's recent logs; with --follow, keep polling for new ones."""
    state = _state(ctx)
    try:
        with state.client() as client:
            text, offset = client.logs(name)
            click.echo(text, nl=False)
            while follow:
                state.sleep(FOLLOW_INTERVAL_SECONDS)
                text, offset = client.logs(name, since=offset)
                click.echo(text, nl=False)
    except KeyboardInterrupt:
        # Ctrl-C is how --follow is meant to end, so it is not an error.
        return


# -- rate limits ---------------------------------------------------------------

ALGORITHM_CHOICES = [
    "fixed-window",
    "sliding-log",
    "sliding-window",
    "token-bucket",
    "leaky-bucket",
]


@main.group()
def limit() -> None:
    """Rate limits per function (all callers) or per caller, and reserved concurrency."""


@limit.command(name="set")
@click.argument("name")
@click.option(
    "--algorithm",
    type=click.Choice(ALGORITHM_CHOICES),
    default="token-bucket",
    show_default=True,
)
@click.option("--rate", required=True, help="LIMIT/UNIT, e.g. 100/s, 6000/m, 10/5s.")
@click.option("--burst", type=click.IntRange(min=1), help="Bucket size (bucket algorithms).")
@click.option(
    "--scope",
    type=click.Choice(["function", "caller"]),
    default="function",
    show_default=True,
    help="function: one limit for all callers; caller: one per access key (or address).",
)
@click.pass_context
def limit_set(
    ctx: click.Context, name: str, algorithm: str, rate: str, burst: int | None, scope: str
) -> None:
    """Attach a rate limit to function NAME (replacing the one of the same scope)."""
    policy: dict[str, Any] = {"scope": scope, "algorithm": algorithm, "rate": rate}
    if burst is not None:
        policy["burst"] = burst
    with _state(ctx).client() as client:
        client.set_limit(name, policy)
    extra = f", burst {burst}" if burst is not None else ""
    click.echo(f"limited {name}: {algorithm} {rate}{extra} per {scope}")


def limits_table(rows: list[dict[str, Any]]) -> Table:
    """The `ember limit ls` table: one row per policy or reservation."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "SCOPE", "ALGORITHM", "RATE", "BURST", "RESERVED"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        name = str(row.get("FunctionName", ""))
        reserved = row.get("ReservedConcurrentExecutions")
        reserved_text = "" if reserved is None else str(reserved)
        policies = row.get("RateLimits") or []
        for policy in policies:
            burst = policy.get("burst")
            table.add_row(
                name,
                str(policy.get("scope")),
                str(policy.get("algorithm")),
                str(policy.get("rate")),
                "" if burst is None else str(burst),
                reserved_text,
            )
        if not policies:
            table.add_row(name, "", "", "", "", reserved_text)
    return table


@limit.command(name="ls")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the raw documents.")
@click.pass_context
def limit_ls(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List rate limits and reserved concurrency (of NAME, or of every function)."""
    with _state(ctx).client() as client:
        rows = client.limits(name)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not any(row.get("RateLimits") or "ReservedConcurrentExecutions" in row for row in rows):
        click.echo("No limits.")
    else:
        Console().print(limits_table(rows))


@limit.command(name="rm")
@click.argument("name")
@click.option("--scope", type=click.Choice(["function", "caller"]), help="Default: both.")
@click.pass_context
def limit_rm(ctx: click.Context, name: str, scope: str | None) -> None:
    """Remove NAME's rate limit (of one scope, or both)."""
    with _state(ctx).client() as client:
        client.remove_limit(name, scope)
    click.echo(f"removed {scope + ' ' if scope else ''}rate limit of {name}")

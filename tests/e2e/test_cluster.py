"""Cluster mode end to end: several `ember serve` nodes on one PostgreSQL are one platform.

Every test starts real nodes with `--database` on a fresh database: a change
through one node is seen by the others, singleton duties run once and fail
over, accepted events survive a node's kill -9, and the nodes ride out a
restart of PostgreSQL itself (a private server started by the test, so the
shared one is never disturbed).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from async_helpers import ALWAYS_FAILS, dead_letters, function_stats, logs
from botocore.exceptions import ClientError
from e2e_helpers import function_arn, invoke_json
from test_manifests_controller import SCHEDULED, apply, contiguous, write
from test_mcp import check_list_changed, expose, source

from conftest import ROLE, Server, free_port, lambda_client, make_zip, signed_http, wait_until

Spawn = Callable[..., Server]
VERSIONED = "def handler(event, context):\n    return {'v': V}\n"


def versioned(value: int) -> bytes:
    return make_zip({"app.py": VERSIONED.replace("V", str(value))})


@pytest.fixture
def nodes(
    spawn_server: Spawn, postgres_url: str, tmp_path: Path
) -> Callable[..., tuple[Server, ...]]:
    """Start ``count`` all-in-one nodes on one fresh database (each its own data dir)."""

    def start(count: int = 2, *args: str) -> tuple[Server, ...]:
        return tuple(
            spawn_server(tmp_path / f"node-{n}", "--database", postgres_url, *args)
            for n in range(count)
        )

    return start


def create(aws: Any, name: str, package: bytes, **settings: Any) -> None:
    aws.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": package},
        **settings,
    )


def answers(aws: Any, name: str, **params: Any) -> Any:
    """The function's result on this node, or None while it does not run it (yet)."""
    try:
        return invoke_json(aws, name, **params)
    except ClientError:
        return None


def test_a_change_through_one_node_is_seen_by_the_other(nodes: Any) -> None:
    a, b = nodes()
    aws_a, aws_b = lambda_client(a), lambda_client(b)
    name = f"shared-{uuid.uuid4().hex[:6]}"
    create(aws_a, name, versioned(1))
    assert wait_until(lambda: answers(aws_b, name), timeout=10) == {"v": 1}

    aws_a.update_function_code(FunctionName=name, ZipFile=versioned(2))
    wait_until(lambda: answers(aws_b, name) == {"v": 2}, timeout=10)

    version = aws_a.publish_version(FunctionName=name)["Version"]
    aws_a.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    aws_a.update_function_code(FunctionName=name, ZipFile=versioned(3))
    wait_until(lambda: answers(aws_b, name) == {"v": 3}, timeout=10)
    assert wait_until(lambda: answers(aws_b, name, Qualifier="live"), timeout=10) == {"v": 2}

    # Limits are shared settings: a reserved concurrency of 0 set through A throttles B.
    aws_a.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    wait_until(lambda: answers(aws_b, name) is None, timeout=10)
    with pytest.raises(ClientError) as refused:
        aws_b.invoke(FunctionName=name, Payload=b"{}")
    assert refused.value.response["Error"]["Code"] == "TooManyRequestsException"
    aws_a.delete_function_concurrency(FunctionName=name)
    wait_until(lambda: answers(aws_b, name) == {"v": 3}, timeout=10)

    aws_a.delete_function(FunctionName=name)

    def gone() -> bool:
        try:
            aws_b.get_function(FunctionName=name)
        except aws_b.exceptions.ResourceNotFoundException:
            return True
        return False

    wait_until(gone, timeout=10)


def test_tags_and_provisioned_configs_reach_every_node(nodes: Any) -> None:
    a, b = nodes()
    aws_a, aws_b = lambda_client(a), lambda_client(b)
    name = f"tagged-{uuid.uuid4().hex[:6]}"
    create(aws_a, name, versioned(1), Tags={"team": "shop"}, Publish=True)
    arn = aws_a.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    aws_a.tag_resource(Resource=arn, Tags={"env": "prod"})
    wait_until(lambda: len(answers_tags(aws_b, arn) or {}) == 2, timeout=10)
    assert aws_b.get_function(FunctionName=name)["Tags"] == {"team": "shop", "env": "prod"}

    # Put through B; the controller duty (whichever node holds it) makes it READY for both.
    aws_b.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    for aws in (aws_a, aws_b):
        wait_until(
            lambda aws=aws: (
                aws.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")["Status"]
                == "READY"
            ),
            timeout=20,
        )
    aws_a.delete_function(FunctionName=name)
    wait_until(lambda: answers_tags(aws_b, arn) is None, timeout=10)


def answers_tags(aws: Any, arn: str) -> dict[str, str] | None:
    """The function's tags as this node lists them, or None once it is gone."""
    try:
        return dict(aws.list_tags(Resource=arn)["Tags"])
    except aws.exceptions.ResourceNotFoundException:
        return None


def test_mcp_clients_of_every_node_hear_list_changed(nodes: Any) -> None:
    a, b = nodes()
    aws_a = lambda_client(a)
    name = f"tool-{uuid.uuid4().hex[:6]}"
    create(aws_a, name, make_zip({"app.py": source()}))
    expose(a, name)
    wait_until(lambda: name in {t["FunctionName"] for t in tools_of(b)}, timeout=10)
    # Changes made through A are announced to the MCP sessions held open on B.
    check_list_changed(b.url, b.url + "/mcp", aws_a, name)


def tools_of(server: Server) -> list[dict[str, Any]]:
    return list(server.http.get("/_ember/tools", timeout=5).json()["Tools"])


def holder(servers: tuple[Server, ...], duty: str) -> Server | None:
    """The node whose /health says it holds ``duty`` (exactly one), else None."""
    holding = [s for s in servers if duty in s.health().get("node", {}).get("duties", [])]
    return holding[0] if len(holding) == 1 else None


def firings(servers: tuple[Server, ...], name: str) -> list[dict[str, Any]]:
    """FIRED lines of every node's logs (a delivery may run on any node)."""
    seen = []
    for server in servers:
        for line in logs(server, name).splitlines():
            if "FIRED " in line:
                seen.append(json.loads(line.split("FIRED ", 1)[1]))
    return seen


def test_a_schedule_fires_once_per_tick_across_nodes_and_fails_over(
    nodes: Any, tmp_path: Path
) -> None:
    servers = nodes(2, "--schedule-minute-seconds", "1", "--visibility-margin", "2")
    name = f"tick-{uuid.uuid4().hex[:6]}"
    write(tmp_path / "m", name, SCHEDULED, triggers=[{"schedule": "rate(1 minute)"}])
    apply(servers[0], tmp_path / "m")
    leader = wait_until(lambda: holder(servers, "schedules"), timeout=20)
    wait_until(lambda: len(firings(servers, name)) >= 3, timeout=30)
    survivor = next(s for s in servers if s is not leader)
    before = firings(servers, name)
    leader.stop(signal.SIGKILL)
    # The other node takes the duty over and goes on from the stored cursor.
    wait_until(lambda: holder((survivor,), "schedules"), timeout=20)
    wait_until(lambda: len(firings((survivor,), name)) >= 8, timeout=60)

    def complete() -> dict[str, set[str]] | None:
        return contiguous(before + firings((survivor,), name))

    by_time = wait_until(complete, timeout=60)
    assert all(len(ids) == 1 for ids in by_time.values())


NOOP = "def handler(event, context):\n    return event\n"


def delivered_after_drain(server: Server) -> set[str]:
    """Once source and sink are drained: the request ids that reached sink's dead letters."""

    def drained() -> bool:
        for name in ("source", "sink"):
            row = function_stats(server, name) or {}
            if row.get("depth") or row.get("inFlight"):
                return False
        return True

    wait_until(drained, timeout=120)
    return {
        letter["payload"]["requestContext"]["requestId"]
        for letter in dead_letters(server, "sink", payload=True)
    }


def sender(server: Server, accepted: list[str], stop: threading.Event) -> None:
    """Event invokes until ``stop`` or the node dies; keeps the request ids answered 202."""
    headers = {"X-Amz-Invocation-Type": "Event"}
    # A client per thread: its connections die with the node it was sending to.
    with signed_http(server.url, server.credentials, timeout=10) as client:
        while not stop.is_set():
            try:
                response = client.post(
                    "/2015-03-31/functions/source/invocations", content=b"{}", headers=headers
                )
            except httpx.HTTPError:
                return
            if response.status_code == 202:
                accepted.append(response.headers["x-amzn-requestid"])


def sync_caller(server: Server, failures: list[str], stop: threading.Event) -> None:
    """Synchronous invokes of the survivor for as long as ``stop`` is not set."""
    with signed_http(server.url, server.credentials, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post("/2015-03-31/functions/echo/invocations", content=b"{}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if response.status_code != 200 or "x-amz-function-error" in response.headers:
                failures.append(f"{response.status_code} {response.text[:200]}")


def test_kill_9_of_a_node_loses_no_event_and_the_other_keeps_serving(nodes: Any) -> None:
    servers = list(nodes(2, "--retry-base-delay", "0.05", "--visibility-margin", "2"))
    aws = lambda_client(servers[0])
    create(aws, "sink", make_zip({"app.py": ALWAYS_FAILS}))
    aws.put_function_event_invoke_config(FunctionName="sink", MaximumRetryAttempts=0)
    create(aws, "source", make_zip({"app.py": NOOP}))
    create(aws, "echo", make_zip({"app.py": NOOP}))
    aws.put_function_event_invoke_config(
        FunctionName="source",
        DestinationConfig={"OnSuccess": {"Destination": function_arn("sink")}},
    )
    for server in servers:
        wait_until(lambda s=server: answers(lambda_client(s), "echo") == {}, timeout=10)
    accepted: list[str] = []
    failures: list[str] = []
    rng = random.Random(13)
    for cycle in range(4):
        victim, survivor = servers[cycle % 2], servers[1 - cycle % 2]
        stop = threading.Event()
        threads = [
            threading.Thread(target=sender, args=(victim, accepted, stop)),
            threading.Thread(target=sender, args=(survivor, accepted, stop)),
            threading.Thread(target=sync_caller, args=(survivor, failures, stop)),
        ]
        for thread in threads:
            thread.start()
        count = len(accepted)
        wait_until(lambda c=count: len(accepted) >= c + 100, timeout=60)
        time.sleep(rng.uniform(0.0, 0.3))  # a random moment under load
        victim.stop(signal.SIGKILL)
        wait_until(lambda c=count: len(accepted) >= c + 200, timeout=60)  # the survivor serves
        stop.set()
        for thread in threads:
            thread.join()
        servers[cycle % 2] = victim.start()  # the same data dir: the same node id
    assert failures == []

    assert set(accepted) - delivered_after_drain(servers[0]) == set()


# -- PostgreSQL itself restarted ---------------------------------------------------


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A PostgreSQL of this test's own, and ``control("stop" | "start")`` for it."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL's server binaries are not installed (scripts/services.sh does)")
    # Outside pytest's 0700 temp tree: the server runs as the postgres user.
    home = Path(tempfile.mkdtemp(prefix="ember-pg-"))
    shutil.chown(home, "postgres")
    port = free_port()

    def as_postgres(command: str) -> None:
        subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", command],
            check=True,
            capture_output=True,
            timeout=60,
        )

    as_postgres(f"{binaries}/initdb -D {home}/data -U postgres -A trust")

    def control(action: str) -> None:
        mode = "-m immediate" if action == "stop" else ""
        as_postgres(
            f"{binaries}/pg_ctl -D {home}/data -w {mode} -l {home}/log "
            f"-o '-h 127.0.0.1 -p {port} -k {home}' {action}"
        )

    control("start")
    as_postgres(f"{binaries}/createdb -h 127.0.0.1 -p {port} -U postgres ember")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/ember", control
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            control("stop")
        shutil.rmtree(home, ignore_errors=True)


def test_postgres_restart_under_load_loses_no_acknowledged_event(
    spawn_server: Spawn, private_postgres: tuple[str, Callable[[str], None]], tmp_path: Path
) -> None:
    url, control = private_postgres
    node = spawn_server(tmp_path / "node", "--database", url, "--retry-base-delay", "0.05")
    aws = lambda_client(node)
    create(aws, "sink", make_zip({"app.py": ALWAYS_FAILS}))
    aws.put_function_event_invoke_config(FunctionName="sink", MaximumRetryAttempts=0)
    create(aws, "source", make_zip({"app.py": NOOP}))
    aws.put_function_event_invoke_config(
        FunctionName="source",
        DestinationConfig={"OnSuccess": {"Destination": function_arn("sink")}},
    )
    accepted: list[str] = []
    refusals: list[tuple[int, str]] = []
    stop = threading.Event()

    def send() -> None:
        headers = {"X-Amz-Invocation-Type": "Event"}
        with signed_http(node.url, node.credentials, timeout=60) as client:
            while not stop.is_set():
                response = client.post(
                    "/2015-03-31/functions/source/invocations", content=b"{}", headers=headers
                )
                if response.status_code == 202:
                    accepted.append(response.headers["x-amzn-requestid"])
                else:
                    refusals.append((response.status_code, response.text))

    thread = threading.Thread(target=send)
    thread.start()
    try:
        wait_until(lambda: len(accepted) >= 100, timeout=60)
        control("stop")
        # While the database is away, ember answers with a ServiceException, never hangs.
        wait_until(lambda: len(refusals) >= 3, timeout=60)
        control("start")
        count = len(accepted)
        wait_until(lambda: len(accepted) >= count + 100, timeout=60)
    finally:
        stop.set()
        thread.join()
    for status, body in refusals:
        assert status in (500, 503), body
        assert json.loads(body)["Type"] == "Service", body

    assert set(accepted) - delivered_after_drain(node) == set()

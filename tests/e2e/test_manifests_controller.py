"""End-to-end: what the controller keeps running — provisioned sandboxes and schedules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import EMBER, Server, lambda_client, sandboxes_of, wait_until

API = "/_ember/apis/ember.dev/v1"

PROVISIONED = """
import os

def handler(event, context):
    return os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]
"""

SCHEDULED = """
import json

def handler(event, context):
    print("FIRED " + json.dumps({"time": event["time"], "id": event["id"],
                                 "rid": context.aws_request_id, "kind": event["detail-type"]}))
"""


def apply(server: Server, directory: Path) -> None:
    env = server.cli_env()
    result = subprocess.run(
        [EMBER, "apply", "-f", str(directory)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def write(directory: Path, name: str, source: str, **spec: Any) -> None:
    (directory / "src").mkdir(parents=True, exist_ok=True)
    (directory / "src" / "app.py").write_text(textwrap.dedent(source))
    body = {
        "apiVersion": "ember.dev/v1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "code": {"path": "src"},
            **spec,
        },
    }
    (directory / "fn.yaml").write_text(json.dumps(body))


def provisioned_pids(server: Server, name: str) -> set[int]:
    return {int(row["pid"]) for row in sandboxes_of(server, name) if row["provisioned"]}


def test_provisioned_sandboxes_are_initialized_and_restored_after_kill_9(
    server: Server, tmp_path: Path
) -> None:
    name = f"prov-{uuid.uuid4().hex[:8]}"
    write(tmp_path, name, PROVISIONED, concurrency={"reserved": 5, "provisioned": 2})
    apply(server, tmp_path)
    try:
        before = wait_until(
            lambda: (pids := provisioned_pids(server, name)) and len(pids) == 2 and pids
        )
        aws = lambda_client(server)
        answer = aws.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()
        assert json.loads(answer) == "provisioned-concurrency"
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)

        def restored() -> set[int] | None:
            pids = provisioned_pids(server, name)
            return pids if len(pids) == 2 and victim not in pids else None

        after = wait_until(restored)
        assert sorted(before)[1] in after
        answer = aws.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()
        assert json.loads(answer) == "provisioned-concurrency"
        body = server.http.get(f"{API}/namespaces/default/functions/{name}").json()
        kinds = {c["type"]: c for c in body["status"]["conditions"]}
        assert kinds["ProvisionedReady"]["message"] == "2/2 sandboxes initialized"
    finally:
        server.http.delete(f"{API}/namespaces/default/functions/{name}")
    wait_until(lambda: not sandboxes_of(server, name))


def firings(server: Server, name: str) -> list[dict[str, Any]]:
    text = server.http.get(f"/_ember/functions/{name}/logs", timeout=5).json()["logs"]
    return [
        json.loads(line.split("FIRED ", 1)[1]) for line in text.splitlines() if "FIRED " in line
    ]


def test_a_schedule_fires_each_time_once_across_a_restart(
    spawn_server: Any, tmp_path: Path
) -> None:
    # --schedule-minute-seconds 1: rate(1 minute) fires every second (documented, for tests).
    data = tmp_path / "data"
    server = spawn_server(data, "--schedule-minute-seconds", "1")
    name = f"tick-{uuid.uuid4().hex[:8]}"
    write(tmp_path / "m", name, SCHEDULED, triggers=[{"schedule": "rate(1 minute)"}])
    apply(server, tmp_path / "m")
    wait_until(lambda: len(firings(server, name)) >= 3)
    server.stop(signal.SIGTERM)
    server = spawn_server(data, "--schedule-minute-seconds", "1")
    # Deliveries run in parallel: wait until what arrived has no hole, then check it.
    by_time = wait_until(lambda: contiguous(firings(server, name)), timeout=60)
    assert all(len(ids) == 1 for ids in by_time.values())


def contiguous(seen: list[dict[str, Any]]) -> dict[str, set[str]] | None:
    """Firings by scheduled time, once at least 8 seconds in a row fired (else None).

    Every scheduled second from the first to the last must have fired, each
    with one request id (an event redelivered after the restart keeps its id):
    none missed, none doubled.
    """
    by_time: dict[str, set[str]] = defaultdict(set)
    for firing in seen:
        assert firing["kind"] == "Scheduled Event"
        assert firing["rid"] == firing["id"]
        by_time[firing["time"]].add(firing["rid"])
    times = sorted(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in by_time)
    if len(times) < 8:
        return None
    expected = [times[0] + timedelta(seconds=n) for n in range(len(times))]
    return by_time if times == expected else None


def test_objects_and_provisioned_sandboxes_come_back_after_a_restart(
    spawn_server: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = spawn_server(data)
    name = f"again-{uuid.uuid4().hex[:8]}"
    write(tmp_path / "m", name, PROVISIONED, concurrency={"reserved": 2, "provisioned": 1})
    apply(server, tmp_path / "m")
    wait_until(lambda: len(provisioned_pids(server, name)) == 1)
    before = server.http.get(f"{API}/namespaces/default/functions/{name}").json()
    server.stop(signal.SIGKILL)
    server = spawn_server(data)
    wait_until(lambda: len(provisioned_pids(server, name)) == 1)
    after = server.http.get(f"{API}/namespaces/default/functions/{name}").json()
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["generation"] == 1
    answer = lambda_client(server).invoke(FunctionName=name, Payload=b"{}")["Payload"].read()
    assert json.loads(answer) == "provisioned-concurrency"

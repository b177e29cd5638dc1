"""Deleting a function discards its pending events, as on Lambda: none of them
reaches, or is dead-lettered under, a new function of the same name."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from async_helpers import dead_letters, drained, logs, starts
from e2e_helpers import request_id_of

from conftest import EMBER, ROLE, Server, lambda_client, make_zip, wait_until

# Every attempt fails (so each event waits for a retry); {"sleep": s} first holds the
# event in flight.
FAILS_SLOWLY = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    raise ValueError("old " + context.aws_request_id)
"""

ECHO_ID = """
def handler(event, context):
    print("SEEN " + context.aws_request_id)
    return {"event": event}
"""


@pytest.fixture(scope="module")
def slow_retries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Retries 30 s (then 60 s) after a failure: deleted events are still waiting."""
    data = tmp_path_factory.mktemp("ember-async-delete") / "data"
    instance = Server(data, extra_args=["--retry-base-delay", "30", "--pollers", "4"]).start()
    yield instance
    instance.stop()


def create(lam: Any, name: str, source: str) -> None:
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Timeout=60,
        Code={"ZipFile": make_zip({"app.py": source})},
    )


def send(lam: Any, name: str, event: dict[str, Any]) -> str:
    response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event))
    assert response["StatusCode"] == 202
    return request_id_of(response)


def busy(server: Server, name: str) -> bool:
    """A sandbox of ``name`` is running an invocation (the held event: the others ended)."""
    sandboxes = server.http.get("/_ember/sandboxes", timeout=10).json()["sandboxes"]
    return any(s["function"] == name and s["state"] == "busy" for s in sandboxes)


def in_flight(server: Server, name: str) -> bool:
    rows = server.http.get("/_ember/queue", timeout=10).json()["functions"]
    return any(row["function"] == name and row["inFlight"] for row in rows)


def test_a_deleted_functions_events_never_reach_a_new_one_of_the_same_name(
    slow_retries: Server, unique_name: str
) -> None:
    lam = lambda_client(slow_retries)
    name = unique_name
    create(lam, name, FAILS_SLOWLY)
    retrying = [send(lam, name, {"n": n}) for n in range(3)]
    wait_until(lambda: all(starts(slow_retries, name, rid) for rid in retrying))
    held = send(lam, name, {"sleep": 20})
    wait_until(lambda: busy(slow_retries, name) and in_flight(slow_retries, name))

    lam.delete_function(FunctionName=name)
    create(lam, name, ECHO_ID)
    fresh = send(lam, name, {"fresh": True})
    wait_until(lambda: f"SEEN {fresh}" in logs(slow_retries, name))
    # Nothing of the old function is left to deliver: not waiting, not in flight.
    wait_until(lambda: drained(slow_retries, name))

    seen = logs(slow_retries, name)
    assert not [rid for rid in [*retrying, held] if f"SEEN {rid}" in seen]
    assert dead_letters(slow_retries, name) == []
    listed = subprocess.run(
        [EMBER, "dlq", "ls", name],
        env=slow_retries.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.stdout.strip() == f"No dead letters for {name}.", listed.stderr
    lam.delete_function(FunctionName=name)
    lam.close()

"""Asynchronous invocation end to end: boto3 against a real server with fast retries."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from async_helpers import (
    ALWAYS_FAILS,
    DESTINATION_PRINTER,
    dead_letters,
    drained,
    function_stats,
    logs,
    queue_stats,
    records,
    starts,
)
from botocore.exceptions import ClientError, ParamValidationError
from e2e_helpers import function_arn, request_id_of

from conftest import EMBER, ROLE, Server, lambda_client, make_zip, wait_until

ECHO_ID = """
def handler(event, context):
    print("SEEN " + context.aws_request_id)
    return {"event": event}
"""

SLEEPER = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}
"""


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose async retries wait 50 ms (then 100 ms) instead of 1 and 2 minutes.

    Eight pollers, fewer than the backlogs the tests build, so that fairness
    between functions is what gets a quiet function's event through.
    """
    data = tmp_path_factory.mktemp("ember-async") / "data"
    instance = Server(data, extra_args=["--retry-base-delay", "0.05", "--pollers", "8"]).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def lam(fast: Server) -> Iterator[Any]:
    client = lambda_client(fast)
    yield client
    client.close()


@pytest.fixture
def make(lam: Any, unique_name: str) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def create(source: str, suffix: str = "", **settings: Any) -> str:
        name = f"{unique_name}{suffix}-{len(created)}"[:64]
        params = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE, **settings}
        lam.create_function(
            FunctionName=name, Code={"ZipFile": make_zip({"app.py": source})}, **params
        )
        created.append(name)
        return name

    yield create
    for name in created:
        with contextlib.suppress(ClientError):
            lam.delete_function(FunctionName=name)


def send(lam: Any, name: str, event: Any = None, **params: Any) -> str:
    response = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event or {}), **params
    )
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    return request_id_of(response)


def busy_sandbox(server: Server, name: str) -> bool:
    sandboxes = server.http.get("/_ember/sandboxes", timeout=10).json()["sandboxes"]
    return any(s["function"] == name and s["state"] == "busy" for s in sandboxes)


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = server.cli_env(COLUMNS="250")
    return subprocess.run(
        [EMBER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


# -- 1. Invoke with InvocationType Event ---------------------------------------------------


def test_event_is_answered_202_and_runs_with_the_same_request_id(
    fast: Server, lam: Any, make: Callable[..., str]
) -> None:
    name = make(ECHO_ID)
    request_id = send(lam, name, {"hello": "async"})
    wait_until(lambda: f"SEEN {request_id}" in logs(fast, name))
    assert starts(fast, name, request_id) == 1


def test_event_validation_errors(lam: Any, make: Callable[..., str]) -> None:
    name = make(ECHO_ID)
    with pytest.raises(ClientError) as too_large:
        lam.invoke(
            FunctionName=name, InvocationType="Event", Payload=b'"' + b"x" * 1_100_000 + b'"'
        )
    assert too_large.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "1048576 bytes" in too_large.value.response["Error"]["Message"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name + "-missing", InvocationType="Event", Payload=b"{}")
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"not json")
    # Just under the limit is accepted.
    ok = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=b'"' + b"x" * 1_000_000 + b'"'
    )
    assert ok["StatusCode"] == 202
    assert ok["Payload"].read() == b""


# -- 3. Retries, 5. dead letters and destinations ---------------------------------------------


def test_function_error_is_retried_with_the_same_id_then_dead_lettered(
    fast: Server, lam: Any, make: Callable[..., str]
) -> None:
    name = make(ALWAYS_FAILS)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    request_id = send(lam, name, {"n": 1})
    wait_until(lambda: dead_letters(fast, name))
    assert starts(fast, name, request_id) == 2  # one attempt + one retry
    (letter,) = dead_letters(fast, name, payload=True)
    assert letter["requestId"] == request_id
    assert letter["condition"] == "RetriesExhausted"
    assert letter["approximateInvokeCount"] == 2
    assert letter["errorType"] == "ValueError"
    assert letter["payload"] == {"n": 1}

    shown = cli(fast, "dlq", "show", name, letter["id"])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["requestId"] == request_id
    listed = cli(fast, "dlq", "ls", name)
    assert request_id in listed.stdout and "RetriesExhausted" in listed.stdout

    redriven = cli(fast, "dlq", "redrive", name, letter["id"])
    assert "redrove 1" in redriven.stdout, redriven.stderr
    wait_until(lambda: starts(fast, name, request_id) == 4 and dead_letters(fast, name))
    (again,) = dead_letters(fast, name)
    assert again["requestId"] == request_id  # the id survives the redrive
    purged = cli(fast, "dlq", "purge", name)
    assert "purged 1" in purged.stdout
    assert dead_letters(fast, name) == []


def test_default_two_retries_then_on_failure_record(
    fast: Server, lam: Any, make: Callable[..., str]
) -> None:
    destination = make(DESTINATION_PRINTER, "-dest")
    name = make(ALWAYS_FAILS)
    lam.put_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={"OnFailure": {"Destination": function_arn(destination)}},
    )
    request_id = send(lam, name, {"n": 2})
    wait_until(lambda: records(fast, destination))
    (record,) = records(fast, destination)
    assert starts(fast, name, request_id) == 3
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": function_arn(name) + ":$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == {"n": 2}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert dead_letters(fast, name) == []  # routed, so not dead-lettered


def test_on_success_record(fast: Server, lam: Any, make: Callable[..., str]) -> None:
    destination = make(DESTINATION_PRINTER, "-dest")
    name = make(ECHO_ID)
    lam.put_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": function_arn(destination)}},
    )
    request_id = send(lam, name, {"k": "v"})
    wait_until(lambda: records(fast, destination))
    (record,) = records(fast, destination)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"event": {"k": "v"}}


def test_throttles_are_retried_without_spending_attempts(
    fast: Server, lam: Any, make: Callable[..., str]
) -> None:
    name = make(SLEEPER, Timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    retried_before = queue_stats(fast)["pollers"]["retried"]

    def hold_the_only_slot() -> None:
        client = lambda_client(fast)
        client.invoke(FunctionName=name, Payload=json.dumps({"sleep": 4}))["Payload"].read()
        client.close()

    busy = threading.Thread(target=hold_the_only_slot)
    busy.start()
    try:
        wait_until(lambda: busy_sandbox(fast, name))  # the one slot is taken
        request_id = send(lam, name, {"sleep": 0})
        # Throttled (429) at least once while the sync call holds the only slot...
        wait_until(lambda: queue_stats(fast)["pollers"]["retried"] > retried_before)
    finally:
        busy.join()
    # ...and still delivered: throttles do not spend MaximumRetryAttempts=0.
    wait_until(lambda: starts(fast, name, request_id) == 1)
    wait_until(lambda: drained(fast, name))
    assert dead_letters(fast, name) == []


def test_events_of_one_function_are_not_starved_by_another_backlog(
    fast: Server, lam: Any, make: Callable[..., str]
) -> None:
    busy = make(SLEEPER, "-busy")
    quiet = make(ECHO_ID, "-quiet")
    for _ in range(60):
        send(lam, busy, {"sleep": 0.3})
    request_id = send(lam, quiet)
    wait_until(lambda: starts(fast, quiet, request_id) == 1)
    row = function_stats(fast, busy)
    assert row is not None and row["depth"] > 0  # delivered while the backlog still waits
    wait_until(lambda: drained(fast, busy), timeout=60)


# -- 4. The event-invoke-config API -----------------------------------------------------------


def test_event_invoke_config_lifecycle(lam: Any, make: Callable[..., str]) -> None:
    destination = make(DESTINATION_PRINTER, "-dest")
    name = make(ECHO_ID)
    put = lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=600
    )
    assert put["FunctionArn"] == function_arn(name) + ":$LATEST"
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 600
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    assert put["LastModified"].year >= 2024  # epoch seconds, parsed by boto3

    # Update merges: the retries stay, a destination is added.
    updated = lam.update_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": function_arn(destination)}},
    )
    assert updated["MaximumRetryAttempts"] == 1
    assert updated["DestinationConfig"]["OnSuccess"] == {"Destination": function_arn(destination)}

    # Put replaces: what is not given is gone.
    replaced = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert "MaximumEventAgeInSeconds" not in replaced
    assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}

    got = lam.get_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST")
    assert got["MaximumRetryAttempts"] == 0
    listed = lam.list_function_event_invoke_configs(FunctionName=name)
    assert [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]] == [
        function_arn(name) + ":$LATEST"
    ]
    deleted = lam.delete_function_event_invoke_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
        lam.get_function_event_invoke_config(FunctionName=name)
    assert missing.value.response["Error"]["Message"] == (
        f"The function {function_arn(name)}:$LATEST doesn't have an EventInvokeConfig"
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)


def test_event_invoke_config_validation(lam: Any, make: Callable[..., str]) -> None:
    name = make(ECHO_ID)

    def error(**params: Any) -> tuple[str, str]:
        with pytest.raises(ClientError) as caught:
            lam.put_function_event_invoke_config(FunctionName=name, **params)
        return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]

    assert error() == (
        "InvalidParameterValueException",
        "You must specify at least one of error handling or destination setting.",
    )
    code, message = error(MaximumRetryAttempts=3)
    assert code == "ValidationException"
    assert message == (
        "1 validation error detected: Value '3' at 'maximumRetryAttempts' failed to satisfy "
        "constraint: Member must have value less than or equal to 2"
    )
    code, message = error(MaximumEventAgeInSeconds=21601)
    assert code == "ValidationException" and "less than or equal to 21600" in message
    with pytest.raises(ParamValidationError):  # boto3 checks the minimum itself
        lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=59)
    assert error(DestinationConfig={"OnFailure": {"Destination": function_arn(name)}}) == (
        "InvalidParameterValueException",
        "You can't specify the function as a destination for itself.",
    )
    code, message = error(
        DestinationConfig={"OnSuccess": {"Destination": function_arn(name + "-nope")}}
    )
    assert code == "InvalidParameterValueException" and "is invalid" in message
    code, _ = error(DestinationConfig={"OnSuccess": {"Destination": "not-an-arn"}})
    assert code == "ValidationException"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(FunctionName=name + "-nope", MaximumRetryAttempts=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(
            FunctionName=name, Qualifier="1", MaximumRetryAttempts=1
        )


def test_config_goes_with_its_function(lam: Any, make: Callable[..., str]) -> None:
    name = make(ECHO_ID)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    lam.delete_function(FunctionName=name)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": ECHO_ID})},
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=name)


# -- 7. Queue visibility, 8. the CLI ------------------------------------------------------------


def test_queue_stats_and_cli(fast: Server, lam: Any, make: Callable[..., str]) -> None:
    name = make(ALWAYS_FAILS)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    queued = cli(fast, "invoke", name, "--async", "--payload", '{"via": "cli"}')
    assert queued.returncode == 0, queued.stderr
    request_id = queued.stdout.strip().rsplit(" ", 1)[-1]
    wait_until(lambda: dead_letters(fast, name))
    assert dead_letters(fast, name)[0]["requestId"] == request_id
    row = function_stats(fast, name)
    assert row is not None
    assert (row["depth"], row["inFlight"], row["deadLetters"]) == (0, 0, 1)
    assert set(row) >= {"oldestAgeSeconds", "retrying"}
    stats = cli(fast, "queue", "stats", "--json")
    assert any(r["function"] == name for r in json.loads(stats.stdout)["functions"])
    table = cli(fast, "queue", "stats")
    assert name in table.stdout and "DEAD LETTERS" in table.stdout


def test_async_path_leaves_sync_invoke_alone(
    lam: Any, make: Callable[..., str], tmp_path: Path
) -> None:
    name = make(ECHO_ID)
    response = lam.invoke(FunctionName=name, Payload=b'{"sync": true}')
    assert response["StatusCode"] == 200
    assert json.loads(response["Payload"].read()) == {"event": {"sync": True}}
    dry = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204
    assert dry["Payload"].read() == b""

"""End-to-end: synchronous Invoke through boto3 against a real `ember serve`.

Covers what a Lambda user notices: status codes and headers, the handler's
``(event, context)``, the environment, Lambda's error payloads for every kind
of function failure, request errors, ``LogType=Tail``, warm reuse, idle
reclaim, runtimes and function naming.
"""

from __future__ import annotations

import base64
import errno
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from e2e_helpers import TOKEN_SOURCE, namespace_pids, pid_gone, read_in_sandbox

from conftest import (
    ROLE,
    Server,
    host_pid_of,
    lambda_client,
    make_zip,
    sandboxes_of,
    wait_until,
)

Deploy = Callable[..., dict[str, Any]]


MAX_TAIL = 4096


def invoke(aws: Any, name: str, payload: Any = None, **params: Any) -> tuple[dict[str, Any], Any]:
    """Invoke ``name``; return (response, decoded JSON payload or None when empty)."""
    if payload is None:
        body = b"{}"
    elif isinstance(payload, bytes | str):
        body = payload
    else:
        body = json.dumps(payload).encode()
    response = aws.invoke(FunctionName=name, Payload=body, **params)
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


def request_id(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["RequestId"])


def log_tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def host_has_python(minor: int) -> bool:
    """Whether an interpreter of 3.``minor`` runs here (a pyenv shim of a version
    that is not installed exists, and fails)."""
    version = f"3.{minor}"
    if sys.version_info[:2] == (3, minor):
        return True
    candidates = [shutil.which(f"python{version}") or ""]
    candidates += glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))
    candidates += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    for candidate in filter(os.path.exists, candidates):
        ran = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if ran.returncode == 0 and ran.stdout.strip() == version:
            return True
    return False


ECHO = """
def handler(event, context):
    return {"event": event}
"""


# -- invocation types ----------------------------------------------------------


def test_request_response_returns_200_latest_and_the_payload(aws: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)["FunctionName"]
    response, body = invoke(aws, name, {"hello": "world", "n": [1, 2.5, None]})
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert body == {"event": {"hello": "world", "n": [1, 2.5, None]}}
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-requestid"] == request_id(response)


def test_dry_run_returns_204_and_runs_nothing(aws: Any, server: Server, deploy: Deploy) -> None:
    name = deploy("def handler(event, context):\n    raise RuntimeError('must not run')\n")[
        "FunctionName"
    ]
    response, body = invoke(aws, name, InvocationType="DryRun")
    assert response["StatusCode"] == 204
    assert body is None
    assert "FunctionError" not in response
    assert not sandboxes_of(server, name)


def test_event_invocation_is_accepted_with_202(aws: Any, deploy: Deploy) -> None:
    # The whole asynchronous path is covered by tests/e2e/test_async.py.
    name = deploy(ECHO)["FunctionName"]
    response = aws.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""


# -- what the handler sees -------------------------------------------------------

CONTEXT = """
def handler(event, context):
    client_context = context.client_context
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "cognito_identity_id": context.identity.cognito_identity_id,
        "cognito_identity_pool_id": context.identity.cognito_identity_pool_id,
        "custom": client_context.custom if client_context else "absent",
        "env": client_context.env if client_context else "absent",
        "app_title": client_context.client.app_title if client_context else "absent",
    }
"""


def test_handler_gets_a_complete_context(aws: Any, deploy: Deploy) -> None:
    created = deploy(CONTEXT, Timeout=7)
    name = created["FunctionName"]
    client_context = {
        "client": {"app_title": "ember-tests", "installation_id": "i-1"},
        "custom": {"tenant": "acme"},
        "env": {"locale": "en_GB"},
    }
    encoded = base64.b64encode(json.dumps(client_context).encode()).decode()
    response, seen = invoke(aws, name, ClientContext=encoded)
    assert "FunctionError" not in response, seen
    assert seen["function_name"] == name
    assert seen["function_version"] == "$LATEST"
    assert seen["invoked_function_arn"] == created["FunctionArn"]
    assert seen["memory_limit_in_mb"] == "128"  # a string, as on Lambda
    assert seen["aws_request_id"] == request_id(response)
    assert seen["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in seen["log_stream_name"]
    assert 0 < seen["remaining"] <= 7000
    assert seen["cognito_identity_id"] is None
    assert seen["cognito_identity_pool_id"] is None
    assert seen["custom"] == {"tenant": "acme"}
    assert seen["env"] == {"locale": "en_GB"}
    assert seen["app_title"] == "ember-tests"


def test_context_without_client_context(aws: Any, deploy: Deploy) -> None:
    name = deploy(CONTEXT)["FunctionName"]
    response, seen = invoke(aws, name)
    assert "FunctionError" not in response, seen
    assert seen["custom"] == "absent"
    assert 0 < seen["remaining"] <= 3000


@pytest.mark.parametrize(
    "client_context",
    [
        "%%% not base64 %%%",
        base64.b64encode(b"{not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),  # JSON, but not an object
    ],
)
def test_invalid_client_context_is_a_request_error(
    aws: Any, deploy: Deploy, client_context: str
) -> None:
    name = deploy(CONTEXT)["FunctionName"]
    with pytest.raises(aws.exceptions.InvalidRequestContentException) as caught:
        aws.invoke(FunctionName=name, Payload=b"{}", ClientContext=client_context)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


ENVIRON = """
import os

def handler(event, context):
    return dict(os.environ)
"""


def test_lambda_environment_then_the_functions_own_and_nothing_of_the_servers(
    spawn_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    monkeypatch.setenv("EMBER_TEST_SECRET", "leak")
    server = spawn_server()
    monkeypatch.delenv("EMBER_TEST_SECRET")
    aws = lambda_client(server)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        MemorySize=256,
        Code={"ZipFile": make_zip({"app.py": ENVIRON})},
        Environment={"Variables": {"GREETING": "hello", "EMPTY": ""}},
    )
    response, env = invoke(aws, unique_name)
    assert "FunctionError" not in response, env
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == unique_name
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_ENDPOINT_URL"] == server.url
    assert env["GREETING"] == "hello"
    assert env["EMPTY"] == ""
    assert "EMBER_TEST_SECRET" not in env
    assert not [value for value in env.values() if value == "leak"]


# -- function errors ---------------------------------------------------------------

FAILING = """
import sys
import time

def handler(event, context):
    mode = event.get("mode")
    if mode == "raise":
        raise ValueError("kaboom")
    if mode == "exit0":
        sys.exit(0)
    if mode == "exit3":
        sys.exit(3)
    if mode == "sleep":
        time.sleep(3)
    if mode == "oom":
        hog = [b"x" * (1 << 20) for _ in range(400)]  # 400 MB, every page touched
        return len(hog)
    if mode == "huge":
        return "x" * 7_000_000
    if mode == "large":
        return "y" * 5_000_000
    return {"ok": True}
"""


def _check_raise(error: dict[str, Any], rid: str) -> None:
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "kaboom"
    assert error["requestId"] == rid
    assert isinstance(error["stackTrace"], list)
    assert all(isinstance(line, str) for line in error["stackTrace"])
    assert any("/var/task/app.py" in line for line in error["stackTrace"])


def _check_exit0(error: dict[str, Any], rid: str) -> None:
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == (
        f"RequestId: {rid} Error: Runtime exited without providing a reason"
    )


def _check_exit3(error: dict[str, Any], rid: str) -> None:
    assert error["errorType"] == "Runtime.ExitError"
    assert (
        error["errorMessage"] == f"RequestId: {rid} Error: Runtime exited with error: exit status 3"
    )


def _check_timeout(error: dict[str, Any], rid: str) -> None:
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"] == f"RequestId: {rid} Error: Task timed out after 1.00 seconds"


def _check_oom(error: dict[str, Any], rid: str) -> None:
    assert error["errorType"] == "Runtime.OutOfMemory"
    assert rid in error["errorMessage"]


def _check_huge(error: dict[str, Any], rid: str) -> None:
    assert error == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        "(6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("raise", _check_raise),
        ("exit0", _check_exit0),
        ("exit3", _check_exit3),
        ("sleep", _check_timeout),
        ("oom", _check_oom),
        ("huge", _check_huge),
    ],
)
def test_function_failure_is_200_unhandled_and_the_function_recovers(
    aws: Any, deploy: Deploy, mode: str, check: Callable[[dict[str, Any], str], None]
) -> None:
    name = deploy(FAILING, Timeout=1, MemorySize=128)["FunctionName"]
    # Warm the function first: a failure must not spoil the sandboxes that follow.
    response, body = invoke(aws, name)
    assert body["ok"] is True
    response, error = invoke(aws, name, {"mode": mode})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["ExecutedVersion"] == "$LATEST"
    check(error, request_id(response))
    for _ in range(2):
        response, body = invoke(aws, name)
        assert response["StatusCode"] == 200
        assert "FunctionError" not in response, body
        assert body["ok"] is True


LEAVES_AFTER_ANSWERING = """
import os, threading, time, uuid

SANDBOX = uuid.uuid4().hex

def handler(event, context):
    # The process ends once its answer is out, while the sandbox is idle.
    threading.Timer(0.05, os._exit, (0,)).start()
    return SANDBOX
"""


def test_a_sandbox_that_died_while_idle_is_replaced_not_reported(aws: Any, deploy: Deploy) -> None:
    name = deploy(LEAVES_AFTER_ANSWERING)["FunctionName"]
    _, first = invoke(aws, name)
    time.sleep(0.5)  # it has exited; the server has not called it since
    response, second = invoke(aws, name)
    assert "FunctionError" not in response, second
    assert second != first  # a new sandbox (Lambda starts a new environment too)


def test_a_large_response_under_the_limit_succeeds(aws: Any, deploy: Deploy) -> None:
    name = deploy(FAILING)["FunctionName"]
    response, body = invoke(aws, name, {"mode": "large"})
    assert "FunctionError" not in response
    assert body == "y" * 5_000_000


def test_exception_at_import_reports_the_exception_with_no_request_id(
    aws: Any, deploy: Deploy
) -> None:
    name = deploy(
        """
        raise RuntimeError("Runtime startup fails")

        def handler(event, context):
            return "unreachable"
        """
    )["FunctionName"]
    for _ in range(2):  # and the next invoke reports the same, without hanging
        response, error = invoke(aws, name)
        assert response["StatusCode"] == 200
        assert response["FunctionError"] == "Unhandled"
        assert error["errorType"] == "RuntimeError"
        assert error["errorMessage"] == "Runtime startup fails"
        assert error["requestId"] == ""
        assert any("/var/task/app.py" in line for line in error["stackTrace"])


def test_missing_module_is_an_import_module_error(aws: Any, deploy: Deploy) -> None:
    name = deploy(ECHO, Handler="nomod.handler")["FunctionName"]
    for _ in range(2):
        response, error = invoke(aws, name)
        assert response["FunctionError"] == "Unhandled"
        assert error["errorType"] == "Runtime.ImportModuleError"
        assert error["errorMessage"] == "Unable to import module 'nomod': No module named 'nomod'"


def test_missing_handler_function_is_handler_not_found(aws: Any, deploy: Deploy) -> None:
    name = deploy(ECHO, Handler="app.nope")["FunctionName"]
    for _ in range(2):
        response, error = invoke(aws, name)
        assert response["FunctionError"] == "Unhandled"
        assert error["errorType"] == "Runtime.HandlerNotFound"
        assert error["errorMessage"] == "Handler 'nope' missing on module 'app'"


def test_fixed_code_recovers_from_an_init_failure(aws: Any, deploy: Deploy) -> None:
    name = deploy(ECHO, Handler="app.nope")["FunctionName"]
    response, _ = invoke(aws, name)
    assert response["FunctionError"] == "Unhandled"
    aws.update_function_configuration(FunctionName=name, Handler="app.handler")
    response, body = invoke(aws, name, {"x": 1})
    assert "FunctionError" not in response
    assert body == {"event": {"x": 1}}


def test_unserialisable_result_is_a_marshal_error(aws: Any, deploy: Deploy) -> None:
    name = deploy("def handler(event, context):\n    return object()\n")["FunctionName"]
    response, error = invoke(aws, name)
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.MarshalError"
    assert error["requestId"] == request_id(response)


def test_exception_whose_str_raises_is_still_reported(aws: Any, deploy: Deploy) -> None:
    name = deploy(
        """
        class Weird(Exception):
            def __str__(self):
                raise RuntimeError("no message for you")

        def handler(event, context):
            raise Weird()
        """
    )["FunctionName"]
    for _ in range(2):  # the sandbox survives it
        response, error = invoke(aws, name)
        assert response["FunctionError"] == "Unhandled"
        assert error["errorType"] == "Weird"
        assert error["requestId"] == request_id(response)
        assert isinstance(error["errorMessage"], str)


def test_output_printed_before_an_exit_is_in_the_log(aws: Any, deploy: Deploy) -> None:
    name = deploy(
        """
        import sys

        def handler(event, context):
            print("last words", event["n"])
            if event["n"] == 1:
                sys.exit(3)
            raise KeyboardInterrupt
        """
    )["FunctionName"]
    for n in (1, 2):
        response, error = invoke(aws, name, {"n": n}, LogType="Tail")
        assert response["FunctionError"] == "Unhandled"
        assert error["errorType"] == "Runtime.ExitError"
        assert f"last words {n}" in log_tail(response)


# -- request errors -------------------------------------------------------------------


def test_request_over_6_mb_is_413(aws: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)["FunctionName"]
    payload = b'"' + b"x" * (6 * 1024 * 1024) + b'"'
    with pytest.raises(ClientError) as caught:
        aws.invoke(FunctionName=name, Payload=payload)
    error = caught.value.response
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291456" in error["Error"]["Message"]


def test_request_just_under_6_mb_is_accepted(aws: Any, deploy: Deploy) -> None:
    name = deploy("def handler(event, context):\n    return len(event)\n")["FunctionName"]
    payload = b'"' + b"x" * (6 * 1024 * 1024 - 2) + b'"'  # exactly 6,291,456 bytes
    response, body = invoke(aws, name, payload)
    assert "FunctionError" not in response
    assert body == 6 * 1024 * 1024 - 2


def test_body_that_is_not_json_is_400(aws: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)["FunctionName"]
    with pytest.raises(aws.exceptions.InvalidRequestContentException) as caught:
        aws.invoke(FunctionName=name, Payload=b"{not json")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_empty_body_is_an_empty_object(aws: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)["FunctionName"]
    response, body = invoke(aws, name, b"")
    assert "FunctionError" not in response
    assert body == {"event": {}}


# -- logs ------------------------------------------------------------------------------

PRINTING = """
import logging

print("init says hi")

def handler(event, context):
    print("hello from", context.aws_request_id)
    logging.getLogger().warning("a warning")
    print("x" * event.get("spam", 0))
    return "done"
"""


def test_log_tail_has_start_end_report_and_the_output(aws: Any, deploy: Deploy) -> None:
    name = deploy(PRINTING)["FunctionName"]
    cold, _ = invoke(aws, name, LogType="Tail")
    warm, _ = invoke(aws, name, LogType="Tail")
    for response in (cold, warm):
        rid = request_id(response)
        tail = log_tail(response)
        assert len(base64.b64decode(response["LogResult"])) <= MAX_TAIL
        lines = tail.splitlines()
        assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
        assert f"hello from {rid}" in lines
        assert any("a warning" in line and rid in line for line in lines)
        assert f"END RequestId: {rid}" in lines
        report = lines[-1]
        assert report.startswith(f"REPORT RequestId: {rid}\t")
        for field in (
            "Duration: ",
            "Billed Duration: ",
            "Memory Size: 128 MB",
            "Max Memory Used: ",
        ):
            assert field in report
    assert "init says hi" in log_tail(cold)
    assert "Init Duration: " in log_tail(cold).splitlines()[-1]
    assert "init says hi" not in log_tail(warm)
    assert "Init Duration" not in log_tail(warm)


def test_log_tail_is_at_most_4_kb(aws: Any, deploy: Deploy) -> None:
    name = deploy(PRINTING)["FunctionName"]
    response, body = invoke(aws, name, {"spam": 20_000}, LogType="Tail")
    assert body == "done"
    raw = base64.b64decode(response["LogResult"])
    assert len(raw) <= MAX_TAIL
    assert raw.decode().splitlines()[-1].startswith(f"REPORT RequestId: {request_id(response)}")


def test_no_log_result_unless_asked(aws: Any, deploy: Deploy) -> None:
    name = deploy(PRINTING)["FunctionName"]
    response, _ = invoke(aws, name)
    assert "LogResult" not in response


def test_log_tail_of_a_failure_names_the_error(aws: Any, deploy: Deploy) -> None:
    name = deploy(FAILING)["FunctionName"]
    response, _ = invoke(aws, name, {"mode": "raise"}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    tail = log_tail(response)
    assert "ValueError" in tail and "kaboom" in tail
    assert tail.splitlines()[-1].startswith(f"REPORT RequestId: {request_id(response)}")


# -- warm sandboxes -----------------------------------------------------------------------
#
# A sandbox's runtime is PID 1 of its own PID namespace, so a function tells its
# sandboxes apart by a token made at Init; their host pids come from the server.

COUNTER = (
    TOKEN_SOURCE
    + """
calls = 0

def handler(event, context):
    global calls
    seen = calls
    calls += 1
    return {"calls": seen, "token": TOKEN}
"""
)


def test_module_state_survives_between_warm_calls(aws: Any, server: Server, deploy: Deploy) -> None:
    name = deploy(COUNTER)["FunctionName"]
    results = [invoke(aws, name)[1] for _ in range(3)]
    assert [result["calls"] for result in results] == [0, 1, 2]
    assert len({result["token"] for result in results}) == 1
    assert len(sandboxes_of(server, name)) == 1


def test_concurrent_calls_get_their_own_sandboxes(aws: Any, server: Server, deploy: Deploy) -> None:
    name = deploy(
        TOKEN_SOURCE
        + """
import time

def handler(event, context):
    time.sleep(0.5)
    return TOKEN
"""
    )["FunctionName"]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: invoke(aws, name), range(8)))
    for response, _ in results:
        assert response["StatusCode"] == 200
        assert "FunctionError" not in response
    tokens = [token for _, token in results]
    assert len(set(tokens)) == 8
    # Eight sandboxes, each its own live process on the host, all kept warm.
    pids = [entry["pid"] for entry in sandboxes_of(server, name)]
    assert len(set(pids)) == len(pids) == 8
    assert not [pid for pid in pids if pid_gone(pid)]


FILESYSTEM = (
    TOKEN_SOURCE
    + """
import os

def handler(event, context):
    if event.get("write_tmp"):
        with open("/tmp/marker", "w") as handle:
            handle.write(event["write_tmp"])
    marker = None
    if os.path.exists("/tmp/marker"):
        with open("/tmp/marker") as handle:
            marker = handle.read()
    try:
        with open("/var/task/intruder.txt", "w") as handle:
            handle.write("x")
        task_error = None
    except OSError as exc:
        task_error = exc.errno
    with open("/var/task/app.py") as handle:
        readable = "def handler" in handle.read()
    return {"marker": marker, "task_error": task_error, "readable": readable,
            "cwd": os.getcwd(), "token": TOKEN}
"""
)


def test_tmp_persists_on_a_warm_sandbox_and_var_task_is_read_only(aws: Any, deploy: Deploy) -> None:
    name = deploy(FILESYSTEM)["FunctionName"]
    _, first = invoke(aws, name, {"write_tmp": "from call one"})
    _, second = invoke(aws, name)
    assert first["token"] == second["token"]
    assert second["marker"] == "from call one"
    for result in (first, second):
        assert result["task_error"] == errno.EROFS
        assert result["readable"] is True
        assert result["cwd"] == "/var/task"


# Publishes its token in its own /tmp, where the host can look it up by pid.
PUBLISHED = (
    TOKEN_SOURCE
    + """
with open("/tmp/token", "w") as handle:
    handle.write(TOKEN)

def handler(event, context):
    return TOKEN
"""
)


def test_sandboxes_endpoint_lists_the_warm_sandbox(
    aws: Any, server: Server, deploy: Deploy
) -> None:
    name = deploy(PUBLISHED)["FunctionName"]
    _, token = invoke(aws, name)
    # The host pid comes on the zygote's channel, the reply on the sandbox's: it may be
    # known a moment after the call returns (0 until then).
    listed = wait_until(lambda: (rows := sandboxes_of(server, name)) and rows[0]["pid"] and rows)
    assert len(listed) == 1
    entry = listed[0]
    assert {"id", "function", "pid", "state"} <= set(entry)
    assert entry["state"] == "idle"
    # The listed pid is the host pid of the sandbox that ran the call: PID 1 of
    # its own namespace, with the token of that call in its /tmp.
    assert namespace_pids(entry["pid"])[-1] == 1
    assert read_in_sandbox(entry["pid"], "/tmp/token") == token


def test_deleting_a_function_retires_its_sandboxes(
    aws: Any, server: Server, deploy: Deploy
) -> None:
    name = deploy(COUNTER)["FunctionName"]
    invoke(aws, name)
    pid = host_pid_of(server, name)
    aws.delete_function(FunctionName=name)
    wait_until(lambda: not sandboxes_of(server, name))
    wait_until(lambda: pid_gone(pid))


def test_updating_code_starts_fresh_sandboxes(aws: Any, server: Server, deploy: Deploy) -> None:
    name = deploy(COUNTER)["FunctionName"]
    _, before = invoke(aws, name)
    pid_before = host_pid_of(server, name)
    aws.update_function_code(
        FunctionName=name,
        ZipFile=make_zip(
            {"app.py": TOKEN_SOURCE + "def handler(e, c):\n    return {'token': TOKEN}\n"}
        ),
    )
    _, after = invoke(aws, name)
    assert "calls" not in after
    assert after["token"] != before["token"]
    wait_until(lambda: pid_gone(pid_before))
    assert host_pid_of(server, name) != pid_before


def test_idle_sandboxes_are_reclaimed(
    spawn_server: Callable[..., Server], unique_name: str
) -> None:
    server = spawn_server(None, "--keep-alive", "1")
    aws = lambda_client(server)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": COUNTER})},
    )
    _, result = invoke(aws, unique_name)
    pid = host_pid_of(server, unique_name)
    assert [s["function"] for s in sandboxes_of(server, unique_name)] == [unique_name]
    wait_until(lambda: not sandboxes_of(server, unique_name), timeout=30)
    wait_until(lambda: pid_gone(pid), timeout=30)
    # A later call simply cold-starts a new sandbox.
    _, again = invoke(aws, unique_name)
    assert again["calls"] == 0
    assert again["token"] != result["token"]


# -- runtimes ----------------------------------------------------------------------------------

VERSION = """
import sys

def handler(event, context):
    return list(sys.version_info[:2])
"""


@pytest.mark.parametrize("minor", range(9, 15))
def test_every_python_runtime_runs_or_is_refused(aws: Any, deploy: Deploy, minor: int) -> None:
    if not host_has_python(minor):  # never run on another interpreter
        with pytest.raises(aws.exceptions.InvalidParameterValueException, match=f"python3.{minor}"):
            deploy(VERSION, Runtime=f"python3.{minor}")
        return
    name = deploy(VERSION, Runtime=f"python3.{minor}")["FunctionName"]
    response, version = invoke(aws, name)
    assert "FunctionError" not in response, version
    assert version == [3, minor]


def test_a_runtime_the_host_lacks_is_refused_on_update_too(aws: Any, deploy: Deploy) -> None:
    missing = next((m for m in range(9, 15) if not host_has_python(m)), None)
    if missing is None:
        pytest.skip("this host has every python3.x runtime")
    name = deploy(VERSION)["FunctionName"]
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        aws.update_function_configuration(FunctionName=name, Runtime=f"python3.{missing}")
    assert f"python3.{missing}" in str(refused.value)
    assert aws.get_function_configuration(FunctionName=name)["Runtime"] == "python3.11"


def test_matching_interpreters_on_this_host(aws: Any, deploy: Deploy) -> None:
    if not (host_has_python(9) and host_has_python(12)):
        pytest.skip("python3.9 and python3.12 are not both installed on this host")
    for minor in (9, 12):
        name = deploy(VERSION, Runtime=f"python3.{minor}")["FunctionName"]
        assert invoke(aws, name)[1] == [3, minor]


# -- naming ------------------------------------------------------------------------------------


def test_invoke_by_every_form_of_the_name(aws: Any, deploy: Deploy) -> None:
    created = deploy(ECHO)
    name, arn = created["FunctionName"], created["FunctionArn"]
    account = arn.split(":")[4]
    for function, params in (
        (arn, {}),
        (f"{arn}:$LATEST", {}),
        (f"{account}:function:{name}", {}),
        (f"{name}:$LATEST", {}),
        (name, {"Qualifier": "$LATEST"}),
    ):
        response, body = invoke(aws, function, {"via": function}, **params)
        assert response["StatusCode"] == 200, function
        assert body == {"event": {"via": function}}
        assert response["ExecutedVersion"] == "$LATEST"


def test_unknown_function_is_404(aws: Any) -> None:
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.invoke(FunctionName="no-such-function-at-all", Payload=b"{}")
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "no-such-function-at-all" in error["Error"]["Message"]

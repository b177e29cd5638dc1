"""Issue 6, point 3: custom runtimes against the Lambda Runtime API, through boto3.

Functions with the runtimes ``provided``, ``provided.al2`` and
``provided.al2023`` ship a ``bootstrap``; the sandbox's init serves the
Runtime API on 127.0.0.1:9001 inside the sandbox's own network namespace and
relays each invocation to it. The bootstraps here are what users write: a
``/bin/sh`` loop over ``curl``, a Python script over ``urllib``, and
``awslambdaric`` from PyPI run unmodified. Each failure comes back as the
payload Lambda gives, and a custom runtime is isolated exactly as a Python
function is.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import invoke_json, request_id_of

from conftest import EMBER, ROLE, Server, lambda_client

# Functions the shell bootstraps below share: the Runtime API as curl calls.
SH_RUNTIME = """#!/bin/sh
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS=/tmp/next-headers
next_event() {
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(header Lambda-Runtime-Aws-Request-Id)
}
header() { grep -i "^$1:" "$HEADERS" | tr -d '\\r' | cut -d' ' -f2-; }
post() {  # post PATH BODY: prints the status code, keeps the body in /tmp/answer
  curl -sS -o /tmp/answer -w '%{http_code}' -X POST --data-binary "$2" "$API/$1"
}
respond() { post "invocation/$REQUEST_ID/response" "$1" >/dev/null; }
"""

ECHO_BOOTSTRAP = (
    SH_RUNTIME
    + """
echo "shell runtime starting"
COUNT=0
while true; do
  next_event
  COUNT=$((COUNT + 1))
  echo "handling $REQUEST_ID"
  CONTEXT=$(header Lambda-Runtime-Client-Context)
  respond "{\\"event\\": $EVENT, \\"requestId\\": \\"$REQUEST_ID\\",
    \\"deadline\\": $(header Lambda-Runtime-Deadline-Ms),
    \\"arn\\": \\"$(header Lambda-Runtime-Invoked-Function-Arn)\\",
    \\"trace\\": \\"$(header Lambda-Runtime-Trace-Id)\\",
    \\"clientContext\\": ${CONTEXT:-null},
    \\"handler\\": \\"${_HANDLER:-}\\", \\"api\\": \\"$AWS_LAMBDA_RUNTIME_API\\",
    \\"taskRoot\\": \\"$LAMBDA_TASK_ROOT\\", \\"cwd\\": \\"$(pwd)\\", \\"count\\": $COUNT}"
done
"""
)


def package(files: dict[str, str | bytes], executable: tuple[str, ...] = ("bootstrap",)) -> bytes:
    """A zip as a Lambda user builds one: the bootstrap keeps its executable bit."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


Deploy = Callable[..., str]


@pytest.fixture
def deploy_custom(aws: Any, unique_name: str) -> Iterator[Deploy]:
    """Create a custom-runtime function from files; deleted after the test."""
    created: list[str] = []

    def create(files: dict[str, str | bytes], **settings: Any) -> str:
        name = f"{unique_name}-{len(created)}"
        params = {"Runtime": "provided.al2023", "Role": ROLE, "Timeout": 10, **settings}
        aws.create_function(FunctionName=name, Code={"ZipFile": package(files)}, **params)
        created.append(name)
        return name

    yield create
    for name in created:
        aws.delete_function(FunctionName=name)


def invoke(aws: Any, name: str, event: Any = None, **params: Any) -> tuple[dict[str, Any], Any]:
    response = aws.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **params)
    return response, json.loads(response["Payload"].read())


def log_of(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode(errors="replace")


def test_a_shell_bootstrap_serves_invocations(aws: Any, deploy_custom: Deploy) -> None:
    name = deploy_custom({"bootstrap": ECHO_BOOTSTRAP}, Handler="function.handler")
    configuration = aws.get_function(FunctionName=name)["Configuration"]
    assert configuration["Runtime"] == "provided.al2023"
    context = base64.b64encode(json.dumps({"custom": {"tenant": "t1"}}).encode()).decode()
    response, result = invoke(aws, name, {"n": 1}, ClientContext=context, LogType="Tail")
    assert "FunctionError" not in response
    assert result["event"] == {"n": 1}
    assert result["requestId"] == request_id_of(response)
    assert result["arn"].endswith(f":function:{name}")
    assert result["trace"].startswith("Root=1-")
    assert result["clientContext"] == {"custom": {"tenant": "t1"}}
    assert result["deadline"] > 0
    assert result["handler"] == "function.handler"
    # Lambda's address, inside the sandbox's own network namespace.
    assert result["api"] == "127.0.0.1:9001"
    assert result["taskRoot"] == "/var/task" and result["cwd"] == "/var/task"
    log = log_of(response)
    assert "shell runtime starting" in log and f"handling {result['requestId']}" in log
    # The same runtime process serves the next call (warm).
    assert invoke_json(aws, name, {"n": 2})["count"] == 2


def test_handler_is_optional_for_custom_runtimes(aws: Any, deploy_custom: Deploy) -> None:
    for runtime in ("provided", "provided.al2"):
        name = deploy_custom({"bootstrap": ECHO_BOOTSTRAP}, Runtime=runtime)
        assert "Handler" not in aws.get_function(FunctionName=name)["Configuration"]
        assert invoke_json(aws, name, {"r": runtime})["event"] == {"r": runtime}


ERRORS_BOOTSTRAP = (
    SH_RUNTIME
    + """
PREVIOUS='{}'
while true; do
  next_event
  case "$EVENT" in
    *big*)
      head -c 6291557 /dev/zero | tr '\\0' 'a' > /tmp/big
      BIG=$(curl -sS -o /tmp/answer -w '%{http_code}' -X POST --data-binary @/tmp/big \\
        "$API/invocation/$REQUEST_ID/response")
      PREVIOUS="{\\"big\\": $BIG, \\"bigBody\\": $(cat /tmp/answer)}"
      continue;;
  esac
  UNKNOWN=$(post "invocation/not-$REQUEST_ID/response" '{}')
  UNKNOWN_BODY=$(cat /tmp/answer)
  respond "{\\"previous\\": $PREVIOUS}"
  AGAIN=$(post "invocation/$REQUEST_ID/response" '{}')
  PREVIOUS="{\\"unknown\\": $UNKNOWN, \\"unknownBody\\": $UNKNOWN_BODY,
    \\"again\\": $AGAIN, \\"againBody\\": $(cat /tmp/answer)}"
done
"""
)


def test_the_runtime_api_answers_mistakes_with_lambdas_errors(
    aws: Any, deploy_custom: Deploy
) -> None:
    name = deploy_custom({"bootstrap": ERRORS_BOOTSTRAP})
    invoke_json(aws, name)
    # What the runtime saw during the first call, reported by the second.
    seen = invoke_json(aws, name)["previous"]
    assert seen["unknown"] == 400
    assert seen["unknownBody"] == {
        "errorMessage": "Invalid request ID",
        "errorType": "InvalidRequestID",
    }
    assert seen["again"] == 403
    assert seen["againBody"]["errorType"] == "InvalidStateTransition"

    response, payload = invoke(aws, name, {"big": True})
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        "(6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }
    # The environment stays usable, and the runtime was told 413.
    seen = invoke_json(aws, name)["previous"]
    assert seen["big"] == 413
    assert seen["bigBody"]["errorType"] == "RequestEntityTooLarge"


INIT_ERROR_BOOTSTRAP = (
    SH_RUNTIME
    + """
echo "cannot load the configuration"
curl -sS -o /dev/null -X POST -H 'Lambda-Runtime-Function-Error-Type: Runtime.ConfigError' \\
  --data-binary '{"errorMessage": "no configuration", "errorType": "Runtime.ConfigError",
                  "stackTrace": []}' "$API/init/error"
exit 1
"""
)


def test_init_error_returns_the_runtimes_payload(aws: Any, deploy_custom: Deploy) -> None:
    name = deploy_custom({"bootstrap": INIT_ERROR_BOOTSTRAP})
    response, payload = invoke(aws, name, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorMessage": "no configuration",
        "errorType": "Runtime.ConfigError",
        "stackTrace": [],
    }
    assert "cannot load the configuration" in log_of(response)


EXITING_BOOTSTRAP = (
    SH_RUNTIME
    + """
if [ -n "${EXIT_AT_INIT:-}" ]; then echo "giving up at init"; exit 2; fi
while true; do
  next_event
  case "$EVENT" in *exit*) echo "leaving mid-invocation"; exit 3;; esac
  respond '"still here"'
done
"""
)


def test_a_bootstrap_that_exits_is_a_runtime_exit_error(aws: Any, deploy_custom: Deploy) -> None:
    name = deploy_custom({"bootstrap": EXITING_BOOTSTRAP})
    response, payload = invoke(aws, name, {"exit": True}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    request_id = request_id_of(response)
    assert payload == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: exit status 3",
    }
    assert "leaving mid-invocation" in log_of(response)
    # That sandbox is gone; the next call gets a fresh one.
    assert invoke(aws, name)[1] == "still here"

    exits_at_init = deploy_custom(
        {"bootstrap": EXITING_BOOTSTRAP}, Environment={"Variables": {"EXIT_AT_INIT": "1"}}
    )
    response, payload = invoke(aws, exits_at_init, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "Runtime exited with error: exit status 2",
    }
    assert "giving up at init" in log_of(response)


def test_a_package_without_bootstrap_is_an_invalid_entrypoint(
    aws: Any, deploy_custom: Deploy
) -> None:
    name = deploy_custom({"main.sh": "#!/bin/sh\n"})
    response, payload = invoke(aws, name)
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.InvalidEntrypoint"
    assert "Couldn't find valid bootstrap(s): [/var/task/bootstrap" in payload["errorMessage"]


SLOW_BOOTSTRAP = (
    SH_RUNTIME
    + """
while true; do
  next_event
  case "$EVENT" in *sleep*) sleep 30;; esac
  respond '"quick"'
done
"""
)

# A custom runtime in Python: the Runtime API over urllib, no library at all.
PYTHON_BOOTSTRAP = """#!/usr/bin/env python3
import os
import urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
while True:
    with urllib.request.urlopen(API + "/invocation/next") as answer:
        request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
        event = answer.read()
    if b"hog" in event:
        hog = []
        while True:
            hog.append(b"x" * (16 << 20))
    url = API + "/invocation/" + request_id + "/response"
    urllib.request.urlopen(urllib.request.Request(url, data=b'"python"', method="POST")).read()
"""


def test_timeouts_and_out_of_memory_end_the_sandbox(aws: Any, deploy_custom: Deploy) -> None:
    slow = deploy_custom({"bootstrap": SLOW_BOOTSTRAP}, Timeout=1)
    response, payload = invoke(aws, slow, {"sleep": True})
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request_id_of(response)} Error: "
        "Task timed out after 1.00 seconds",
    }
    assert invoke(aws, slow)[1] == "quick"

    hog = deploy_custom({"bootstrap": PYTHON_BOOTSTRAP}, MemorySize=128)
    assert invoke(aws, hog)[1] == "python"
    response, payload = invoke(aws, hog, {"hog": True})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.OutOfMemory"
    assert "Runtime exited with error: signal: killed" in payload["errorMessage"]
    assert invoke(aws, hog)[1] == "python"


PROBE_BOOTSTRAP = (
    SH_RUNTIME
    + """
while true; do
  next_event
  PORT=$(echo "$EVENT" | tr -dc 0-9)
  if cat /etc/shadow >/dev/null 2>&1; then SHADOW=readable; else SHADOW=unreadable; fi
  if curl -sS -m 3 -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null; then
    SERVER=reachable; else SERVER=unreachable; fi
  if touch /var/task/written 2>/dev/null; then TASK=writable; else TASK=read-only; fi
  STATUS=/proc/self/status
  respond "{\\"shadow\\": \\"$SHADOW\\", \\"server\\": \\"$SERVER\\", \\"task\\": \\"$TASK\\",
    \\"uid\\": $(id -u), \\"parent\\": $(cut -d' ' -f4 /proc/$$/stat),
    \\"seccomp\\": \\"$(grep '^Seccomp:' $STATUS | cut -f2)\\",
    \\"noNewPrivs\\": \\"$(grep '^NoNewPrivs:' $STATUS | cut -f2)\\",
    \\"capEff\\": \\"$(grep '^CapEff:' $STATUS | cut -f2)\\",
    \\"interfaces\\": \\"$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\\",
    \\"hostname\\": \\"$(cat /proc/sys/kernel/hostname)\\"}"
done
"""
)


def test_a_custom_runtime_is_isolated_like_a_python_function(
    server: Server, aws: Any, deploy_custom: Deploy
) -> None:
    name = deploy_custom({"bootstrap": PROBE_BOOTSTRAP})
    seen = invoke_json(aws, name, {"port": server.port})
    assert seen["shadow"] == "unreadable"
    assert seen["server"] == "unreachable"
    assert seen["task"] == "read-only"
    assert seen["uid"] != 0
    # The bootstrap's parent is the sandbox's init (PID 1 of its own namespace).
    assert seen["parent"] == 1
    assert seen["seccomp"] == "2" and seen["noNewPrivs"] == "1"
    assert seen["capEff"] == "0000000000000000"
    assert seen["interfaces"].split() == ["lo"]
    assert seen["hostname"] == "sandbox"


@pytest.mark.skipif(shutil.which("runsc") is None, reason="gVisor's runsc is not installed")
def test_a_custom_runtime_runs_on_gvisor(server: Server, aws: Any, deploy_custom: Deploy) -> None:
    name = deploy_custom({"bootstrap": EXITING_BOOTSTRAP}, Timeout=30)
    changed = server.http.put(
        f"/_ember/functions/{name}/sandbox", json={"Isolation": "strong"}, timeout=30
    )
    assert changed.status_code == 200, changed.text
    assert invoke(aws, name)[1] == "still here"
    response, payload = invoke(aws, name, {"exit": True})
    assert payload == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id_of(response)} Error: "
        "Runtime exited with error: exit status 3",
    }
    assert invoke(aws, name)[1] == "still here"


def test_without_isolation_the_runtime_api_takes_a_free_port(
    spawn_server: Callable[..., Server],
) -> None:
    server = spawn_server(None, "--sandbox", "process")
    aws = lambda_client(server)
    aws.create_function(
        FunctionName="echo",
        Runtime="provided",
        Role=ROLE,
        Code={"ZipFile": package({"bootstrap": ECHO_BOOTSTRAP})},
    )
    result = invoke_json(aws, "echo", {"n": 1})
    host, port = result["api"].split(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert result["event"] == {"n": 1}


def test_the_cli_deploys_a_bootstrap_directory(
    server: Server, aws: Any, unique_name: str, tmp_path: Path
) -> None:
    (tmp_path / "bootstrap").write_text(ECHO_BOOTSTRAP)
    (tmp_path / "bootstrap").chmod(0o755)
    deployed = subprocess.run(
        [EMBER, "deploy", unique_name, str(tmp_path), "--runtime", "provided.al2023"],
        env=server.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert deployed.returncode == 0, deployed.stderr
    try:
        assert invoke_json(aws, unique_name, {"cli": True})["event"] == {"cli": True}
    finally:
        aws.delete_function(FunctionName=unique_name)


# --- awslambdaric, from PyPI, unmodified --------------------------------------------


def _distribution_files(name: str, seen: set[str]) -> dict[str, bytes]:
    """The installed files of ``name`` and everything it requires (no metadata)."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return {}
    seen.add(key)
    distribution = metadata.distribution(name)
    files = {}
    for path in distribution.files or []:
        if path.parts[0].endswith(".dist-info") or "__pycache__" in path.parts:
            continue
        if path.parts[0] in ("..", "bin"):
            continue
        files[str(path)] = Path(str(distribution.locate_file(path))).read_bytes()
    for requirement in distribution.requires or []:
        if "extra ==" in requirement:
            continue
        files.update(_distribution_files(re.split(r"[\s<>=!~;\[(]", requirement)[0], seen))
    return files


def _sandbox_python_matches() -> None:
    """awslambdaric ships a C extension: the sandbox's python3 must share our ABI."""
    found = subprocess.run(
        [
            "/usr/bin/env",
            "-i",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "python3",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = "{}.{}".format(*sys.version_info[:2])
    assert found == ours, (
        f"the sandbox's python3 is {found}, but awslambdaric was installed for {ours}"
    )


RIC_APP = """
import os

print("app imported")
if os.environ.get("BREAK_INIT"):
    raise RuntimeError("Runtime startup fails")


def handler(event, context):
    print("handling", context.aws_request_id)
    if event.get("fail"):
        raise ValueError("kaboom")
    return {
        "event": event,
        "function": context.function_name,
        "version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "request": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "custom": context.client_context.custom if context.client_context else None,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }
"""


@pytest.fixture(scope="module")
def ric_package() -> bytes:
    _sandbox_python_matches()
    files: dict[str, str | bytes] = dict(_distribution_files("awslambdaric", set()))
    files["app.py"] = RIC_APP
    files["bootstrap"] = "#!/bin/sh\nexec python3 -m awslambdaric app.handler\n"
    return package(files)


def test_awslambdaric_runs_unmodified(aws: Any, unique_name: str, ric_package: bytes) -> None:
    name = unique_name
    aws.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Timeout=10,
        Code={"ZipFile": ric_package},
    )
    try:
        context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
        response, result = invoke(aws, name, {"a": 1}, ClientContext=context, LogType="Tail")
        assert "FunctionError" not in response, result
        assert result["event"] == {"a": 1}
        assert result["function"] == name and result["version"] == "$LATEST"
        assert result["memory"] == "128"  # a string, as on AWS
        assert result["arn"].endswith(f":function:{name}")
        assert result["request"] == request_id_of(response)
        assert 0 < result["remaining"] <= 10_000
        assert result["custom"] == {"k": "v"}
        assert result["trace"].startswith("Root=1-")
        assert "app imported" in log_of(response)

        response, payload = invoke(aws, name, {"fail": True})
        assert response["FunctionError"] == "Unhandled"
        assert payload["errorType"] == "ValueError"
        assert payload["errorMessage"] == "kaboom"
        assert payload["requestId"] == request_id_of(response)
        assert payload["stackTrace"][-1].startswith('  File "/var/task/app.py"')
        assert 'raise ValueError("kaboom")' in payload["stackTrace"][-1]

        aws.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"BREAK_INIT": "1"}}
        )
        response, payload = invoke(aws, name)
        assert response["FunctionError"] == "Unhandled"
        assert payload["errorType"] == "RuntimeError"
        assert payload["errorMessage"] == "Runtime startup fails"
        assert payload["requestId"] == ""
        assert any("/var/task/app.py" in frame for frame in payload["stackTrace"])
    finally:
        aws.delete_function(FunctionName=name)


# Holds the memory an event asks for, then answers: the running bootstrap's own use.
HOLDING_BOOTSTRAP = """#!/usr/bin/env python3
import json
import os
import urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
held = []
while True:
    with urllib.request.urlopen(API + "/invocation/next") as answer:
        request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(answer.read())
    held.append(bytearray(event["mb"] << 20))  # zero-filled: every page touched
    url = API + "/invocation/" + request_id + "/response"
    urllib.request.urlopen(urllib.request.Request(url, data=b'"held"', method="POST")).read()
"""


def test_max_memory_used_is_the_running_bootstraps(aws: Any, deploy_custom: Deploy) -> None:
    name = deploy_custom({"bootstrap": HOLDING_BOOTSTRAP}, MemorySize=512)
    response, payload = invoke(aws, name, {"mb": 200}, LogType="Tail")
    assert payload == "held"
    used = int(re.search(r"Max Memory Used: (\d+) MB", log_of(response))[1])  # type: ignore[index]
    assert 200 <= used < 512
    # The peak stays: a small call after a large one reports at least as much.
    response, _ = invoke(aws, name, {"mb": 1}, LogType="Tail")
    later = int(re.search(r"Max Memory Used: (\d+) MB", log_of(response))[1])  # type: ignore[index]
    assert later >= used

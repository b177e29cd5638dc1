"""End-to-end: the lines a function printed survive what kills it, and the server.

A function's output leaves the sandbox as it is written (one frame per line),
so a timeout, ``os._exit``, a segfault or the OOM killer cannot take the lines
printed before it: they appear in ``LogType=Tail`` and in the function's log
(GET /_ember/functions/{name}/logs). The log file is written at least every
0.1 s, so a ``kill -9`` of ``ember serve`` loses at most the last second.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import signal
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import ROLE, Server, lambda_client, make_zip, sandboxes_of, wait_until

Deploy = Callable[..., dict[str, Any]]

DYING = """
import ctypes
import os
import sys
import time

def handler(event, context):
    mode = event["mode"]
    print("printed before " + mode + " " + context.aws_request_id)
    sys.stderr.write("stderr before " + mode + "\\n")
    if mode == "timeout":
        time.sleep(30)
    if mode == "exit":
        os._exit(3)
    if mode == "segfault":
        ctypes.string_at(0)
    if mode == "oom":
        hog = [b"x" * (1 << 20) for _ in range(400)]  # 400 MB, every page touched
        return len(hog)
    return "lived"
"""

EXPECTED_ERRORS = {
    "timeout": "Sandbox.Timedout",
    "exit": "Runtime.ExitError",
    "segfault": "Runtime.ExitError",
    "oom": "Runtime.OutOfMemory",
}

TICKING = """
import time

def handler(event, context):
    for i in range(event["lines"]):
        print("tick %d %.3f" % (i, time.time()))
        time.sleep(0.1)
    return "done"
"""


def _logs(server: Server, name: str) -> str:
    response = server.http.get(f"/_ember/functions/{name}/logs")
    assert response.status_code == 200, response.text
    return str(response.json()["logs"])


@pytest.mark.parametrize("mode", sorted(EXPECTED_ERRORS))
def test_lines_printed_before_the_function_dies_are_kept(
    server: Server, aws: Any, deploy: Deploy, mode: str
) -> None:
    name = deploy(DYING, Timeout=1, MemorySize=128)["FunctionName"]
    response = aws.invoke(
        FunctionName=name, Payload=json.dumps({"mode": mode}).encode(), LogType="Tail"
    )
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == EXPECTED_ERRORS[mode], error
    request_id = response["ResponseMetadata"]["RequestId"]
    printed = f"printed before {mode} {request_id}"
    tail = base64.b64decode(response["LogResult"]).decode()
    assert printed in tail
    assert f"stderr before {mode}" in tail
    assert tail.splitlines()[-1].startswith(f"REPORT RequestId: {request_id}")
    log = _logs(server, name)
    assert printed in log
    # The lines sit inside their invocation's START ... END, before its REPORT.
    start = log.index(f"START RequestId: {request_id}")
    end = log.index(f"END RequestId: {request_id}")
    assert start < log.index(printed) < end < log.index(f"REPORT RequestId: {request_id}")


def test_a_function_that_lives_logs_each_line_once(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(DYING)["FunctionName"]
    response = aws.invoke(FunctionName=name, Payload=b'{"mode": "live"}', LogType="Tail")
    assert json.loads(response["Payload"].read()) == "lived"
    request_id = response["ResponseMetadata"]["RequestId"]
    tail = base64.b64decode(response["LogResult"]).decode()
    assert tail.count(f"printed before live {request_id}") == 1
    assert _logs(server, name).count(f"printed before live {request_id}") == 1


FORKING = """
import os

def handler(event, context):
    pid = os.fork()
    if pid == 0:
        for i in range(200):
            print("child line", i)
        os._exit(0)
    for i in range(200):
        print("parent line", i)
    os.waitpid(pid, 0)
    return "forked"
"""


def test_a_forked_child_s_output_does_not_break_the_protocol(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(FORKING)["FunctionName"]
    for _ in range(3):
        response = aws.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        assert json.loads(response["Payload"].read()) == "forked"
        assert "parent line 199" in base64.b64decode(response["LogResult"]).decode()
    wait_until(lambda: _logs(server, name).count("child line 199") == 3)


CUSTOM_BOOTSTRAP = """#!/bin/sh
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
curl -sS -o /dev/null "$API/invocation/next"
echo "custom runtime printed before timeout"
sleep 30
"""


def test_a_custom_runtime_s_lines_survive_its_timeout(server: Server, aws: Any) -> None:
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o755 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, CUSTOM_BOOTSTRAP)
    name = f"custom-dies-{uuid.uuid4().hex[:6]}"
    aws.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Handler="unused",
        Role=ROLE,
        Timeout=1,
        Code={"ZipFile": buffer.getvalue()},
    )
    try:
        response = aws.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        error = json.loads(response["Payload"].read())
        assert error["errorType"] == "Sandbox.Timedout", error
        tail = base64.b64decode(response["LogResult"]).decode()
        assert "custom runtime printed before timeout" in tail
        assert "custom runtime printed before timeout" in _logs(server, name)
    finally:
        aws.delete_function(FunctionName=name)


def _ticks(log: str) -> list[tuple[int, float]]:
    found = []
    for line in log.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "tick":
            found.append((int(parts[1]), float(parts[2])))
    return found


def test_a_kill_9_of_the_server_loses_at_most_the_last_second(
    spawn_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = spawn_server()
    aws = lambda_client(server)
    name = "ticking"
    aws.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Timeout=60,
        Code={"ZipFile": make_zip({"app.py": TICKING})},
    )
    # A synchronous call in a thread: its client sees the connection drop.
    caller = threading.Thread(
        target=lambda: _invoke_quietly(aws, name, {"lines": 400}), daemon=True
    )
    caller.start()
    wait_until(lambda: sandboxes_of(server, name), timeout=30)
    time.sleep(3)  # let it print ~30 lines; nothing below measures time
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    server.process.wait(10)
    caller.join(30)

    restarted = spawn_server(server.data_dir)
    ticks = _ticks(_logs(restarted, name))
    printed_early = [i for i, at in ticks if at <= killed_at - 1.0]
    assert len(printed_early) >= 10, ticks
    # Every line printed more than a second before the kill is in the log, in order.
    kept = [i for i, _ in ticks]
    assert kept[: len(printed_early)] == list(range(len(printed_early)))
    last_early = max(printed_early)
    assert list(range(last_early + 1)) == kept[: last_early + 1]


def _invoke_quietly(aws: Any, name: str, event: dict[str, Any]) -> None:
    # The server is killed under this call: its failure is expected.
    with contextlib.suppress(Exception):
        aws.invoke(FunctionName=name, Payload=json.dumps(event).encode())

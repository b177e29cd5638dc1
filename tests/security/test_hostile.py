"""Hostile functions: each may hurt only itself, and leaves nothing behind.

Fork bomb, memory hog, infinite loop, writes outside the sandbox and
processes left running in the background. After each, the server is still
healthy, other functions still work, and no process of the sandbox is left
on the host (found by its cgroup, ``sb-<sandbox id>``, or its session, which
the sandbox leader opened).

A sandbox's runtime is PID 1 of its own PID namespace: a function tells its
sandboxes apart by a token made at Init, and the host pid of a sandbox comes
from the server (``GET /_ember/sandboxes``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    ROLE,
    Server,
    children,
    host_pid_of,
    lambda_client,
    make_zip,
    read_text,
    sandboxes_of,
    wait_until,
)

Deploy = Callable[..., dict[str, Any]]


ECHO = """
def handler(event, context):
    return {"echo": event}
"""


def invoke(aws: Any, name: str, payload: Any = None) -> tuple[dict[str, Any], Any]:
    response = aws.invoke(FunctionName=name, Payload=json.dumps(payload or {}).encode())
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


def _cgroups(pid: int | str) -> set[str]:
    """The cgroup paths ``pid`` is in (one per v1 hierarchy)."""
    text = read_text(f"/proc/{pid}/cgroup") or ""
    return {line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2}


class Watched:
    """A live sandbox, remembered by its leader's session and ``sb-*`` cgroup.

    The cgroup is read from the leader itself: a pre-forked sandbox keeps the
    cgroup it was forked into, whose name is not the sandbox id.
    """

    def __init__(self, leader: int) -> None:
        self.leader = leader
        self.groups = {path for path in _cgroups(leader) if "/sb-" in path}
        assert self.groups, f"pid {leader} is not in a sandbox cgroup: {_cgroups(leader)}"
        assert leader in self.processes()

    def processes(self) -> list[int]:
        """Host pids still in the sandbox's cgroup or session (zombies included)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = read_text(f"/proc/{entry}/stat")
            if stat is None:
                continue  # exited meanwhile
            session = int(stat.rsplit(")", 1)[1].split()[3])
            if session == self.leader or _cgroups(entry) & self.groups:
                found.append(int(entry))
        return found

    def gone(self) -> bool:
        return not self.processes()


def processes_with_argv(argv: list[str]) -> list[int]:
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline == wanted:
            found.append(int(entry))
    return found


def assert_healthy(server: Server, aws: Any, deploy: Deploy) -> None:
    assert server.health()["status"] == "ok"
    name = deploy(ECHO, Timeout=30)["FunctionName"]
    response, body = invoke(aws, name, {"still": "fine"})
    assert "FunctionError" not in response, body
    assert body == {"echo": {"still": "fine"}}


@pytest.fixture(scope="module", autouse=True)
def isolated(server: Server) -> None:
    isolation = server.health()["isolation"]
    if not isolation.get("isolated") or not isolation.get("cgroups"):
        pytest.skip(f"hostile functions need the isolated sandbox backend: {isolation}")


FORK_BOMB = """
import os

def handler(event, context):
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""


def test_fork_bomb_is_contained(server: Server, aws: Any, deploy: Deploy) -> None:
    bomb = deploy(FORK_BOMB, Timeout=3)["FunctionName"]
    bystander = deploy(ECHO, Timeout=60)["FunctionName"]
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(invoke, aws, bomb)
        seen = wait_until(lambda: sandboxes_of(server, bomb) or future.done(), timeout=30)
        assert isinstance(seen, list), "the bomb's invocation ended before its sandbox was seen"
        watched = Watched(seen[0]["pid"])
        wait_until(lambda: len(watched.processes()) > 8 or future.done(), timeout=30)
        # While the bomb goes off, another function still runs.
        response, body = invoke(aws, bystander, {"during": "bomb"})
        assert "FunctionError" not in response, body
        assert body == {"echo": {"during": "bomb"}}
        response, error = future.result(timeout=110)
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] in ("Sandbox.Timedout", "Runtime.ExitError")
    wait_until(watched.gone, timeout=30)
    wait_until(lambda: not sandboxes_of(server, bomb), timeout=30)
    assert_healthy(server, aws, deploy)


MEMORY_HOG = """
import uuid

TOKEN = uuid.uuid4().hex

def handler(event, context):
    if event.get("hog"):
        hog = []
        while True:
            hog.append(b"x" * (16 << 20))  # every page touched
    return TOKEN
"""


def test_memory_hog_is_killed_by_its_own_limit(server: Server, aws: Any, deploy: Deploy) -> None:
    name = deploy(MEMORY_HOG, MemorySize=128, Timeout=60)["FunctionName"]
    _, token = invoke(aws, name)
    pid = host_pid_of(server, name)
    watched = Watched(pid)
    response, error = invoke(aws, name, {"hog": True})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.OutOfMemory"
    wait_until(watched.gone, timeout=30)
    response, again = invoke(aws, name)  # a fresh sandbox takes over
    assert "FunctionError" not in response
    assert again != token
    assert host_pid_of(server, name) != pid
    assert_healthy(server, aws, deploy)


INFINITE_LOOP = """
import signal
import uuid

TOKEN = uuid.uuid4().hex

def handler(event, context):
    if event.get("loop"):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        while True:
            pass
    return TOKEN
"""


def test_infinite_loop_times_out_and_its_process_is_gone(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(INFINITE_LOOP, Timeout=1)["FunctionName"]
    _, token = invoke(aws, name)
    pid = host_pid_of(server, name)
    watched = Watched(pid)
    response, error = invoke(aws, name, {"loop": True})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    wait_until(watched.gone, timeout=30)
    wait_until(lambda: not sandboxes_of(server, name), timeout=30)
    response, again = invoke(aws, name)
    assert "FunctionError" not in response
    assert again != token
    assert host_pid_of(server, name) != pid
    assert_healthy(server, aws, deploy)


WRITER = """
import errno

def handler(event, context):
    results = {}
    for path in event["paths"]:
        try:
            with open(path, "w") as handle:
                handle.write("escaped")
            results[path] = "written"
        except OSError as exc:
            results[path] = errno.errorcode.get(exc.errno, str(exc.errno))
    return results
"""


def test_code_is_read_only_and_tmp_is_private(aws: Any, deploy: Deploy) -> None:
    name = deploy(WRITER)["FunctionName"]
    escape = f"/tmp/ember-escape-{uuid.uuid4().hex}"
    try:
        _, results = invoke(aws, name, {"paths": ["/var/task/x", "/var/task/app.py", escape]})
        assert results["/var/task/x"] == "EROFS"
        assert results["/var/task/app.py"] == "EROFS"
        assert results[escape] == "written"  # the sandbox's own /tmp ...
        assert not os.path.exists(escape)  # ... is not the host's
    finally:
        if os.path.exists(escape):
            os.unlink(escape)


BACKGROUND = """
import subprocess

def handler(event, context):
    subprocess.Popen(["sleep", event["attached"]])
    subprocess.Popen(["sleep", event["detached"]], start_new_session=True)
    return "started"
"""


def test_background_processes_die_with_their_function(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(BACKGROUND)["FunctionName"]
    marker = uuid.uuid4().int % 1000
    attached, detached = f"1000.{marker:03d}1", f"1000.{marker:03d}2"
    response, body = invoke(aws, name, {"attached": attached, "detached": detached})
    assert "FunctionError" not in response, body
    watched = Watched(host_pid_of(server, name))
    # They do outlive the invocation (the pids they had inside mean nothing here).
    sleepers = processes_with_argv(["sleep", attached]) + processes_with_argv(["sleep", detached])
    assert len(sleepers) == 2
    assert set(sleepers) <= set(watched.processes())
    aws.delete_function(FunctionName=name)
    wait_until(lambda: not processes_with_argv(["sleep", attached]), timeout=30)
    wait_until(lambda: not processes_with_argv(["sleep", detached]), timeout=30)
    for pid in sleepers:
        wait_until(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), timeout=30)
    wait_until(watched.gone, timeout=30)
    assert server.health()["status"] == "ok"


def test_background_processes_die_when_the_server_stops(
    spawn_server: Callable[..., Server], unique_name: str
) -> None:
    server = spawn_server()
    aws = lambda_client(server)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": BACKGROUND})},
    )
    marker = uuid.uuid4().int % 1000
    attached, detached = f"1000.{marker:03d}3", f"1000.{marker:03d}4"
    response, _ = invoke(aws, unique_name, {"attached": attached, "detached": detached})
    assert "FunctionError" not in response
    server.stop()  # SIGTERM: a graceful shutdown
    wait_until(lambda: not processes_with_argv(["sleep", attached]), timeout=30)
    wait_until(lambda: not processes_with_argv(["sleep", detached]), timeout=30)


def _uid(pid: int) -> int | None:
    for line in (read_text(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def function_sandboxes(server: Server) -> list[int]:
    """Processes the server's zygotes forked that run a function (dropped to an
    unprivileged uid; pre-forked sandboxes still waiting for one are still root,
    though already in namespaces of their own)."""
    assert server.process is not None
    return [
        pid
        for zygote in children(server.process.pid)
        for pid in children(zygote)
        if _uid(pid) not in (None, 0)
    ]


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


FORGED_READY = """
import os
import struct

# Init writes a bogus READY frame on the runtime's socket before the real one.
body = b"not json"
os.write(3, struct.pack("!IB", 8 + len(body), 2) + struct.pack("!II", 0, 0) + body)

def handler(event, context):
    return "served"
"""


def test_a_forged_init_frame_is_a_function_error_and_leaks_nothing(
    spawn_server: Callable[..., Server], unique_name: str
) -> None:
    server = spawn_server()
    aws = lambda_client(server)
    for name, source in ((f"{unique_name}-ok", ECHO), (unique_name, FORGED_READY)):
        aws.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": source})},
        )
    # The probe sees a well-behaved function's sandbox, and its end.
    invoke(aws, f"{unique_name}-ok")
    assert len(function_sandboxes(server)) == 1
    aws.delete_function(FunctionName=f"{unique_name}-ok")
    wait_until(lambda: not function_sandboxes(server), timeout=10)

    response, error = invoke(aws, unique_name)
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"].startswith("Runtime.")
    wait_until(lambda: not function_sandboxes(server), timeout=10)


FRAME_FLOOD = """
import os
import struct

def handler(event, context):
    # A frame header claiming ~4 GB, then the bytes to fill it.
    os.write(3, struct.pack("!IB", 0xFFFFFFF0, 4))
    chunk = b"z" * (1 << 20)
    for _ in range(event["mb"]):
        os.write(3, chunk)
    return "flooded"
"""


def test_a_flood_on_the_runtime_socket_does_not_grow_the_server(
    spawn_server: Callable[..., Server], unique_name: str
) -> None:
    server = spawn_server()
    assert server.process is not None
    aws = lambda_client(server)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Timeout=5,
        Code={"ZipFile": make_zip({"app.py": FRAME_FLOOD})},
    )
    invoke(aws, unique_name, {"mb": 0})  # warm the server up
    before = _peak_rss_kb(server.process.pid)
    response, error = invoke(aws, unique_name, {"mb": 512})
    assert response["FunctionError"] == "Unhandled", error
    grown_mb = (_peak_rss_kb(server.process.pid) - before) // 1024
    assert grown_mb < 128, f"the server's peak memory grew by {grown_mb} MB"

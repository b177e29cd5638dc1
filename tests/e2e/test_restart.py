"""Restarts and SIGTERM: state survives, and a stopped server leaves nothing behind.

The server runs in its own session (``start_new_session=True``), so its pid is
also its process group and session id. Sandboxes call ``setsid`` and leave
that session, so they are tracked through their parent chain instead: every
descendant is recorded (pid and start time, which together survive pid reuse)
while the server runs, and none may be left once it has exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import code_sha256, echo_source, invoke_json

from conftest import BACKEND, ROLE, Server, lambda_client, make_zip, wait_until

Spawn = Callable[..., Server]

# Leaves a grandchild behind in the sandbox, as careless user code does.
ORPHAN_MAKER = """
import subprocess

def handler(event, context):
    child = subprocess.Popen(["sleep", "3600"])
    return {"child": child.pid}
"""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str
    start: int  # jiffies after boot: with the pid, names one process for good
    command: str


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may itself contain spaces or ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        state=fields[0],
        start=int(fields[19]),
        command=command.strip(),
    )


def processes() -> dict[int, Proc]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_proc(int(entry))
            if proc is not None:
                found[proc.pid] = proc
    return found


def descendants(root: int) -> list[Proc]:
    table = processes()
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child.pid)
    return found


def leftovers(server_pid: int, recorded: list[Proc]) -> list[Proc]:
    """Processes of the stopped server still present (zombies included)."""
    table = processes()
    tied = [p for p in table.values() if server_pid in (p.pgrp, p.session)]
    survivors = [p for p in recorded if (q := table.get(p.pid)) is not None and q.start == p.start]
    return tied + [p for p in survivors if p not in tied]


def cgroup_dirs(server_pid: int) -> list[str]:
    roots = [
        root
        for root in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu")
        if os.path.isdir(root)
    ] or ["/sys/fs/cgroup"]
    found = subprocess.run(
        ["find", *roots, "-maxdepth", "4", "-name", f"ember-{server_pid}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()


def create(aws: Any, name: str, package: bytes, **settings: Any) -> dict[str, Any]:
    params = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE, **settings}
    return dict(aws.create_function(FunctionName=name, Code={"ZipFile": package}, **params))


def without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def test_functions_survive_a_restart_on_the_same_data_dir(
    spawn_server: Spawn, unique_name: str
) -> None:
    first = spawn_server()
    aws = lambda_client(first)
    package = make_zip({"app.py": echo_source("durable"), "lib/data.txt": "payload\n"})
    create(aws, unique_name, package, Environment={"Variables": {"GREETING": "v1"}}, Timeout=7)
    aws.update_function_configuration(
        FunctionName=unique_name,
        Description="updated before the restart",
        Environment={"Variables": {"GREETING": "v2"}},
    )
    assert invoke_json(aws, unique_name)["env"] == "v2"
    create(aws, f"{unique_name}-gone", make_zip({"app.py": echo_source("gone")}))
    aws.delete_function(FunctionName=f"{unique_name}-gone")
    before = without_metadata(aws.get_function_configuration(FunctionName=unique_name))

    first.stop(signal.SIGTERM)  # its exit status is the SIGTERM tests' business
    second = spawn_server(first.data_dir)
    aws = lambda_client(second)

    after = without_metadata(aws.get_function_configuration(FunctionName=unique_name))
    assert after == before
    assert after["CodeSha256"] == code_sha256(package)
    assert after["Description"] == "updated before the restart"
    location = aws.get_function(FunctionName=unique_name)["Code"]["Location"]
    assert second.http.get(location, timeout=30).content == package
    assert invoke_json(aws, unique_name, {"again": True}) == {
        "version": "durable",
        "env": "v2",
        "event": {"again": True},
    }
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_function(FunctionName=f"{unique_name}-gone")
    listed = [f["FunctionName"] for f in aws.list_functions()["Functions"]]
    assert listed == [unique_name]
    # The restarted server keeps working on the restored record.
    updated = aws.update_function_configuration(FunctionName=unique_name, Timeout=8)
    assert updated["RevisionId"] != before["RevisionId"]
    assert invoke_json(aws, unique_name)["version"] == "durable"


def test_sigterm_exits_zero_and_leaves_no_process_or_cgroup(
    spawn_server: Spawn, unique_name: str
) -> None:
    server = spawn_server()
    assert server.process is not None
    pid = server.process.pid
    aws = lambda_client(server)
    create(aws, unique_name, make_zip({"app.py": echo_source("warm")}))
    create(aws, f"{unique_name}-orphans", make_zip({"app.py": ORPHAN_MAKER}))
    assert invoke_json(aws, unique_name)["version"] == "warm"
    assert invoke_json(aws, f"{unique_name}-orphans")["child"]

    recorded = descendants(pid)
    commands = "\n".join(f"{p.pid} sid={p.session} {p.command}" for p in recorded)
    # Warm sandboxes (and the sleep one of them started) are what must not outlive
    # the server; without them this test would prove nothing.
    assert len(recorded) >= 3, commands
    assert any("sleep 3600" in p.command for p in recorded), commands
    assert cgroup_dirs(pid), "the server made no cgroups: nothing to check"

    status = server.stop(signal.SIGTERM)

    left = leftovers(pid, recorded)
    assert not left, "\n".join(f"{p.pid} [{p.state}] sid={p.session} {p.command}" for p in left)
    assert cgroup_dirs(pid) == []
    # Checked last so a wrong status does not hide the cleanup checks above.
    assert status == 0, server.output()


def test_sigterm_after_sandboxes_were_retired(spawn_server: Spawn, unique_name: str) -> None:
    """Updates retire warm sandboxes while running; shutdown still cleans up everything."""
    server = spawn_server()
    assert server.process is not None
    pid = server.process.pid
    aws = lambda_client(server)
    create(aws, unique_name, make_zip({"app.py": echo_source("v1")}))
    recorded = []
    for version in ("v1", "v2", "v3"):
        aws.update_function_code(
            FunctionName=unique_name, ZipFile=make_zip({"app.py": echo_source(version)})
        )
        assert invoke_json(aws, unique_name)["version"] == version
        recorded += descendants(pid)

    server.stop(signal.SIGTERM)

    left = leftovers(pid, recorded)
    assert not left, "\n".join(f"{p.pid} [{p.state}] {p.command}" for p in left)
    assert cgroup_dirs(pid) == []
    # Nothing the server recorded blocks a clean restart on the same data.
    again = spawn_server(server.data_dir)
    assert invoke_json(lambda_client(again), unique_name)["version"] == "v3"


def test_restart_of_an_empty_data_dir_is_empty(spawn_server: Spawn) -> None:
    first = spawn_server()
    node = first.health()["node"]
    first.stop(signal.SIGTERM)

    second = spawn_server(first.data_dir)

    assert second.health()["functions"] == 0
    # The same node as before (its id belongs to the data dir), holding every duty
    # (in a PostgreSQL run it is the only node of its database).
    assert second.health()["node"] == node
    assert node["storage"] == ("cluster" if BACKEND["name"] == "postgresql" else "embedded")
    assert node.get("duties", node.get("competesFor")) == ["controller", "schedules"]
    assert lambda_client(second).list_functions()["Functions"] == []


SLOW = """
import time

def handler(event, context):
    print("invocation started", flush=True)
    time.sleep(event["seconds"])
    return {"finished": True}
"""


def test_sigterm_lets_an_in_flight_invocation_finish(spawn_server: Spawn, unique_name: str) -> None:
    server = spawn_server()
    assert server.process is not None
    pid = server.process.pid
    aws = lambda_client(server)
    create(aws, unique_name, make_zip({"app.py": SLOW}), Timeout=30)
    logs_url = f"/_ember/functions/{unique_name}/logs"

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(invoke_json, aws, unique_name, {"seconds": 2})
        wait_until(
            lambda: "invocation started" in server.http.get(logs_url, timeout=5).json()["logs"]
        )
        recorded = descendants(pid)
        status = server.stop(signal.SIGTERM)
        result = pending.result(timeout=60)

    assert result == {"finished": True}
    left = leftovers(pid, recorded)
    assert not left, "\n".join(f"{p.pid} [{p.state}] {p.command}" for p in left)
    assert cgroup_dirs(pid) == []
    assert status == 0, server.output()

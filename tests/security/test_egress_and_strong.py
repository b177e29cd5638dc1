"""Opt-in network egress and opt-in strong (gVisor) isolation, through the real server."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import httpx
import pytest

from conftest import Server, wait_until

NETWORK = """
import socket

def attempt(address):
    try:
        socket.create_connection(address, timeout=2).close()
        return "connected"
    except OSError as error:
        return error.errno

def handler(event, context):
    return {
        "interfaces": [name for _, name in socket.if_nameindex()],
        "routes": len(open("/proc/net/route").read().splitlines()) - 1,
        "resolver": open("/etc/resolv.conf").read().split(),
        "host_loopback": attempt(("10.0.2.2", event["port"])),
        "own_loopback": attempt(("127.0.0.1", event["port"])),
    }
"""

ECONNREFUSED, ENETUNREACH = 111, 101


def invoke_json(aws: Any, name: str, event: Any) -> Any:
    response = aws.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = response["Payload"].read()
    assert "FunctionError" not in response, body
    return json.loads(body)


def settings(server: Server, name: str, body: dict[str, Any] | None = None) -> httpx.Response:
    path = f"/_ember/functions/{name}/sandbox"
    if body is None:
        return server.http.get(path, timeout=30)
    return server.http.put(path, json=body, timeout=30)


def test_no_network_by_default_and_egress_on_request(server: Server, aws: Any, deploy: Any) -> None:
    name = deploy(NETWORK)["FunctionName"]
    closed = invoke_json(aws, name, {"port": server.port})
    assert closed["interfaces"] == ["lo"] and closed["routes"] == 0
    assert closed["own_loopback"] == ECONNREFUSED  # its own loopback: nothing listens there

    assert settings(server, name, {"Egress": True}).json()["Egress"] is True
    opened = invoke_json(aws, name, {"port": server.port})
    assert "tap0" in opened["interfaces"] and opened["routes"] >= 1
    assert opened["resolver"] == ["nameserver", "10.0.2.3"]
    # Egress still never reaches the host's loopback services (ember itself here).
    assert opened["host_loopback"] in (ENETUNREACH, ECONNREFUSED)
    assert opened["own_loopback"] == ECONNREFUSED

    assert settings(server, name, {"Egress": False}).json()["Egress"] is False
    assert invoke_json(aws, name, {"port": server.port})["interfaces"] == ["lo"]


def test_sandbox_settings_are_validated(server: Server, deploy: Any) -> None:
    name = deploy("def handler(event, context):\n    return 1\n")["FunctionName"]
    assert settings(server, name).json() == {
        "FunctionName": name,
        "Egress": False,
        "Isolation": "standard",
    }
    for bad in ({"Egress": "yes"}, {"Isolation": "vm"}, {"Network": True}):
        response = settings(server, name, bad)
        assert response.status_code == 400
        assert response.headers["x-amzn-errortype"] == "InvalidParameterValueException"
    assert settings(server, "no-such-function").status_code == 404


STRONG = """
import os, platform, socket

def handler(event, context):
    if event.get("raise"):
        raise ValueError("strong failure")
    if event.get("spin"):
        while True:
            pass
    try:
        socket.create_connection(("127.0.0.1", event["port"]), timeout=1)
        server = "reachable"
    except OSError:
        server = "unreachable"
    return {
        "kernel": platform.release(),
        "shadow": os.path.exists("/etc/shadow"),
        "server": server,
        "function": context.function_name,
        "request": context.aws_request_id,
    }
"""


@pytest.mark.skipif(shutil.which("runsc") is None, reason="gVisor's runsc is not installed")
def test_strong_isolation_runs_on_gvisor(server: Server, aws: Any, deploy: Any) -> None:
    # gVisor starts slowly on a busy machine; the timeout only bounds the spin below.
    name = deploy(STRONG, Timeout=5)["FunctionName"]
    assert settings(server, name, {"Isolation": "strong"}).status_code == 200
    response = aws.invoke(FunctionName=name, Payload=json.dumps({"port": server.port}).encode())
    result = json.loads(response["Payload"].read())
    # gVisor's Sentry reports a kernel of its own, not the host's.
    assert result["kernel"] != os.uname().release
    assert result["shadow"] is False and result["server"] == "unreachable"
    assert result["function"] == name
    assert result["request"] == response["ResponseMetadata"]["RequestId"]

    failed = aws.invoke(FunctionName=name, Payload=b'{"raise": true}')
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "ValueError"

    spun = aws.invoke(FunctionName=name, Payload=b'{"spin": true}')
    assert json.loads(spun["Payload"].read())["errorType"] == "Sandbox.Timedout"
    assert invoke_json(aws, name, {"port": server.port})["function"] == name
    rows = server.http.get("/_ember/sandboxes").json()["sandboxes"]
    pids = {row["pid"] for row in rows if row["function"] == name}
    assert pids  # the gVisor sandbox that just answered
    aws.delete_function(FunctionName=name)
    wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), timeout=30)


RESTORED_NETWORK = (
    NETWORK
    + """
import os, threading

INIT_PID_NAMESPACE = os.readlink("/proc/self/ns/pid")


def restored_handler(event, context):
    answer = handler(event, context)
    answer["restored"] = os.readlink("/proc/self/ns/pid") != INIT_PID_NAMESPACE
    threading.Timer(0.2, os._exit, (0,)).start()  # leave: its slirp4netns must go too
    return answer
"""
)


def slirp_helpers() -> set[int]:
    """The host's slirp4netns processes, ended (not yet reaped) or not."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/comm") as handle:
                if handle.read().strip() == "slirp4netns":
                    found.add(int(entry))
        except (OSError, ValueError):
            continue
    return found


def test_a_sandbox_forked_from_a_template_gets_egress_and_its_helper_is_reaped(
    server: Server, aws: Any, deploy: Any
) -> None:
    """SnapStart forks run on the zygote's restore threads: the slirp4netns a
    restored sandbox got is a thread's child, and must still be reaped (gone from
    /proc, not left a zombie) when the sandbox ends."""
    if os.geteuid() != 0:
        pytest.skip("not root: `ember serve` cannot fork SnapStart templates")
    name = deploy(
        RESTORED_NETWORK,
        Handler="app.restored_handler",
        SnapStart={"ApplyOn": "PublishedVersions"},
        Timeout=30,
    )["FunctionName"]
    assert settings(server, name, {"Egress": True}).json()["Egress"] is True
    version = aws.publish_version(FunctionName=name)["Version"]
    wait_until(
        lambda: (
            aws.get_function_configuration(FunctionName=name, Qualifier=version)["State"]
            != "Pending"
        )
    )
    config = aws.get_function_configuration(FunctionName=name, Qualifier=version)
    assert config["SnapStart"]["OptimizationStatus"] == "On", (
        config["StateReason"],
        config.get("StateReasonCode"),
    )
    before = slirp_helpers()
    response = aws.invoke(
        FunctionName=name, Qualifier=version, Payload=json.dumps({"port": server.port}).encode()
    )
    opened = json.loads(response["Payload"].read())
    assert opened["restored"] is True and "tap0" in opened["interfaces"], opened
    assert opened["host_loopback"] in (ENETUNREACH, ECONNREFUSED)
    ours = slirp_helpers() - before
    assert ours, "the restored sandbox's slirp4netns is not running"
    wait_until(lambda: not ours & slirp_helpers(), timeout=15)

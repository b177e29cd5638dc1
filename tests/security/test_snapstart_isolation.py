"""Issue 18 point 3: a sandbox started from a SnapStart template has exactly the
isolation of any other sandbox.

A template is a sandbox that ran Init and parked; each new sandbox of its
version is a fork of it that the zygote (root, outside) put in new user,
PID, mount, network, IPC, UTS and cgroup namespaces, with a /tmp of its own,
its own memory cgroup, no capabilities and the template's seccomp filter,
before it ran an instruction of its own. These tests look from inside such
sandboxes (two at once, so that they can look for each other) and at what
the host sees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conftest import Server, sandboxes_of, wait_until

PROBE = r"""
import ctypes, errno, os, socket, time, uuid

TOKEN_AT_INIT = uuid.uuid4().hex
NAMESPACES = ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup")
AT_INIT = {name: os.readlink("/proc/self/ns/" + name) for name in NAMESPACES}
with open("/tmp/from-init", "w") as handle:
    handle.write(TOKEN_AT_INIT)
libc = ctypes.CDLL(None, use_errno=True)


def status():
    lines = open("/proc/self/status").read().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def refused(call, *args):
    if call(*args) == 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), "?")


def handler(event, context):
    if event.get("hog"):
        hog = []
        while True:
            hog.append(bytearray(16 << 20))
    mine = uuid.uuid4().hex
    with open("/tmp/" + mine, "w") as handle:
        handle.write(mine)
    time.sleep(event.get("sleep", 0))
    fields = status()
    return {
        "mine": mine,
        "tmp": sorted(os.listdir("/tmp")),
        "fromInit": open("/tmp/from-init").read() == TOKEN_AT_INIT,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
        "namespaces": {name: os.readlink("/proc/self/ns/" + name) for name in NAMESPACES},
        "atInit": AT_INIT,
        "status": {k: fields[k] for k in ("Seccomp", "NoNewPrivs", "CapEff", "CapBnd", "CapPrm")},
        "hostname": socket.gethostname(),
        "interfaces": [name for _, name in socket.if_nameindex()],
        "cgroup": open("/proc/self/cgroup").read(),
        "unshare": refused(libc.unshare, 0x00020000),
        "mount": refused(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
        "tmpWritableToOthers": oct(os.stat("/tmp").st_mode & 0o7777),
        "initializationType": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }
"""

Publish = Callable[..., tuple[str, str]]


@pytest.fixture(scope="module", autouse=True)
def full_isolation(server: Server) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: `ember serve` cannot isolate sandboxes, nor fork templates")
    assert server.health()["isolation"]["isolated"] is True


@pytest.fixture
def publish(publish_snap_start: Callable[..., tuple[str, str, dict[str, Any]]]) -> Publish:
    """Publish the probe with SnapStart: (name, version), its template made."""

    def make(**settings: Any) -> tuple[str, str]:
        name, version, config = publish_snap_start(PROBE, **settings)
        assert config["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
        return name, version

    return make


def invoke(aws: Any, name: str, version: str, event: Any = None) -> tuple[dict[str, Any], Any]:
    response = aws.invoke(
        FunctionName=name, Qualifier=version, Payload=json.dumps(event or {}).encode()
    )
    return response, json.loads(response["Payload"].read())


def test_two_restored_sandboxes_each_have_every_layer_of_isolation(
    aws: Any, publish: Publish
) -> None:
    name, version = publish(EphemeralStorage={"Size": 600})
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(invoke, aws, name, version, {"sleep": 1.5}) for _ in range(2)]
        seen = [call.result()[1] for call in calls]
    first, second = seen
    for body in seen:
        assert body["initializationType"] == "snap-start"
        assert body["fromInit"] is True  # what Init wrote to /tmp came along
        assert body["pid"] == 1 and body["processes"] == ["1"]  # nothing else visible
        assert body["status"] == {
            "Seccomp": "2",
            "NoNewPrivs": "1",
            "CapEff": "0" * 16,
            "CapBnd": "0" * 16,
            "CapPrm": "0" * 16,
        }
        assert body["uid"] != 0
        assert body["hostname"] == "sandbox" and body["interfaces"] == ["lo"]
        assert body["cgroup"].strip().endswith(":/")  # rooted at its own cgroup
        # The seccomp allowlist is whole: no namespace or mount calls for user code.
        assert (body["unshare"], body["mount"]) == ("EPERM", "EPERM")
        # Started from the template, not made like it: new namespaces of every kind.
        for kind in ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup"):
            assert body["namespaces"][kind] != body["atInit"][kind], kind
        assert body["tmpWritableToOthers"] == "0o1777"
    # Two sandboxes of one version share nothing of each other's.
    assert first["atInit"] == second["atInit"]  # one template, Init ran once
    for kind in ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup"):
        assert first["namespaces"][kind] != second["namespaces"][kind], kind
    assert second["mine"] not in first["tmp"] and first["mine"] not in second["tmp"]


def test_a_restored_sandbox_is_held_to_its_own_memory_limit(
    aws: Any, server: Server, publish: Publish
) -> None:
    name, version = publish(MemorySize=128)
    response, body = invoke(aws, name, version)
    assert "FunctionError" not in response, body
    response, error = invoke(aws, name, version, {"hog": True})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.OutOfMemory", error
    wait_until(lambda: not sandboxes_of(server, name), timeout=30)
    response, again = invoke(aws, name, version)  # the template still serves
    assert "FunctionError" not in response, again
    assert again["initializationType"] == "snap-start"

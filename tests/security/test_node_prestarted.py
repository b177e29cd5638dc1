"""Issue 17 point 3: Node sandboxes come from a pool of runtimes started ahead of
their function, and have exactly the isolation of any other sandbox.

A pre-started Node process is isolated, unprivileged and filtered before it
execs node; its claim mounts the code into it from outside (the zygote steps
into its mount namespace) and hands it the function. These tests check from
inside such a sandbox what a freshly made one would show, that the runtime
really was started before its function existed, that the function's own
limits bind it, and that what node reads only at start (NODE_OPTIONS, TZ)
picks a runtime started with the function's values.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import ROLE, Server, host_pid_of, make_zip, wait_until

PROBE = r"""
const fs = require("fs");
const os = require("os");
const v8 = require("v8");

function status(field) {
  const line = fs.readFileSync("/proc/self/status", "utf8").split("\n")
    .find((l) => l.startsWith(field + ":"));
  return line.split(":")[1].trim();
}

function limit(name) {
  const line = fs.readFileSync("/proc/self/limits", "utf8").split("\n")
    .find((l) => l.startsWith(name));
  return line.slice(name.length).trim().split(/\s+/).slice(0, 2);
}

exports.handler = async (event) => {
  let codeWritable = true;
  try {
    fs.writeFileSync("/var/task/written", "x");
  } catch (error) {
    codeWritable = error.code;
  }
  const tmp = fs.statfsSync("/tmp");
  if (event.hog) {
    const hog = [];
    for (;;) hog.push(Buffer.alloc(16 << 20, 1)); // every page touched
  }
  return {
    pid: process.pid,
    uid: process.getuid(),
    seccomp: status("Seccomp"),
    noNewPrivs: status("NoNewPrivs"),
    capEff: status("CapEff"),
    hostname: os.hostname(),
    interfaces: Object.keys(os.networkInterfaces()),
    codeWritable,
    code: fs.readdirSync("/var/task"),
    cwd: process.cwd(),
    tmpMb: Math.round((tmp.blocks * tmp.bsize) / (1 << 20)),
    openFiles: limit("Max open files"),
    fileSize: limit("Max file size"),
    mounts: fs.readFileSync("/proc/self/mountinfo", "utf8"),
    heapLimitMb: Math.round(v8.getHeapStatistics().heap_size_limit / (1 << 20)),
    tzOffset: new Date(Date.UTC(2026, 0, 15)).getTimezoneOffset(),
    nodeOptions: process.env.NODE_OPTIONS || null,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
  };
};
"""

Deploy = Callable[..., str]


@pytest.fixture
def deploy(aws: Any, server: Server, unique_name: str) -> Iterator[Deploy]:
    listing = server.http.get("/_ember/runtimes").json()
    if "nodejs20.x" not in listing["available"]:
        pytest.skip("the host's node is not Node 20 and nodejs20.x is not installed")
    created: list[str] = []

    def create(**settings: Any) -> str:
        name = f"{unique_name}-{len(created)}"
        aws.create_function(
            FunctionName=name,
            Runtime="nodejs20.x",
            Role=ROLE,
            Handler="index.handler",
            Timeout=30,
            Code={"ZipFile": make_zip({"index.js": PROBE})},
            **settings,
        )
        created.append(name)
        return name

    yield create
    for name in created:
        aws.delete_function(FunctionName=name)


def probe(aws: Any, name: str, event: Any = None) -> tuple[dict[str, Any], Any]:
    response = aws.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    return response, json.loads(response["Payload"].read())


def started_at(pid: int) -> float:
    """When host process ``pid`` started, in epoch seconds (10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    with open("/proc/stat") as handle:
        boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def test_a_node_sandbox_comes_from_a_runtime_started_before_its_function(
    aws: Any, server: Server, deploy: Deploy
) -> None:
    probe(aws, deploy())  # the first claim of this kind starts its pool
    time.sleep(1.0)  # the pool refills in the quiet
    before = time.time()
    name = deploy()
    response, seen = probe(aws, name)
    assert "FunctionError" not in response, seen
    assert seen["functionName"] == name
    assert started_at(host_pid_of(server, name)) < before


def test_a_pre_started_node_sandbox_has_every_layer_of_isolation(
    aws: Any, server: Server, deploy: Deploy
) -> None:
    first = deploy(EphemeralStorage={"Size": 700})
    second = deploy(EphemeralStorage={"Size": 700})
    response, seen = probe(aws, first)
    assert "FunctionError" not in response, seen
    _, other = probe(aws, second)
    assert seen["pid"] == 1  # its own PID namespace
    assert seen["uid"] != 0 and seen["uid"] != other["uid"]  # a user of its own
    assert (seen["seccomp"], seen["noNewPrivs"], seen["capEff"]) == ("2", "1", "0" * 16)
    assert seen["hostname"] == "sandbox"
    assert seen["interfaces"] == ["lo"]  # loopback only
    assert seen["codeWritable"] == "EROFS"
    assert (seen["code"], seen["cwd"]) == (["index.js"], "/var/task")
    assert seen["tmpMb"] == 700  # the function's own /tmp size, set at its claim
    assert seen["fileSize"] == [str(700 << 20)] * 2  # no file larger than /tmp holds
    assert seen["openFiles"][0] == seen["openFiles"][1]
    assert str(server.data_dir) not in seen["mounts"]  # no host path named in mountinfo


def test_a_pre_started_node_sandbox_is_held_to_its_own_memory_limit(
    aws: Any, server: Server, deploy: Deploy
) -> None:
    name = deploy(MemorySize=128)
    probe(aws, name)
    pid = host_pid_of(server, name)
    response, error = probe(aws, name, {"hog": True})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.OutOfMemory"
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30)
    response, again = probe(aws, name)  # a fresh sandbox takes over
    assert "FunctionError" not in response, again


def test_what_node_reads_at_start_is_the_functions_own(aws: Any, deploy: Deploy) -> None:
    plain = deploy()
    tuned = deploy(
        Environment={
            "Variables": {"NODE_OPTIONS": "--max-old-space-size=64", "TZ": "America/New_York"}
        }
    )
    _, default = probe(aws, plain)
    response, seen = probe(aws, tuned)
    assert "FunctionError" not in response, seen
    assert seen["nodeOptions"] == "--max-old-space-size=64"
    assert seen["heapLimitMb"] < default["heapLimitMb"]
    assert seen["heapLimitMb"] <= 128  # old space 64 MB, plus the young generation
    assert (default["tzOffset"], seen["tzOffset"]) == (0, 300)  # UTC-5 in January

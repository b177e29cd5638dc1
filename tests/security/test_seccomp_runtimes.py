"""Issue 20 point 5: the runtimes ember serves, and those users bring, run under the allowlist.

The seccomp filter allows a list of calls and refuses the rest; a call a
runtime needs and the list forgot would break every function of that kind.
The Python runtime and the shell + curl custom runtime have their own suites
(tests/e2e); these deploy what else a user brings as a ``provided`` runtime:
Node (a Runtime API loop over ``http`` that also uses the thread pool, worker
threads, child processes and crypto) and a statically linked binary (no C
library of the sandbox to fall back on: threads, fork, files, sockets).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROLE, Server

NODE = shutil.which("node")

NODE_RUNTIME = r"""
const http = require("http");
const fs = require("fs");
const os = require("os");
const crypto = require("crypto");
const childProcess = require("child_process");
const { Worker } = require("worker_threads");
const api = process.env.AWS_LAMBDA_RUNTIME_API;

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: api.split(":")[0], port: api.split(":")[1],
      method, path: "/2018-06-01/runtime" + path }, (response) => {
      let data = "";
      response.on("data", (chunk) => (data += chunk));
      response.on("end", () => resolve({ headers: response.headers, body: data }));
    });
    request.on("error", reject);
    request.end(body);
  });
}

async function handle(event) {
  await fs.promises.writeFile("/tmp/node-file", JSON.stringify(event));  // the thread pool
  const read = JSON.parse(await fs.promises.readFile("/tmp/node-file", "utf8"));
  const worker = await new Promise((resolve, reject) => {
    const w = new Worker("require('worker_threads').parentPort.postMessage(6 * 7)", { eval: true });
    w.on("message", resolve);
    w.on("error", reject);
  });
  return {
    read,
    worker,
    child: childProcess.execSync("echo child").toString().trim(),
    digest: crypto.createHash("sha256").update("ember").digest("hex").length,
    random: crypto.randomBytes(8).length,
    interfaces: Object.keys(os.networkInterfaces()),
    cpus: os.cpus().length > 0,
  };
}

(async () => {
  for (;;) {
    const next = await call("GET", "/invocation/next");
    const id = next.headers["lambda-runtime-aws-request-id"];
    const answer = await handle(JSON.parse(next.body));
    await call("POST", `/invocation/${id}/response`, JSON.stringify(answer));
  }
})();
"""

# A statically linked program: it brings its own C library, whose calls the
# filter must serve as they are (clone3 first, then clone; rseq; ...).
STATIC_SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void *work(void *arg) { *(int *)arg = 42; return NULL; }

int main(void) {
    int value = 0, status = -1;
    pthread_t thread;
    int threaded = pthread_create(&thread, NULL, work, &value) == 0
        && pthread_join(thread, NULL) == 0 && value == 42;
    pid_t child = fork();
    if (child == 0) _exit(7);
    int forked = child > 0 && waitpid(child, &status, 0) == child
        && WIFEXITED(status) && WEXITSTATUS(status) == 7;
    FILE *file = fopen("/tmp/static-file", "w");
    int wrote = file != NULL && fputs("x", file) >= 0 && fclose(file) == 0;
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    printf("{\"threaded\": %d, \"forked\": %d, \"wrote\": %d, \"tcp\": %d}",
           threaded, forked, wrote, tcp >= 0);
    return 0;
}
"""

# The shell + curl loop of tests/e2e/test_runtime_api.py, answering with the program's output.
STATIC_BOOTSTRAP = """#!/bin/sh
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  ID=$(curl -sS -D - -o /dev/null "$API/invocation/next" \\
    | grep -i '^lambda-runtime-aws-request-id:' | tr -d '\\r' | cut -d' ' -f2)
  curl -sS -o /dev/null -X POST --data-binary "$(./probe)" "$API/invocation/$ID/response"
done
"""

Deploy = Callable[[dict[str, str | bytes]], str]


@pytest.fixture(scope="module", autouse=True)
def full_isolation(request: pytest.FixtureRequest) -> None:
    """The filter is loaded only in isolated sandboxes: skip only where there are none."""
    if os.geteuid() != 0:
        pytest.skip("not root: `ember serve` cannot isolate sandboxes, so loads no filter")
    server: Server = request.getfixturevalue("server")
    assert server.health()["isolation"]["isolated"] is True


def package(files: dict[str, str | bytes]) -> bytes:
    """A zip whose bootstrap and probe keep their executable bit."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in ("bootstrap", "probe") else 0o644) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


@pytest.fixture
def deploy_custom(aws: Any, unique_name: str) -> Iterator[Deploy]:
    created: list[str] = []

    def create(files: dict[str, str | bytes]) -> str:
        name = f"{unique_name}-{len(created)}"
        aws.create_function(
            FunctionName=name,
            Runtime="provided.al2023",
            Role=ROLE,
            Timeout=20,
            Code={"ZipFile": package(files)},
        )
        created.append(name)
        return name

    yield create
    for name in created:
        aws.delete_function(FunctionName=name)


def invoke_json(aws: Any, name: str, event: Any) -> Any:
    response = aws.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = response["Payload"].read()
    assert "FunctionError" not in response, body
    return json.loads(body)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_node_runtime_runs_under_the_filter(aws: Any, deploy_custom: Deploy) -> None:
    bootstrap = f"#!/bin/sh\nexec {NODE} /var/task/runtime.js\n"
    name = deploy_custom({"bootstrap": bootstrap, "runtime.js": NODE_RUNTIME})
    for attempt in range(2):  # the first call starts node, the second finds it serving
        seen = invoke_json(aws, name, {"attempt": attempt})
        assert seen == {
            "read": {"attempt": attempt},
            "worker": 42,
            "child": "child",
            "digest": 64,
            "random": 8,
            "interfaces": ["lo"],
            "cpus": True,
        }


# ember's own Node runtime (nodejs20.x on the host's node): the same work as a handler.
MANAGED_NODE = (
    NODE_RUNTIME.split("(async () => {")[0]
    + """
const { execFileSync } = childProcess;
exports.handler = async (event) => ({
  ...(await handle(event)),
  status: fs.readFileSync("/proc/self/status", "utf8").match(/^Seccomp:\\s+(\\d)/m)[1],
  ioUring: execFileSync(process.execPath, ["-e", IO_URING_PROBE]).toString().trim(),
});
"""
)
# libuv's io_uring probe, repeated by hand: the call must fail with ENOSYS (fs still works).
IO_URING_PROBE = (
    "require('fs').writeFileSync('/tmp/p', 'x');"
    "process.stdout.write(require('fs').readFileSync('/tmp/p', 'utf8'))"
)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_managed_node_runtime_runs_under_the_filter(
    aws: Any, server: Server, unique_name: str
) -> None:
    listing = server.http.get("/_ember/runtimes").json()
    if "nodejs20.x" not in listing["available"]:
        pytest.skip("the host's node is not Node 20 and nodejs20.x is not installed")
    source = MANAGED_NODE.replace("IO_URING_PROBE", json.dumps(IO_URING_PROBE))
    aws.create_function(
        FunctionName=unique_name,
        Runtime="nodejs20.x",
        Role=ROLE,
        Handler="index.handler",
        Timeout=20,
        Code={"ZipFile": package({"index.js": source})},
    )
    try:
        for attempt in range(2):
            seen = invoke_json(aws, unique_name, {"attempt": attempt})
            assert seen["read"] == {"attempt": attempt}
            assert (seen["worker"], seen["child"], seen["digest"]) == (42, "child", 64)
            assert seen["status"] == "2"  # a seccomp filter is loaded
            assert seen["ioUring"] == "x"  # libuv fell back: io_uring answered ENOSYS
    finally:
        aws.delete_function(FunctionName=unique_name)


@pytest.fixture(scope="module")
def static_probe(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler to build a static binary with")
    directory = tmp_path_factory.mktemp("static")
    (directory / "probe.c").write_text(STATIC_SOURCE)
    built = subprocess.run(
        ["gcc", "-static", "-pthread", "-O1", "-o", "probe", "probe.c"],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.skip(f"no static C library to link with: {built.stderr[-300:]}")
    return Path(directory / "probe").read_bytes()


def test_a_static_binary_runs_under_the_filter(
    aws: Any, deploy_custom: Deploy, static_probe: bytes
) -> None:
    name = deploy_custom({"bootstrap": STATIC_BOOTSTRAP, "probe": static_probe})
    seen = invoke_json(aws, name, {})
    assert seen == {"threaded": 1, "forked": 1, "wrote": 1, "tcp": 1}

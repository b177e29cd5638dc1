"""`make bench`, Node part: Node functions beside Python ones, on one server, same run.

Measures, on one `ember serve` (full isolation): warm invoke p50 of a Node function
and of the same Python function, interleaved, over one keep-alive connection each;
a Node function's cold start (HTTP round trip and the Init Duration its REPORT
line gives) against spawning a fresh `node -e 0` on the host. Writes
docs/benchmarks-node.md. `--quick` takes fewer samples (the shared machine).
"""

import base64
import http.client
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from rich.console import Console

import servers
from report import Row, cpu_busy, fmt_ms, machine, p50_p99, percentile, print_table, write_markdown

DOC = servers.ROOT / "docs" / "benchmarks-node.md"
FUNCTIONS = "/2015-03-31/functions"
ROLE = "arn:aws:iam::000000000000:role/bench"
EVENT = {"n": 1}
PYTHON = "def handler(event, context):\n    return {'ok': True, 'echo': event}\n"
NODE = "exports.handler = async (event) => ({ok: true, echo: event});\n"
_INIT = re.compile(r"Init Duration:\s*([\d.]+)\s*ms")
QUICK = "--quick" in sys.argv
WARM = 200 if QUICK else 2000
COLD = 15 if QUICK else 60
# Between cold starts: time for the zygote to start the pool's next Node (~50 ms of
# node start-up here), as calls spread over time find it. (A burst larger than the
# pool waits for node's start-up beyond the pool's two.)
REFILL = 0.3
console = Console(width=None if sys.stdout.isatty() else 150)


def package(name: str, source: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, source)
    return base64.b64encode(buffer.getvalue()).decode()


def create(client: httpx.Client, name: str, runtime: str, handler: str, zip_b64: str) -> None:
    body = {
        "FunctionName": name,
        "Runtime": runtime,
        "Role": ROLE,
        "Handler": handler,
        "Code": {"ZipFile": zip_b64},
        "MemorySize": 128,
    }
    response = client.post(FUNCTIONS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"CreateFunction {name}: {response.status_code} {response.text}")


def node_runtime(client: httpx.Client) -> str:
    """The first Node runtime the server has (the host's own node needs no install)."""
    available = client.get("/_ember/runtimes").json()["available"]
    found = [r for r in available if r.startswith("nodejs")]
    if not found:
        raise RuntimeError("no Node runtime: run `ember runtimes install nodejs22.x` first")
    return str(found[0])


class Invoker:
    """Timed invokes of one function over one keep-alive connection (http.client: cheap)."""

    def __init__(self, port: int, name: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = f"{FUNCTIONS}/{name}/invocations"
        self.body = json.dumps(EVENT).encode()

    def invoke(self, tail: bool = False) -> tuple[float, float | None]:
        headers = {"X-Amz-Log-Type": "Tail"} if tail else {}
        start = time.perf_counter()
        self.conn.request("POST", self.path, body=self.body, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - start) * 1e3
        if response.status != 200 or response.getheader("x-amz-function-error"):
            raise RuntimeError(f"invoke {self.path}: {response.status} {payload[:300]!r}")
        log = response.getheader("x-amz-log-result")
        init = _INIT.search(base64.b64decode(log).decode()) if log else None
        return elapsed, float(init.group(1)) if init else None


def warm(port: int) -> dict[str, list[float]]:
    python, node = Invoker(port, "py"), Invoker(port, "node")
    for invoker in (python, node):
        for _ in range(20):
            invoker.invoke()
    samples: dict[str, list[float]] = {"py": [], "node": []}
    for _ in range(WARM):  # interleaved: both see the same moments of a noisy machine
        samples["py"].append(python.invoke()[0])
        samples["node"].append(node.invoke()[0])
    return samples


def cold(client: httpx.Client, port: int) -> tuple[list[float], list[float]]:
    invoker = Invoker(port, "node")
    http_ms, init_ms = [], []
    for i in range(COLD):
        # A configuration change retires the function's sandboxes: the next call is cold.
        body = {"Environment": {"Variables": {"BENCH_I": str(i)}}}
        client.put(f"{FUNCTIONS}/node/configuration", json=body).raise_for_status()
        time.sleep(REFILL)
        elapsed, init = invoker.invoke(tail=True)
        http_ms.append(elapsed)
        if init is not None:
            init_ms.append(init)
    return http_ms, init_ms


def spawn(node: str) -> list[float]:
    samples = []
    for _ in range(COLD):
        start = time.perf_counter()
        subprocess.run([node, "-e", "0"], check=True)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def main() -> int:
    busy = cpu_busy()
    node = shutil.which("node")
    if node is None:
        console.log("no node on this host: skipped")
        return 0
    with tempfile.TemporaryDirectory(prefix="ember-bench-node-") as tmp:
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        command = servers.ember_command(port, Path(tmp) / "data")
        with servers.running(command, Path(tmp) / "server.log", url + "/health"):
            client = httpx.Client(base_url=url, timeout=60)
            runtime = node_runtime(client)
            create(client, "py", "python3.11", "app.handler", package("app.py", PYTHON))
            create(client, "node", runtime, "index.handler", package("index.js", NODE))
            console.log(f"warm: {WARM} interleaved invokes each (Python, {runtime})")
            samples = warm(port)
            console.log(f"cold: {COLD} Node cold starts, {COLD} `node -e 0` spawns")
            http_ms, init_ms = cold(client, port)
            client.close()
    spawned = spawn(node)
    py50, node50 = percentile(samples["py"], 50), percentile(samples["node"], 50)
    cold50, spawn50 = percentile(http_ms, 50), percentile(spawned, 50)
    rows = [
        Row(
            "warm invoke, Node vs Python",
            p50_p99(samples["node"]),
            f"Python: {p50_p99(samples['py'])}",
            "p50 within 0.1 ms of Python's",
            node50 - py50 <= 0.1,
        ),
        Row(
            "Node cold start, HTTP round trip",
            p50_p99(http_ms),
            f"`node -e 0` spawn: {p50_p99(spawned)}",
            "p50 ≤ 15 ms and ≤ 0.3x spawn",
            cold50 <= 15 and cold50 <= 0.3 * spawn50,
        ),
        Row("Node Init Duration (REPORT)", p50_p99(init_ms), "—", "—", None),
    ]
    print_table(rows, console)
    info = machine(busy)
    how = [
        f"One `ember serve` (full isolation, `--auth none`), Node runtime {runtime}; "
        f"{WARM} warm invokes of each function, interleaved, one keep-alive connection each.",
        f"{COLD} cold starts: an UpdateFunctionConfiguration retires the sandbox, then one "
        "invoke with `X-Amz-Log-Type: Tail` (HTTP round trip; Init Duration from REPORT).",
        f"Baseline: {COLD} runs of `node -e 0` on the host ({node}), same run.",
        "Node sandboxes come from the zygote's pool of pre-started Node processes "
        "(isolated, privileges dropped, seccomp on, waiting for their code); the claim "
        f"mounts the code and hands over the function. {REFILL:.1f} s between cold starts "
        "lets the pool refill. " + ("Quick run (--quick)." if QUICK else ""),
        f"Warm p50: Node {fmt_ms(node50)}, Python {fmt_ms(py50)}.",
    ]
    write_markdown(DOC, rows, info, how)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench` (streaming part): time to first byte of a streamed response, measured
from the handler's first write, written to docs/benchmarks-streaming.md.

Against a fresh `ember serve`, a generator handler yields the wall-clock time
(ns) at its first write, sleeps, then yields the rest; the client reads the
first chunk and takes the difference (sandbox and client share the host's
clock). Through a RESPONSE_STREAM function URL (chunked HTTP) and through
InvokeWithResponseStream (event stream, decoded with botocore); the same for a
Node ``awslambda.streamifyResponse`` handler when a Node runtime is available. Warm sandbox,
one request at a time; target: p50 <= 5 ms. A quick run.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import boto3
import httpx
from botocore.eventstream import EventStreamBuffer

import servers
from report import machine

DOC_PATH = servers.ROOT / "docs" / "benchmarks-streaming.md"
ROUNDS = 200
TARGET_MS = 5.0
HANDLER = """
import time

def handler(event, context):
    yield str(time.time_ns())
    time.sleep(0.005)
    yield " done"
"""


# The same through Node's awslambda.streamifyResponse; the wall clock in ns from
# performance.timeOrigin + now() (Date.now() has only ms).
NODE_HANDLER = """
export const handler = awslambda.streamifyResponse(async (event, stream) => {
  const ns = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e3)) * 1000n;
  stream.write(String(ns));
  await new Promise((resolve) => setTimeout(resolve, 5));
  stream.end(" done");
});
"""


def package(name: str = "app.py", source: str = HANDLER) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, source)
    return buffer.getvalue()


def url_ttfb(client: httpx.Client, url: str) -> float:
    with client.stream("GET", url) as response:
        pieces = response.iter_raw()
        first = next(pieces)
        arrived = time.time_ns()
        for _ in pieces:
            pass
    return (arrived - int(first)) / 1e6


def invoke_ttfb(client: httpx.Client, path: str) -> float:
    with client.stream("POST", path, content=b"{}") as response:
        buffer = EventStreamBuffer()
        pieces = response.iter_raw()
        for raw in pieces:
            buffer.add_data(raw)
            message = next(iter(buffer), None)
            if message is not None:
                arrived = time.time_ns()
                break
        for _ in pieces:
            pass
    return (arrived - int(message.payload)) / 1e6


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        with servers.running(
            servers.ember_command(port, root / "data"), root / "server.log", url + "/health"
        ):
            aws = boto3.client(
                "lambda",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            functions = [("stream", "python3.11", "app.handler", package(), "Python generator")]
            with httpx.Client(base_url=url, timeout=30) as client:
                node = [r for r in client.get("/_ember/runtimes").json()["available"]
                        if r.startswith("nodejs")]  # fmt: skip
            if node:
                code = package("index.mjs", NODE_HANDLER)
                functions.append(("stream-node", node[0], "index.handler", code, "Node"))
            measured = []
            for name, runtime, handler, code, label in functions:
                aws.create_function(
                    FunctionName=name,
                    Runtime=runtime,
                    Handler=handler,
                    Role="arn:aws:iam::000000000000:role/bench",
                    Code={"ZipFile": code},
                )
                function_url = aws.create_function_url_config(
                    FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
                )["FunctionUrl"]
                path = f"/2021-11-15/functions/{name}/response-streaming-invocations"
                with httpx.Client(base_url=url, timeout=30) as client:
                    for _ in range(10):  # warm up the sandbox and the connection
                        url_ttfb(client, function_url)
                    by_url = [url_ttfb(client, function_url) for _ in range(ROUNDS)]
                    by_invoke = [invoke_ttfb(client, path) for _ in range(ROUNDS)]
                measured.append((f"{label}: function URL (RESPONSE_STREAM, chunked)", by_url))
                measured.append((f"{label}: InvokeWithResponseStream (event stream)", by_invoke))
    info = machine(0.0)
    rows = []
    for what, samples in measured:
        p50, p99 = percentiles(samples)
        rows.append(
            f"| {what} | {p50:.2f} ms | {p99:.2f} ms | {'yes' if p50 <= TARGET_MS else 'NO'} |"
        )
    lines = [
        "# Benchmarks: response streaming",
        "",
        f"Measured {info['date']} by `bench/bench_streaming.py`: {info['nproc']} cores "
        f"({info['cpu']}), {info['python']}, load {info['load']} (a shared machine).",
        f"Time from a handler's first write (a Python generator's first yield; a Node "
        f"`streamifyResponse` handler's first `write`) to the client reading it, {ROUNDS} "
        f"warm requests one at a time; target p50 <= {TARGET_MS:.0f} ms.",
        "",
        "| Path | p50 | p99 | Target met |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    DOC_PATH.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench` (MCP part): what a tools/call costs over the same invoke on the Lambda API.

One `ember serve`, one no-op function exposed as a tool. The same HTTP client
(httpx, one keep-alive connection each) alternates the two calls so that both
see the same machine: a Lambda Invoke, and an MCP ``tools/call`` over
Streamable HTTP at 2026-07-28 (one stateless POST, as the SDK client sends
it). The SDK's own client is timed too, for reference (it adds client work).
Target: p50 of tools/call <= p50 of Invoke + 2 ms. Results are printed and
written to docs/benchmarks-mcp.md.

Exit status 0 when everything was measured (even if the target is missed).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

import servers
from report import cpu_busy, machine

DOC_PATH = servers.ROOT / "docs" / "benchmarks-mcp.md"
FUNCTION = "noop"
TARGET_EXTRA_MS = 2.0
CALLS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
WARMUP = 200
VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
}
HEADERS = {
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": VERSION,
    "mcp-method": "tools/call",
    "mcp-name": FUNCTION,
}


def package() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
    return base64.b64encode(buffer.getvalue()).decode()


def deploy(url: str) -> None:
    create = {
        "FunctionName": FUNCTION,
        "Runtime": f"python3.{sys.version_info.minor}",
        "Handler": "app.handler",
        "Role": "arn:aws:iam::000000000000:role/bench",
        "Code": {"ZipFile": package()},
    }
    httpx.post(f"{url}/2015-03-31/functions", json=create, timeout=30).raise_for_status()
    tool = {"description": "Does nothing.", "inputSchema": {"type": "object"}}
    httpx.put(f"{url}/_ember/functions/{FUNCTION}/tool", json=tool, timeout=30).raise_for_status()


def alternate(url: str) -> tuple[list[float], list[float]]:
    """(Invoke ms, tools/call ms), measured alternately on two keep-alive connections."""
    lam, mcp = httpx.Client(base_url=url), httpx.Client(base_url=url)
    invoke_path = f"/2015-03-31/functions/{FUNCTION}/invocations"
    invoke_ms: list[float] = []
    call_ms: list[float] = []
    for index in range(WARMUP + CALLS):
        body = {
            "jsonrpc": "2.0",
            "id": index,
            "method": "tools/call",
            "params": {"name": FUNCTION, "arguments": {}, "_meta": META},
        }
        started = time.perf_counter()
        response = lam.post(invoke_path, content=b"{}")
        middle = time.perf_counter()
        answer = mcp.post("/mcp", json=body, headers=HEADERS)
        ended = time.perf_counter()
        assert response.status_code == 200 and answer.status_code == 200, answer.text
        assert answer.json()["result"]["isError"] is False, answer.text
        if index >= WARMUP:
            invoke_ms.append((middle - started) * 1000)
            call_ms.append((ended - middle) * 1000)
    lam.close()
    mcp.close()
    return invoke_ms, call_ms


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_ms(url: str, pid: int) -> tuple[float, float]:
    """Server CPU per call (ms): Invoke, then tools/call, each in a phase of its own.

    The sandbox is another process, so this is the platform's own work, and
    unlike latency it hardly moves when other work shares the CPUs.
    """
    with httpx.Client(base_url=url) as client:
        path = f"/2015-03-31/functions/{FUNCTION}/invocations"
        before = cpu_seconds(pid)
        for _ in range(CALLS):
            client.post(path, content=b"{}")
        invoke = (cpu_seconds(pid) - before) / CALLS * 1000
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": FUNCTION, "arguments": {}, "_meta": META},
        }
        before = cpu_seconds(pid)
        for _ in range(CALLS):
            client.post("/mcp", json=body, headers=HEADERS)
        call = (cpu_seconds(pid) - before) / CALLS * 1000
    return invoke, call


def sdk_client(url: str, calls: int) -> list[float]:
    from mcp import Client

    async def run() -> list[float]:
        times: list[float] = []
        async with Client(url + "/mcp", cache=None) as client:
            for index in range(WARMUP + calls):
                started = time.perf_counter()
                await client.call_tool(FUNCTION, {})
                if index >= WARMUP:
                    times.append((time.perf_counter() - started) * 1000)
        return times

    return asyncio.run(run())


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if q != 50 else statistics.median(values)


def main() -> None:
    busy = cpu_busy()
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        command = servers.ember_command(port, Path(scratch) / "data")
        log = Path(scratch) / "ember.log"
        with servers.running(command, log, url + "/health") as process:
            deploy(url)
            invoke_ms, call_ms = alternate(url)
            cpu_invoke, cpu_call = server_cpu_ms(url, process.pid)
            sdk_ms = sdk_client(url, CALLS // 2)
    rows = [
        ("Lambda Invoke (httpx)", invoke_ms),
        ("MCP tools/call, Streamable HTTP (httpx)", call_ms),
        ("MCP tools/call, SDK client (reference)", sdk_ms),
    ]
    extra = statistics.median(call_ms) - statistics.median(invoke_ms)
    verdict = "met" if extra <= TARGET_EXTRA_MS else "MISSED"
    info = machine(busy)
    lines = [
        "# MCP benchmark",
        "",
        f"Written by `bench/bench_mcp.py` ({CALLS} calls each after {WARMUP} warm-up; "
        f"{info['date']}, {info['nproc']} CPUs, load {info['load']}, busy {info['busy']}).",
        "A no-op function on a warm sandbox; the two first rows alternate call by call.",
        "",
        "| path | p50 ms | p90 ms | p99 ms |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {p(v, 50):.2f} | {p(v, 90):.2f} | {p(v, 99):.2f} |" for name, v in rows),
        "",
        f"tools/call costs {extra:+.2f} ms at p50 over Invoke: target <= {TARGET_EXTRA_MS} ms "
        f"{verdict}.",
        "",
        f"Server CPU per call (the platform's own work; the sandbox is another process): "
        f"Invoke {cpu_invoke:.2f} ms, tools/call {cpu_call:.2f} ms "
        f"({cpu_call - cpu_invoke:+.2f} ms).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    DOC_PATH.write_text(text)


if __name__ == "__main__":
    main()

"""`make bench`, isolation part: what full isolation costs, beside the unisolated backend.

Measures, for `--sandbox zygote` (full isolation) and `--sandbox process` (none) in turn:
cold start over HTTP and server-side Init (p50 / p99), warm invoke at 1 client (wrk), and
how many sandboxes the backend creates per second, sustained. Writes
docs/benchmarks-isolation.md.
"""

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console

import ember_api
import servers
from loadgen import run_wrk
from report import Row, cpu_busy, fmt_ms, machine, p50_p99, percentile, print_table

DOC = servers.ROOT / "docs" / "benchmarks-isolation.md"
COLD = 60
CREATE_SECONDS = 5.0
CREATORS = 4
ROUNDS = 3  # creation-rate rounds per backend; the median is reported (the machine is noisy)
console = Console(width=None if sys.stdout.isatty() else 150)


def measure_server(mode: str, workdir: Path) -> dict[str, list[float] | float]:
    port = servers.free_port()
    cmd = [*servers.ember_command(port, workdir / f"data-{mode}"), "--sandbox", mode]
    url = f"http://127.0.0.1:{port}"
    with servers.running(cmd, workdir / f"{mode}.log", url + "/health"):
        client = httpx.Client(base_url=url, timeout=60)
        ember_api.deploy(client)
        invoker = ember_api.Invoker("127.0.0.1", port)
        http_ms, init_ms = [], []
        for i in range(COLD):
            ember_api.force_cold(client, i)
            time.sleep(0.02)
            result = invoker.invoke(tail=True)
            http_ms.append(result.elapsed_ms)
            if result.init_ms is not None:
                init_ms.append(result.init_ms)
        invoker.close()
        invoke_url = f"{url}{ember_api.INVOKE_PATH}"
        run_wrk(invoke_url, 1, 2)
        warm = run_wrk(invoke_url, 1, 6)
        client.close()
    return {"http": http_ms, "init": init_ms, "warm_p50": warm.p50_ms, "warm_p99": warm.p99_ms}


async def creation_rate(isolated: bool, code: Path) -> float:
    """Sandboxes created (Init done) per second by the backend, CREATORS at a time."""
    from ember.sandbox.base import SandboxSpec
    from ember.sandbox.zygote import ZygoteBackend

    backend = ZygoteBackend(isolated=isolated, sink=lambda *_: None)
    await backend.start()
    await backend.prestart("python3.11")
    created = 0
    deadline = time.monotonic() + CREATE_SECONDS

    async def creator() -> None:
        nonlocal created
        while time.monotonic() < deadline:
            spec = SandboxSpec(
                uuid.uuid4().hex[:16],
                "python3.11",
                "app.handler",
                str(code),
                {"PATH": "/usr/bin:/bin"},
                128,
                64,
                64,
                256,
                # One function's sandboxes, as the worker keys them (network
                # namespaces are handed on within one function version).
                reuse_key="bench:$LATEST:1",
            )
            sandbox = await backend.create(spec)
            sandbox.destroy()
            created += 1

    started = time.monotonic()
    await asyncio.gather(*(creator() for _ in range(CREATORS)))
    rate = created / (time.monotonic() - started)
    await backend.close()
    return rate


def main() -> int:
    busy = cpu_busy()
    with tempfile.TemporaryDirectory(prefix="ember-bench-iso-") as tmp:
        workdir = Path(tmp)
        code = workdir / "code"
        code.mkdir()
        (code / "app.py").write_text(ember_api.HANDLER_FILE.read_text())
        results = {}
        rates = {}
        for mode in ("zygote", "process"):
            console.log(f"{mode}: cold starts and warm latency")
            results[mode] = measure_server(mode, workdir)
            console.log(f"{mode}: sandbox creation rate ({ROUNDS} x {CREATE_SECONDS:.0f} s)")
            rounds = [asyncio.run(creation_rate(mode == "zygote", code)) for _ in range(ROUNDS)]
            console.log(f"{mode}: rounds {', '.join(f'{r:.0f}/s' for r in rounds)}")
            rates[mode] = statistics.median(rounds)
    full, none = results["zygote"], results["process"]
    warm_ratio = float(full["warm_p50"]) / float(none["warm_p50"])  # type: ignore[arg-type]
    rows = [
        Row(
            "cold start, HTTP round trip",
            p50_p99(full["http"]),  # type: ignore[arg-type]
            f"unisolated: {p50_p99(none['http'])}",
            "p50 ≤ 10 ms, p99 ≤ 25 ms",  # type: ignore[arg-type]
            percentile(full["http"], 50) <= 10 and percentile(full["http"], 99) <= 25,
        ),  # type: ignore[arg-type]
        Row(
            "cold start, server-side Init",
            p50_p99(full["init"]),  # type: ignore[arg-type]
            f"unisolated: {p50_p99(none['init'])}",
            "—",
            None,
        ),  # type: ignore[arg-type]
        Row(
            "warm invoke, 1 client",
            f"p50 {fmt_ms(full['warm_p50'])} / p99 {fmt_ms(full['warm_p99'])}",  # type: ignore[arg-type]
            f"unisolated: p50 {fmt_ms(none['warm_p50'])} / p99 {fmt_ms(none['warm_p99'])}",  # type: ignore[arg-type]
            "within 10 % of unisolated",
            warm_ratio <= 1.10,
        ),
        Row(
            "sandboxes created per second",
            f"{rates['zygote']:.0f}/s",
            f"unisolated: {rates['process']:.0f}/s",
            "≥ 150/s",
            rates["zygote"] >= 150,
        ),
    ]
    print_table(rows, console)
    info = machine(busy)
    lines = [
        "# ember benchmarks: isolation",
        "",
        f"Generated by `make bench` (`bench/bench_isolation.py`) on {info['date']}.",
        f"Machine: {info['nproc']} CPUs, {info['kernel']}, {info['python']}; CPUs {info['busy']}"
        " busy before measuring.",
        "",
        "| metric | full isolation | unisolated | target | met? |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(c.replace('|', '/') for c in row.cells())} |" for row in rows),
        "",
        "## How measured",
        "",
        f"- {COLD} cold starts per backend (a configuration change retires the sandbox; 20 ms"
        " pause; the next invoke is timed client-side; Init Duration from its REPORT line).",
        f"- Warm: wrk, 1 connection, 6 s after a 2 s warm-up; ratio of p50s {warm_ratio:.2f}.",
        f"- Creation rate: the backend in-process, {CREATORS} concurrent create+destroy loops"
        f" for {CREATE_SECONDS:.0f} s (each create = Init done: handler imported); the median"
        f" of {ROUNDS} rounds per backend.",
        "",
    ]
    DOC.write_text("\n".join(lines))
    console.print(f"wrote {DOC}")
    console.print(json.dumps({"warm_ratio": round(warm_ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

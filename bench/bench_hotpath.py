"""`make bench`, issue 18 points 6 and 7: server CPU per warm invoke against a bare ASGI
echo server, and isolated sandboxes created per second against unisolated ones.

Warm CPU: `ember serve --auth none` and the bare ASGI app (`bare_asgi.py`, ember's
uvicorn + uvloop + httptools stack) run at once; wrk at 1 connection alternates between
them in slices (A B B A ...), so that the drift of the shared machine falls on both. Each
slice's figure is the server process's user + system CPU over the slice divided by the
requests wrk completed (`/proc/<pid>/stat`); ember's is also given with its history
writer process added. The ratio is the median of ember's slices over the median of the
bare app's. The sandbox is the function's, not the server's: not counted.

Creation: `bench_isolation.creation_rate`, the backend in-process, 4 concurrent create +
destroy loops for 5 s; the median of 3 rounds, isolated and not.

    cd bench && ../.venv/bin/python bench_hotpath.py [--slices 8] [--seconds 3]
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from rich.console import Console

import ember_api
import servers
from bench_isolation import creation_rate
from loadgen import run_wrk
from report import Row, cpu_busy, machine, print_table, write_markdown

DOC = servers.ROOT / "docs" / "benchmarks-hotpath.md"
TARGET_RATIO = 2.0
TARGET_CREATIONS = 300
ROUNDS = 3
console = Console(width=None if sys.stdout.isatty() else 150)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_named(pid: int, marker: str) -> list[int]:
    """Direct children of ``pid`` whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == pid and marker in (entry / "cmdline").read_text():
                found.append(int(entry.name))
    return found


def warm_cpu(slices: int, seconds: int, workdir: Path) -> dict[str, list[float]]:
    """Per-request server CPU (ms) of each slice: ember, ember + history writer, bare."""
    ember_port, bare_port = servers.free_port(), servers.free_port()
    ember_url, bare_url = f"http://127.0.0.1:{ember_port}", f"http://127.0.0.1:{bare_port}"
    command = servers.ember_command(ember_port, workdir / "data")
    per: dict[str, list[float]] = {"ember": [], "ember+writer": [], "bare": []}
    with contextlib.ExitStack() as stack:
        ember = stack.enter_context(
            servers.running(command, workdir / "ember.log", ember_url + "/health")
        )
        bare = stack.enter_context(
            servers.running(servers.bare_asgi_command(bare_port), workdir / "bare.log", bare_url)
        )
        with httpx.Client(base_url=ember_url, timeout=60) as client:
            ember_api.deploy(client)
        invoke = ember_url + ember_api.INVOKE_PATH
        writers = children_named(ember.pid, "history_writer")
        targets = {"ember": (invoke, [ember.pid]), "bare": (bare_url + "/", [bare.pid])}
        for url, _ in targets.values():
            run_wrk(url, 1, 2, check=True)  # warm: sandbox up, caches filled
        order = ["ember", "bare", "bare", "ember"] * ((slices + 3) // 4)
        for name in order[: slices * 2]:
            url, pids = targets[name]
            watched = pids + (writers if name == "ember" else [])
            before = {pid: cpu_seconds(pid) for pid in watched}
            result = run_wrk(url, 1, seconds, check=name == "ember")
            spent = {pid: cpu_seconds(pid) - before[pid] for pid in watched}
            own = spent[pids[0]] / result.requests * 1000
            per[name].append(own)
            if name == "ember":
                per["ember+writer"].append(sum(spent.values()) / result.requests * 1000)
            console.log(f"{name}: {own * 1000:.0f} µs of server CPU per request")
    return per


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=8, help="wrk slices per server")
    parser.add_argument("--seconds", type=int, default=3, help="length of one slice")
    args = parser.parse_args()
    busy = cpu_busy()
    with tempfile.TemporaryDirectory(prefix="ember-bench-hot-") as tmp:
        workdir = Path(tmp)
        console.log(f"warm invoke: {args.slices} slices of {args.seconds} s per server")
        per = warm_cpu(args.slices, args.seconds, workdir)
        code = workdir / "code"
        code.mkdir()
        (code / "app.py").write_text(ember_api.HANDLER_FILE.read_text())
        rates = {}
        for isolated in (True, False):
            rounds = [asyncio.run(creation_rate(isolated, code)) for _ in range(ROUNDS)]
            console.log(f"creation, isolated={isolated}: {', '.join(f'{r:.0f}/s' for r in rounds)}")
            rates[isolated] = statistics.median(rounds)
    ember, total, bare = (statistics.median(per[k]) for k in ("ember", "ember+writer", "bare"))
    ratio = ember / bare
    rows = [
        Row(
            "warm invoke, server CPU per request (1 client)",
            f"{ember:.3f} ms ({ratio:.2f}x); with the history writer {total:.3f} ms "
            f"({total / bare:.2f}x)",
            f"bare ASGI echo: {bare:.3f} ms",
            f"≤ {TARGET_RATIO:.1f}x bare ASGI",
            ratio <= TARGET_RATIO,
        ),
        Row(
            "isolated sandboxes created per second (create + destroy, sustained)",
            f"{rates[True]:.0f}/s",
            f"unisolated: {rates[False]:.0f}/s",
            f"≥ {TARGET_CREATIONS}/s",
            rates[True] >= TARGET_CREATIONS,
        ),
    ]
    print_table(rows, console)
    how = [
        "Warm CPU: one `ember serve --auth none` (full isolation) with one warm Python "
        "function, and the bare ASGI echo app under ember's server stack (uvicorn, uvloop, "
        f"httptools), both running; wrk at 1 connection alternates between them in "
        f"{args.seconds} s slices (A B B A ...), {args.slices} per server. A slice's figure is "
        "the server process's user + system CPU (`/proc/<pid>/stat`) over the requests wrk "
        "completed in it; the medians are compared. ember's with its history writer process "
        "added is given beside. The sandbox's CPU is the function's and is not counted.",
        "Creation: the zygote backend in-process (`bench_isolation.creation_rate`), 4 "
        "concurrent loops of create (Init done: handler imported) + destroy for 5 s; the "
        f"median of {ROUNDS} rounds, with full isolation and without (`--sandbox process`).",
    ]
    write_markdown(DOC, rows, machine(busy), how)
    return 0


if __name__ == "__main__":
    sys.exit(main())

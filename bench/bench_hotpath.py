"""`make bench`, issue 18 points 6 and 7: server CPU per warm invoke against a bare ASGI
echo server (and against the floor of any server whose functions run in another
process: the bare app relaying each body through a child), and isolated sandboxes
created per second against unisolated ones.

Warm CPU: `ember serve --auth none`, the bare ASGI app (`bare_asgi.py`, ember's uvicorn +
uvloop + httptools stack) and the relay floor (`relay_asgi.py`) run at once; wrk at 1
connection alternates between them in slices (A B C C B A ...), so that the drift of the
shared machine falls on all. Each slice's figure is the server process's user + system
CPU over the slice divided by the requests wrk completed (`/proc/<pid>/stat`); ember's
is also given with its history writer process added. The ratio is the median of ember's
slices over the median of the bare app's. The sandbox is the function's, not the
server's: not counted.

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
MANY = 32  # connections of the second warm pass: calls overlap, reads and writes batch
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


def warm_cpu(
    slices: int, seconds: int, workdir: Path, connections: tuple[int, ...] = (1,)
) -> dict[int, dict[str, list[float]]]:
    """Per-request server CPU (ms) of each slice, at each number of wrk connections:
    ember, ember + history writer, the bare app and the relay floor."""
    ports = {name: servers.free_port() for name in ("ember", "bare", "relay")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    found: dict[int, dict[str, list[float]]] = {}
    with contextlib.ExitStack() as stack:
        ember = stack.enter_context(
            servers.running(
                servers.ember_command(ports["ember"], workdir / "data"),
                workdir / "ember.log",
                urls["ember"] + "/health",
            )
        )
        others = {
            name: stack.enter_context(
                servers.running(
                    servers.bare_asgi_command(ports[name], app),
                    workdir / f"{name}.log",
                    urls[name],
                )
            )
            for name, app in (("bare", "bare_asgi:app"), ("relay", "relay_asgi:app"))
        }
        with httpx.Client(base_url=urls["ember"], timeout=60) as client:
            ember_api.deploy(client)
        writers = children_named(ember.pid, "history_writer")
        targets = {
            "ember": (urls["ember"] + ember_api.INVOKE_PATH, [ember.pid]),
            "bare": (urls["bare"] + "/", [others["bare"].pid]),
            "relay": (urls["relay"] + "/", [others["relay"].pid]),
        }
        for conns in connections:
            found[conns] = _slices(targets, writers, conns, slices, seconds)
    return found


def _slices(
    targets: dict[str, tuple[str, list[int]]],
    writers: list[int],
    conns: int,
    slices: int,
    seconds: int,
) -> dict[str, list[float]]:
    per: dict[str, list[float]] = {"ember": [], "ember+writer": [], "bare": [], "relay": []}
    for url, _ in targets.values():
        run_wrk(url, conns, 2, check=True)  # warm: sandboxes up, caches filled
    # Each server's slices spread over the run: A B C C B A ...
    order = ["ember", "bare", "relay", "relay", "bare", "ember"] * ((slices + 1) // 2)
    for name in order[: slices * 3]:
        url, pids = targets[name]
        watched = pids + (writers if name == "ember" else [])
        before = {pid: cpu_seconds(pid) for pid in watched}
        result = run_wrk(url, conns, seconds, check=name == "ember")
        spent = {pid: cpu_seconds(pid) - before[pid] for pid in watched}
        own = spent[pids[0]] / result.requests * 1000
        per[name].append(own)
        if name == "ember":
            per["ember+writer"].append(sum(spent.values()) / result.requests * 1000)
        console.log(f"{name}, {conns} connections: {own * 1000:.0f} µs of server CPU per request")
    return per


def _warm_rows(per: dict[str, list[float]], conns: int) -> list[Row]:
    ember, total, bare, relay = (
        statistics.median(per[k]) for k in ("ember", "ember+writer", "bare", "relay")
    )
    ratio = ember / bare
    clients = "1 client" if conns == 1 else f"{conns} clients"
    return [
        Row(
            f"warm invoke, server CPU per request ({clients})",
            f"{ember:.3f} ms ({ratio:.2f}x); with the history writer {total:.3f} ms "
            f"({total / bare:.2f}x)",
            f"bare ASGI echo: {bare:.3f} ms",
            f"≤ {TARGET_RATIO:.1f}x bare ASGI",
            ratio <= TARGET_RATIO,
        ),
        Row(
            f"floor: the bare app relaying each body through another process ({clients})",
            f"{relay:.3f} ms ({relay / bare:.2f}x); ember's own work over it: "
            f"{(ember - relay) * 1000:.0f} µs, allowed by the target: "
            f"{max(TARGET_RATIO * bare - relay, 0) * 1000:.0f} µs",
            f"bare ASGI echo: {bare:.3f} ms",
            "—",
            None,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=8, help="wrk slices per server")
    parser.add_argument("--seconds", type=int, default=3, help="length of one slice")
    args = parser.parse_args()
    busy = cpu_busy()
    with tempfile.TemporaryDirectory(prefix="ember-bench-hot-") as tmp:
        workdir = Path(tmp)
        console.log(f"warm invoke: {args.slices} slices of {args.seconds} s per server")
        per = warm_cpu(args.slices, args.seconds, workdir, (1, MANY))
        code = workdir / "code"
        code.mkdir()
        (code / "app.py").write_text(ember_api.HANDLER_FILE.read_text())
        rates = {}
        for isolated in (True, False):
            rounds = [asyncio.run(creation_rate(isolated, code)) for _ in range(ROUNDS)]
            console.log(f"creation, isolated={isolated}: {', '.join(f'{r:.0f}/s' for r in rounds)}")
            rates[isolated] = statistics.median(rounds)
    rows = [
        *_warm_rows(per[1], 1),
        *_warm_rows(per[MANY], MANY),
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
        "function, the bare ASGI echo app under ember's server stack (uvicorn, uvloop, "
        "httptools) and the relay floor below, all running; wrk at 1 connection alternates "
        f"between them in {args.seconds} s slices (A B C C B A ...), {args.slices} per server; "
        f"then the same at {MANY} connections. "
        "A slice's figure is the server process's user + system CPU (`/proc/<pid>/stat`) over "
        "the requests wrk completed in it; the medians are compared. ember's with its history "
        "writer process added is given beside. The sandbox's CPU is the function's and is not "
        "counted.",
        "Floor: `relay_asgi.py`, the bare app passing each body to a child process over a "
        "Unix socket through an asyncio protocol (as ember's sandbox channel does) and "
        "answering its reply, in the same alternating slices: what the round trip to "
        "another process alone costs the server, before any routing, check, log or metric.",
        "Creation: the zygote backend in-process (`bench_isolation.creation_rate`), 4 "
        "concurrent loops of create (Init done: handler imported) + destroy for 5 s; the "
        f"median of {ROUNDS} rounds, with full isolation and without (`--sandbox process`).",
    ]
    write_markdown(DOC, rows, machine(busy), how)
    return 0


if __name__ == "__main__":
    sys.exit(main())

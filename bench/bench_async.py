"""Asynchronous invocation benchmark (issue 4); writes docs/benchmarks-async.md.

1. accept: `ember serve --pollers 0` (accept only, SQLite with synchronous=FULL), wrk
   POSTing Event invokes (`bench/event.lua`) at 32 connections: 202s per second and latency;
2. drain: the same data dir restarted with pollers: events of a no-op function per second;
3. durability: 10 cycles of kill -9 under Event load and restart on the same data dir; every
   202 must end as one dead letter of the sink (source -> OnSuccess -> sink, which always
   fails with no retries), counted by the original request id.

Exit 0 when everything was measured (targets missed or not), 1 when something failed to run.
"""

import base64
import io
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx

import servers
from loadgen import BENCH_DIR, parse_wrk, wrk_path
from report import cpu_busy, machine

DOC_PATH = servers.ROOT / "docs" / "benchmarks-async.md"
EVENT_SCRIPT = BENCH_DIR / "event.lua"
CLIENTS = 32
LATENCY_CLIENTS = 16  # fewer connections: the latency at a rate above the target
WARMUP_S = 2
RUN_S = 8
CYCLES = 10
SENDERS = 4
ROLE = "arn:aws:iam::000000000000:role/bench"
NOOP = "def handler(event, context):\n    return event\n"
FAILS = "def handler(event, context):\n    raise ValueError('sink')\n"

# How often the drain is checked: each check counts the whole backlog, so checking
# every few milliseconds would load the server it measures; 0.25 s over a drain of
# a minute or more is a resolution of well under 1 %.
DRAIN_POLL_S = 0.25

TARGET_ACCEPT_RPS = 2000.0
TARGET_ACCEPT_P99_MS = 10.0
TARGET_DRAIN_RPS = 1000.0


def zipped(source: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return base64.b64encode(buffer.getvalue()).decode()


def create(client: httpx.Client, name: str, source: str, config: dict[str, object]) -> None:
    body = {
        "FunctionName": name,
        "Runtime": f"python3.{sys.version_info.minor}",
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": zipped(source)},
    }
    client.post("/2015-03-31/functions", json=body).raise_for_status()
    path = f"/2019-09-25/functions/{name}/event-invoke-config"
    client.put(path, json=config).raise_for_status()


def stats(client: httpx.Client, name: str) -> dict[str, int]:
    for row in client.get("/_ember/queue").json()["functions"]:
        if row["function"] == name:
            return dict(row)
    return {"depth": 0, "inFlight": 0, "deadLetters": 0}


def wrk_events(url: str, seconds: int, clients: int = CLIENTS) -> tuple[float, float, float, int]:
    cmd = [wrk_path(), "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    proc = subprocess.run(
        [*cmd, "-s", str(EVENT_SCRIPT), url], capture_output=True, text=True, timeout=seconds + 30
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr or proc.stdout}")
    result = parse_wrk(proc.stdout, clients)
    return result.rps, result.p50_ms, result.p99_ms, result.requests


def measure_accept_and_drain(
    work: Path, extra: tuple[str, ...] = (), label: str = "sqlite"
) -> dict[str, float]:
    """Accept with `--pollers 0`, then drain after a restart; ``extra``: server options
    (bench_cluster passes `--database`), ``label`` names the data dir and logs."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    data = work / f"data-accept-{label}"
    invoke = f"{url}/2015-03-31/functions/noop/invocations"
    cmd = [*servers.ember_command(port, data), *extra, "--pollers", "0"]
    with (
        servers.running(cmd, work / f"accept-{label}.log", url + "/health"),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        create(client, "noop", NOOP, {"MaximumRetryAttempts": 0})
        wrk_events(invoke, WARMUP_S)
        rps, _, _, requests = wrk_events(invoke, RUN_S)
        latency_rps, p50, p99, _ = wrk_events(invoke, RUN_S, LATENCY_CLIENTS)
        backlog = stats(client, "noop")["depth"]
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*servers.ember_command(port, data), *extra]
    with (
        servers.running(cmd, work / f"drain-{label}.log", url + "/health"),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        started = time.perf_counter()
        while True:
            row = stats(client, "noop")
            if row["depth"] == 0 and row["inFlight"] == 0:
                break
            time.sleep(DRAIN_POLL_S)
        drain_s = time.perf_counter() - started
    return {
        "accept_rps": rps,
        "accept_p50": p50,
        "accept_p99": p99,
        "accept_requests": requests,
        "latency_rps": latency_rps,
        "backlog": backlog,
        "drain_rps": backlog / drain_s,
        "drain_s": drain_s,
    }


def sender(url: str, accepted: list[str], stop: threading.Event) -> None:
    headers = {"X-Amz-Invocation-Type": "Event"}
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                response = client.post(
                    "/2015-03-31/functions/source/invocations", content=b"{}", headers=headers
                )
            except httpx.HTTPError:
                return
            if response.status_code == 202:
                accepted.append(response.headers["x-amzn-requestid"])


def delivered_ids(client: httpx.Client) -> set[str]:
    found: set[str] = set()
    params = {"limit": "1000", "payload": "1"}
    while True:
        page = client.get("/_ember/functions/sink/dead-letters", params=params).json()
        found |= {d["payload"]["requestContext"]["requestId"] for d in page["deadLetters"]}
        if not page.get("next"):
            return found
        params["after"] = page["next"]


def measure_durability(work: Path) -> dict[str, int]:
    data = work / "data-kill"
    rng = random.Random(2026)
    accepted: list[str] = []
    arn = "arn:aws:lambda:us-east-1:000000000000:function:sink"
    for cycle in range(CYCLES + 1):
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = work / f"kill-{cycle}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                servers.ember_command(port, data),
                cwd=servers.ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        servers.wait_ready(proc, url + "/health", log_path)
        if cycle == 0:
            with httpx.Client(base_url=url, timeout=30) as client:
                create(client, "sink", FAILS, {"MaximumRetryAttempts": 0})
                create(
                    client,
                    "source",
                    NOOP,
                    {"DestinationConfig": {"OnSuccess": {"Destination": arn}}},
                )
        if cycle == CYCLES:  # the last start only drains
            with httpx.Client(base_url=url, timeout=30) as client:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    src, sink = stats(client, "source"), stats(client, "sink")
                    if not (src["depth"] or src["inFlight"] or sink["depth"] or sink["inFlight"]):
                        break
                    time.sleep(0.1)
                delivered = delivered_ids(client)
            servers.stop(proc)
            break
        stop = threading.Event()
        threads = [
            threading.Thread(target=sender, args=(url, accepted, stop)) for _ in range(SENDERS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.5, 2.0))  # a random moment under load
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for thread in threads:
            thread.join()
        servers.stop(proc)  # reaps anything left in its group
    expected = set(accepted)
    return {
        "accepted": len(expected),
        "lost": len(expected - delivered),
        "delivered": len(delivered),
    }


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def main() -> int:
    wrk_path()
    busy = cpu_busy()
    info = machine(busy)
    with tempfile.TemporaryDirectory(prefix="ember-bench-async-") as tmp:
        work = Path(tmp)
        try:
            speed = measure_accept_and_drain(work)
            durable = measure_durability(work)
        except Exception as exc:  # report, don't hide: the numbers would be missing
            print(f"bench_async failed: {exc}")
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name}\n{servers.log_tail(log)}")
            return 1
    rows = [
        (
            "Event accept rate, durable (SQLite WAL, synchronous=FULL), 32 clients",
            f"{speed['accept_rps']:,.0f} /s ({speed['accept_requests']:,} in {RUN_S} s)",
            f"≥ {TARGET_ACCEPT_RPS:,.0f} /s",
            yes(speed["accept_rps"] >= TARGET_ACCEPT_RPS),
        ),
        (
            f"202 latency, {LATENCY_CLIENTS} clients",
            f"p50 {speed['accept_p50']:.2f} ms / p99 {speed['accept_p99']:.2f} ms "
            f"at {speed['latency_rps']:,.0f} /s",
            f"p99 ≤ {TARGET_ACCEPT_P99_MS:.0f} ms at ≥ {TARGET_ACCEPT_RPS:,.0f} /s",
            yes(
                speed["accept_p99"] <= TARGET_ACCEPT_P99_MS
                and speed["latency_rps"] >= TARGET_ACCEPT_RPS
            ),
        ),
        (
            "drain rate, no-op function, default pollers (32)",
            f"{speed['drain_rps']:,.0f} events/s "
            f"({speed['backlog']:,} in {speed['drain_s']:.1f} s)",
            f"≥ {TARGET_DRAIN_RPS:,.0f} /s",
            yes(speed["drain_rps"] >= TARGET_DRAIN_RPS),
        ),
        (
            f"events lost over {CYCLES} kill -9 / restart cycles under load",
            f"{durable['lost']} lost of {durable['accepted']:,} accepted (202)",
            "0",
            yes(durable["lost"] == 0),
        ),
    ]
    for row in rows:
        print(" | ".join(row))
    lines = [
        "# ember benchmarks: asynchronous invocation",
        "",
        f"Generated by `make bench` (`bench/bench_async.py`) on {info['date']}. "
        "Re-run it to refresh this file; do not edit by hand.",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['kernel']}, {info['python']}, "
        f"{info['wrk']}. Before measuring: CPUs {info['busy']} busy over 1 s, load average "
        f"{info['load']} (1/5/15 min).",
        "",
        "| metric | ember | target | met? |",
        "|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "## How measured",
        "",
        "- **Accept**: `ember serve --pollers 0` (events are accepted and kept, none delivered) "
        "on a "
        f'fresh data dir; `wrk -t1 -c{CLIENTS}` POSTing `{{"n": 1}}` with '
        f"`X-Amz-Invocation-Type: Event` (`bench/event.lua`), {WARMUP_S} s warm-up then {RUN_S} s "
        f"measured for the rate; then {LATENCY_CLIENTS} connections for {RUN_S} s for the "
        "latency, whose rate is shown with it (closed-loop wrk: once the server is saturated, "
        "latency only grows with connections). Each 202 is sent only after the event's group "
        "commit (one fsync shared by every concurrent accept) is on disk. Any non-2xx answer "
        "or socket error fails the bench.",
        "- **Drain**: the same data dir restarted with the default 32 pollers; the time from ready "
        "until `GET /_ember/queue` shows the backlog empty (no depth, nothing in flight), "
        f"checked every {DRAIN_POLL_S:g} s (each check counts the whole backlog).",
        f"- **Durability**: {CYCLES} cycles of {SENDERS} threads sending Event invokes; "
        "at a random "
        "moment 0.5-2 s into each cycle the server gets SIGKILL and is restarted on the same data "
        "dir. `source` (no-op) has an OnSuccess destination `sink`, which always fails with "
        "MaximumRetryAttempts 0, so each delivered event ends as exactly one dead letter of "
        "`sink`, moved there in the same transaction that acknowledges it. Lost = request ids "
        "answered 202 that never appear in a sink dead letter's invocation record.",
        "",
    ]
    DOC_PATH.write_text("\n".join(lines))
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

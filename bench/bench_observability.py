"""Observability's costs (issue 16): warm invoke p50 with calls recorded and without, on
the same machine in one run, and the time of one /metrics scrape with 1,000 functions.

Warm p50: ember with and without ``--no-observe``, wrk at 1 client, runs alternated
(A B A B ...) so that drift of the shared machine falls on both; the figure is the
median of each side's p50s. Scrape: a real Recorder fed calls of 1,000 functions
(every outcome, cold starts, throttles), rendered by the real collector, in-process
(no HTTP): the median of 20 renders.

    cd bench && ../.venv/bin/python bench_observability.py [--rounds 3] [--seconds 5]
"""

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

import ember_api
import servers
from ember.observe.metrics import Exposition
from ember.observe.recorder import Recorder
from ember.observe.records import Call
from ember.observe.sqlite import SqliteHistoryStore
from loadgen import run_wrk
from report import cpu_busy, machine

TARGET_OVERHEAD = 0.02
TARGET_SCRAPE_MS = 50.0
FUNCTIONS = 1000


def warm_p50(workdir: Path, observe: bool, seconds: int) -> float:
    port = servers.free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = servers.ember_command(port, workdir / f"data-{observe}-{port}")
    if not observe:
        cmd.append("--no-observe")
    with (
        servers.running(cmd, workdir / f"ember-{port}.log", f"{base}/health"),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        ember_api.deploy(client)
        url = f"{base}{ember_api.INVOKE_PATH}"
        run_wrk(url, 1, 2, check=True)
        return run_wrk(url, 1, seconds).p50_ms


def scrape_ms(workdir: Path) -> tuple[float, int]:
    store = SqliteHistoryStore(workdir / "history.sqlite3", "bench")
    recorder = Recorder(store, node="bench", history_size=10)
    for n in range(FUNCTIONS * 10):
        function = f"function-{n % FUNCTIONS:04d}"
        failure = b'{"errorType":"ValueError"}' if n % 7 == 0 else None
        init = 12.5 if n < FUNCTIONS else None
        call = Call(function, "$LATEST", "$LATEST", f"r{n}", "sync", "", 0.0, 0.0001,
                    0.0002, 0.0002 + (n % 50) / 1000, init, failure, 128, 20, "sb", 1)  # fmt: skip
        recorder.call(call)
        if n % 3 == 0:
            recorder.throttled(function, "ConcurrentInvocationLimitExceeded")
    exposition = Exposition(recorder, lambda: {"idle": FUNCTIONS, "busy": 0})
    size = len(exposition.render())
    times = []
    for _ in range(20):
        started = time.perf_counter()
        exposition.render()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), size


def hot_path_us(workdir: Path) -> float:
    """What recording adds to one call, in-process: enter, the Call tuple, call, leave
    (the drain that follows runs off the call's path, in the flush loop)."""
    recorder = Recorder(SqliteHistoryStore(workdir / "hot.sqlite3", "bench"), node="bench",
                        history_size=10)  # fmt: skip
    perf = time.perf_counter
    rounds = 100_000
    started = perf()
    for n in range(rounds):
        concurrent = recorder.enter("bench")
        now = perf()
        recorder.call(Call("bench", "$LATEST", "$LATEST", "r", "sync", "", now, now, now, now,
                           None, None, 128, 20, "sb", concurrent))  # fmt: skip
        recorder.leave("bench")
        if n % 1000 == 999:
            recorder._calls.clear()  # the flush loop's drain, not timed here
    return (perf() - started) / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    print(machine(cpu_busy()))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scrape, size = scrape_ms(workdir)
        print(f"/metrics with {FUNCTIONS} functions: {scrape:.1f} ms per render, {size} bytes "
              f"(target <= {TARGET_SCRAPE_MS:.0f} ms)")  # fmt: skip
        print(f"recording on the call's path: {hot_path_us(workdir):.2f} us per call")
        on: list[float] = []
        off: list[float] = []
        for round_ in range(args.rounds):
            # Alternate which goes first, so neither always gets the warmer machine.
            for observe in (round_ % 2 == 0, round_ % 2 == 1):
                with contextlib.suppress(KeyboardInterrupt):
                    p50 = warm_p50(workdir, observe, args.seconds)
                (on if observe else off).append(p50)
                print(f"round {round_ + 1}: {'observed' if observe else 'not observed'} "
                      f"warm p50 {p50:.3f} ms")  # fmt: skip
    with_, without = statistics.median(on), statistics.median(off)
    overhead = with_ / without - 1
    print(f"warm p50: observed {with_:.3f} ms, not observed {without:.3f} ms, "
          f"{overhead:+.1%} (target within {TARGET_OVERHEAD:.0%})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

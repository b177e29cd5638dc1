"""Observability's costs (issue 16): warm invoke p50 with calls recorded and without, on
the same machine in one run, and the time of one /metrics scrape with 1,000 functions.

Warm p50: two servers running at once, one with and one without ``--no-observe``; wrk at
1 client alternates between them in 2 s slices (A B B A ...), so that the drift of the
shared machine falls on both; each pair of servers gives the ratio of its two medians,
and the figure is the median ratio over fresh pairs (a pair's own placement on the
cores is noise of its own). Scrape: a real Recorder fed calls of 1,000 functions
(every outcome, cold starts, throttles), rendered by the real collector, in-process
(no HTTP): the median of 20 renders.

    cd bench && ../.venv/bin/python bench_observability.py [--pairs 10] [--slices 6] [--seconds 2]
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


def paired_p50s(workdir: Path, seconds: int, slices: int) -> tuple[list[float], list[float]]:
    """Two servers at once, one recording and one started with ``--no-observe``; wrk
    (1 connection) alternates between them in short slices, so that both see the same
    moments of the shared machine. Returns the slices' p50s: (observed, not observed)."""
    with contextlib.ExitStack() as stack:
        urls: dict[bool, str] = {}
        for observe in (True, False):
            port = servers.free_port()
            base = f"http://127.0.0.1:{port}"
            cmd = servers.ember_command(port, workdir / f"data-{observe}-{port}")
            if not observe:
                cmd.append("--no-observe")
            stack.enter_context(
                servers.running(cmd, workdir / f"ember-{port}.log", f"{base}/health")
            )
            with httpx.Client(base_url=base, timeout=60) as client:
                ember_api.deploy(client)
            urls[observe] = f"{base}{ember_api.INVOKE_PATH}"
            run_wrk(urls[observe], 1, 2, check=True)
        on: list[float] = []
        off: list[float] = []
        for slice_ in range(slices):
            # Alternate which goes first, so neither always follows the other.
            for observe in (slice_ % 2 == 0, slice_ % 2 == 1):
                p50 = run_wrk(urls[observe], 1, seconds).p50_ms
                (on if observe else off).append(p50)
        return on, off


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
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=2)
    args = parser.parse_args()
    print(machine(cpu_busy()))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scrape, size = scrape_ms(workdir)
        print(f"/metrics with {FUNCTIONS} functions: {scrape:.1f} ms per render, {size} bytes "
              f"(target <= {TARGET_SCRAPE_MS:.0f} ms)")  # fmt: skip
        print(f"recording on the call's path: {hot_path_us(workdir):.2f} us per call")
        ratios = []
        for pair in range(args.pairs):
            on, off = paired_p50s(workdir, args.seconds, args.slices)
            ratio = statistics.median(on) / statistics.median(off)
            ratios.append(ratio)
            print(f"pair {pair + 1}: observed p50 {statistics.median(on):.3f} ms "
                  f"(slices {min(on):.3f}-{max(on):.3f}), not observed "
                  f"{statistics.median(off):.3f} ms ({min(off):.3f}-{max(off):.3f}), "
                  f"{ratio - 1:+.1%}")  # fmt: skip
    overhead = statistics.median(ratios) - 1
    print(f"warm p50 with recording on vs off: {overhead:+.1%} (median of {len(ratios)} pairs; "
          f"target within {TARGET_OVERHEAD:.0%})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

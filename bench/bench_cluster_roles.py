"""Cluster roles benchmark (issue 14): frontends and workers on separate simulated hosts;
writes docs/benchmarks-cluster-roles.md.

Frontends (`ember serve --role frontend`) run on this machine; each worker
(`ember worker --listen ADDR:PORT --max-sandboxes 8`) runs in a network
namespace of its own on a bridge (tests/netns.py), so that it can be cut off
by link down as well as killed. A PostgreSQL of the bench's own (as
bench_cluster.py) holds the cluster's state; the hosts reach it, and Redis,
through the harness's relay.

1. warm p50: one frontend + one worker against an all-in-one `ember serve` on
   the same backends (PostgreSQL, Redis throttle), both up at once, wrk with one
   connection, alternated;
2. scaling: a function that sleeps 50 ms, 8 closed-loop clients per worker,
   with 1 and then 4 workers: successful calls per second;
3. warm affinity: 20 functions called round-robin through 2 frontends and 4
   workers; cold starts (a tail with "Init Duration") in the steady state;
4. kill -9: 2 frontends, 3 workers, sync and Event load through both; a worker
   killed and restarted per cycle; calls started 3 s or more after the death
   that failed or stalled, and Event invocations lost (by request id);
5. link down: the same, with the worker cut off (and plugged back) instead.

Needs root (network namespaces). Exit 0 when everything was measured (targets
met or not), 1 when something failed to run. `--quick` runs every step briefly
(one cycle, seconds not minutes) to check that the bench runs: its figures mean
nothing and no doc is written.
"""

import collections
import contextlib
import itertools
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import servers
from bench_async import FAILS, NOOP, create
from bench_cluster import PrivatePostgres, drain_and_count
from loadgen import run_wrk, successes_per_second, wrk_path
from report import cpu_busy, machine, percentile

sys.path.insert(0, str(servers.ROOT / "tests"))
import netns  # tests/netns.py: the simulated hosts

DOC_PATH = servers.ROOT / "docs" / "benchmarks-cluster-roles.md"
EMBER = servers.ember_command(0, Path("."))[0]
REDIS_PORT = 6379
SLEEPS = "import time\ndef handler(event, context):\n    time.sleep(0.05)\n    return event\n"
MAX_SANDBOXES = 8
CLIENTS_PER_WORKER = 8
SCALE_SECONDS = 10
AFFINITY_FUNCTIONS = 20
AFFINITY_WARMUP_CALLS = 1000
AFFINITY_CALLS = 4000
LATENCY_ROUNDS = 3
LATENCY_SECONDS = 4
CYCLES = 10
AFTER_S = 3.0  # "no call routed to it 3 s after its death"
STALLED_S = 2.0
POLLERS = 4  # a no-op call slower than this was stuck on a dead or cut-off worker
SINK_ARN = "arn:aws:lambda:us-east-1:000000000000:function:sink"

TARGET_WARM_EXTRA_MS = 0.3
TARGET_SCALING = 3.5
TARGET_COLD_SHARE = 0.01


@dataclass
class Cluster:
    """The bench's processes: frontends on this machine, workers in namespaces."""

    work: Path
    database: str  # as this machine reaches it
    network: netns.Network
    token_file: Path
    frontends: list[str] = field(default_factory=list)  # their URLs
    workers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def frontend(self, name: str) -> str:
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            *servers.ember_command(port, self.work / name),
            "--role", "frontend", "--database", self.database,
            "--cluster-token-file", str(self.token_file),
            "--throttle-backend", "redis", "--redis-url", f"redis://127.0.0.1:{REDIS_PORT}/0",
            "--retry-base-delay", "0.05", "--visibility-margin", "2",
            # Deliveries within the capacity left when one of 3 workers is gone (2 x 8
            # sandboxes), so that a refused sync call means a routing fault, not a full cluster.
            "--pollers", str(POLLERS),
        ]  # fmt: skip
        self._stack.enter_context(servers.running(cmd, self.work / f"{name}.log", url + "/health"))
        self.frontends.append(url)
        return url

    def all_in_one(self, name: str) -> str:
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        # The frontend's backends (PostgreSQL, the Redis throttle): what differs is the split.
        cmd = [
            *servers.ember_command(port, self.work / name), "--database", self.database,
            "--throttle-backend", "redis", "--redis-url", f"redis://127.0.0.1:{REDIS_PORT}/0",
        ]  # fmt: skip
        self._stack.enter_context(servers.running(cmd, self.work / f"{name}.log", url + "/health"))
        return url

    def worker(self, n: int) -> None:
        """Start worker ``n`` in host ``n`` (made on first use); same data dir on a restart,
        so the same worker id."""
        while len(self.network.hosts) <= n:
            self.network.add_host()
        host = self.network.hosts[n]
        port = 9901
        cmd = [
            EMBER, "worker",
            "--listen", f"{host.address}:{port}",
            "--database", self.network.url(self.database),
            "--cluster-token-file", str(self.token_file),
            "--max-sandboxes", str(MAX_SANDBOXES),
            "--data-dir", str(self.work / f"worker-{n}"),
        ]  # fmt: skip
        log = (self.work / f"worker-{n}.log").open("ab")
        self.workers[n] = host.popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill_worker(self, n: int) -> None:
        """kill -9 every process of host ``n``, as when the host itself dies."""
        self.network.hosts[n].kill()

    def live_workers(self) -> dict[str, str]:
        """Worker address -> state, as the first frontend lists them."""
        with httpx.Client(base_url=self.frontends[0], timeout=10) as client:
            listed = client.get("/_ember/workers").json()["workers"]
        return {w["address"]: w["state"] for w in listed}

    def wait_live(self, *ns: int, timeout: float = 60) -> None:
        addresses = {f"{self.network.hosts[n].address}:9901" for n in ns}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in ns:
                if self.workers[n].poll() is not None:
                    log = servers.log_tail(self.work / f"worker-{n}.log")
                    raise servers.ServerError(f"worker {n} exited:\n{log}")
            states = self.live_workers()
            if all(states.get(a) == "live" for a in addresses):
                return
            time.sleep(0.1)
        raise servers.ServerError(f"workers {ns} not live within {timeout:.0f} s")

    def close(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                servers.stop(process)
        self._stack.close()


@contextlib.contextmanager
def cluster(work: Path, postgres: PrivatePostgres, name: str) -> Iterator[Cluster]:
    token = work / "cluster-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    database = postgres.database(name)
    with netns.Network(0, forward=[postgres.port, REDIS_PORT]) as network:
        made = Cluster(work / name, database, network, token)
        made.work.mkdir()
        try:
            yield made
        finally:
            made.close()


def deploy(url: str, name: str, source: str, config: dict[str, object] | None = None) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        create(client, name, source, config or {"MaximumRetryAttempts": 0})


def invoke_url(url: str, name: str) -> str:
    return f"{url}/2015-03-31/functions/{name}/invocations"


# --- 1. warm p50 ---------------------------------------------------------------------


def measure_warm_p50(work: Path, postgres: PrivatePostgres) -> dict[str, float]:
    with cluster(work, postgres, "latency") as made:
        frontend = made.frontend("latency-frontend")
        made.worker(0)
        made.wait_live(0)
        aio = made.all_in_one("latency-aio")
        deploy(frontend, "noop", NOOP)
        split, single = [], []
        for _ in range(LATENCY_ROUNDS):
            for url, samples in ((frontend, split), (aio, single)):
                run_wrk(invoke_url(url, "noop"), 1, 1)  # warm, and settle
                samples.append(run_wrk(invoke_url(url, "noop"), 1, LATENCY_SECONDS).p50_ms)
    return {"split": percentile(split, 50), "single": percentile(single, 50)}


# --- 2. scaling ----------------------------------------------------------------------


def closed_loop(url: str, clients: int, seconds: int) -> float:
    """Successful calls per second of ``clients`` closed-loop callers (wrk: a Python
    client of 32 threads would spend the 2 cores the cluster needs)."""
    successes_per_second(url, clients, 2)  # cold starts and placement settle
    return successes_per_second(url, clients, seconds)


def measure_scaling(work: Path, postgres: PrivatePostgres) -> dict[str, float]:
    with cluster(work, postgres, "scale") as made:
        frontend = made.frontend("scale-frontend")
        made.worker(0)
        made.wait_live(0)
        deploy(frontend, "sleeps", SLEEPS)
        one = closed_loop(invoke_url(frontend, "sleeps"), CLIENTS_PER_WORKER, SCALE_SECONDS)
        for n in (1, 2, 3):
            made.worker(n)
        made.wait_live(0, 1, 2, 3)
        four = closed_loop(invoke_url(frontend, "sleeps"), 4 * CLIENTS_PER_WORKER, SCALE_SECONDS)
    return {"one": one, "four": four}


# --- 3. warm affinity ----------------------------------------------------------------


def round_robin(urls: list[str], names: list[str], calls: int, clients: int = 8) -> tuple[int, int]:
    """``calls`` invokes, function and frontend round-robin; returns (calls, cold starts)."""
    turn = itertools.count()
    counts = {"calls": 0, "cold": 0}
    lock = threading.Lock()

    def caller() -> None:
        with httpx.Client(timeout=30, headers={"X-Amz-Log-Type": "Tail"}) as client:
            while (k := next(turn)) < calls:
                response = client.post(invoke_url(urls[k % len(urls)], names[k % len(names)]))
                cold = b"Init Duration" in _tail(response)
                with lock:
                    counts["calls"] += 1
                    counts["cold"] += cold

    threads = [threading.Thread(target=caller) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["calls"], counts["cold"]


def _tail(response: httpx.Response) -> bytes:
    import base64

    return base64.b64decode(response.headers.get("x-amz-log-result", ""))


def measure_affinity(work: Path, postgres: PrivatePostgres) -> dict[str, int]:
    with cluster(work, postgres, "affinity") as made:
        urls = [made.frontend("affinity-a"), made.frontend("affinity-b")]
        for n in range(4):
            made.worker(n)
        made.wait_live(0, 1, 2, 3)
        names = [f"fn-{n}" for n in range(AFFINITY_FUNCTIONS)]
        for name in names:
            deploy(urls[0], name, NOOP)
        warm_calls, warm_cold = round_robin(urls, names, AFFINITY_WARMUP_CALLS)
        calls, cold = round_robin(urls, names, AFFINITY_CALLS)
    return {"warmup_calls": warm_calls, "warmup_cold": warm_cold, "calls": calls, "cold": cold}


# --- 4, 5. a worker killed or cut off ------------------------------------------------


@dataclass
class Load:
    """Sync and Event calls through every frontend until ``stop``; what each call did."""

    urls: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    accepted: list[str] = field(default_factory=list)
    # (started, seconds, outcome) of each sync call: "200", another status, or the error
    calls: list[tuple[float, float, str]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> "Load":
        for url in self.urls:
            for target in (self._events, self._sync, self._sync):
                self._threads.append(threading.Thread(target=target, args=(url,)))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()

    def _events(self, url: str) -> None:
        headers = {"X-Amz-Invocation-Type": "Event"}
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    response = client.post(
                        invoke_url(url, "source"), content=b"{}", headers=headers
                    )
                    if response.status_code == 202:
                        self.accepted.append(response.headers["x-amzn-requestid"])
                time.sleep(0.005)

    def _sync(self, url: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post(invoke_url(url, "noop"), content=b"{}")
                    outcome = str(response.status_code)
                    if response.status_code != 200:
                        outcome += " " + response.headers.get("x-amzn-errortype", "")
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.calls.append((started, time.monotonic() - started, outcome))


def measure_failures(work: Path, postgres: PrivatePostgres, cut: bool) -> dict[str, Any]:
    """10 cycles: a worker killed (or cut off) under load, then back; see the module doc."""
    name = "cut" if cut else "kill"
    rng = random.Random(2026)
    late_bad = early_bad = sync_total = 0
    silent_after: list[float] = []
    late_kinds: collections.Counter[str] = collections.Counter()
    with cluster(work, postgres, name) as made:
        urls = [made.frontend(f"{name}-a"), made.frontend(f"{name}-b")]
        for n in range(3):
            made.worker(n)
        made.wait_live(0, 1, 2)
        deploy(urls[0], "noop", NOOP)
        deploy(urls[0], "sink", FAILS)
        deploy(
            urls[0], "source", NOOP, {"DestinationConfig": {"OnSuccess": {"Destination": SINK_ARN}}}
        )
        accepted: list[str] = []
        for _ in range(CYCLES):
            victim = rng.randrange(3)
            host = made.network.hosts[victim]
            with Load(urls) as load:
                time.sleep(rng.uniform(0.5, 2.0))
                if cut:
                    host.link_down()
                else:
                    made.kill_worker(victim)
                died = time.monotonic()
                silent_after.append(_until_silent(made, f"{host.address}:9901", died))
                time.sleep(max(0.0, died + AFTER_S + 2.0 - time.monotonic()))
            accepted += load.accepted
            for started, seconds, outcome in load.calls:
                bad = outcome != "200" or seconds > STALLED_S
                if bad and started >= died + AFTER_S:
                    late_kinds[outcome if outcome != "200" else "stalled"] += 1
                sync_total += 1
                if started >= died + AFTER_S:
                    late_bad += bad
                elif started + seconds >= died:
                    early_bad += bad
            if cut:
                host.link_up()
            else:
                made.worker(victim)
            made.wait_live(victim, timeout=120)
        counted = drain_and_count(urls[0], accepted)
    return {
        **counted,
        "late_bad": late_bad,
        "early_bad": early_bad,
        "sync_total": sync_total,
        "silent_max": max(silent_after),
        "late_kinds": dict(late_kinds),
    }


def _until_silent(made: Cluster, address: str, since: float) -> float:
    """Seconds from ``since`` until the frontend lists the worker as not live (or gone)."""
    while time.monotonic() - since < 30:
        if made.live_workers().get(address) != "live":
            return time.monotonic() - since
        time.sleep(0.05)
    return float("inf")


# --- the report ----------------------------------------------------------------------


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def rows(
    warm: dict[str, float],
    scale: dict[str, float],
    affinity: dict[str, int],
    kill: dict[str, Any],
    cut: dict[str, Any],
) -> list[tuple[str, str, str, str, str]]:
    ratio = scale["four"] / scale["one"] if scale["one"] else 0.0
    share = affinity["cold"] / affinity["calls"] if affinity["calls"] else 1.0
    found = [
        (
            "warm invoke p50, one frontend + one worker",
            f"{warm['split']:.2f} ms",
            f"{warm['single']:.2f} ms (all-in-one, same backends)",
            f"≤ all-in-one + {TARGET_WARM_EXTRA_MS} ms",
            yes(warm["split"] <= warm["single"] + TARGET_WARM_EXTRA_MS),
        ),
        (
            f"50 ms function, {CLIENTS_PER_WORKER} clients per worker, --max-sandboxes "
            f"{MAX_SANDBOXES}",
            f"{scale['four']:.0f} calls/s with 4 workers ({ratio:.2f} x)",
            f"{scale['one']:.0f} calls/s with 1 worker",
            f"≥ {TARGET_SCALING} x",
            yes(ratio >= TARGET_SCALING),
        ),
        (
            f"{AFFINITY_FUNCTIONS} functions round-robin, 2 frontends, 4 workers",
            f"{affinity['cold']} cold starts in {affinity['calls']:,} calls ({share:.2%})",
            f"{affinity['warmup_cold']} in the first {affinity['warmup_calls']:,}",
            f"< {TARGET_COLD_SHARE:.0%}",
            yes(share < TARGET_COLD_SHARE),
        ),
    ]
    for label, r in (("killed (kill -9)", kill), ("cut off (link down)", cut)):
        found.append(
            (
                f"a worker {label}, {CYCLES} cycles, sync + Event load",
                f"{r['late_bad']:.0f} calls failed or stalled ≥ {AFTER_S:g} s after"
                f"{_kinds(r['late_kinds'])}; "
                f"{r['lost']:.0f} of {r['accepted']:,.0f} events lost",
                f"{r['early_bad']:.0f} failed within {AFTER_S:g} s of {r['sync_total']:,.0f}; "
                f"listed not live after ≤ {r['silent_max']:.1f} s",
                "0 after 3 s, 0 lost",
                yes(r["late_bad"] == 0 and r["lost"] == 0),
            )
        )
    return found


def _kinds(kinds: dict[str, int]) -> str:
    return f" ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})" if kinds else ""


def write(found: list[tuple[str, str, str, str, str]], info: dict[str, str]) -> None:
    lines = [
        "# ember benchmarks: frontends and workers on separate hosts",
        "",
        f"Generated by `make bench` (`bench/bench_cluster_roles.py`) on {info['date']}. "
        "Re-run it to refresh this file; do not edit by hand.",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['kernel']}, {info['python']}, "
        f"{info['wrk']}. Before measuring: CPUs {info['busy']} busy over 1 s, load average "
        f"{info['load']} (1/5/15 min). Every frontend, worker, PostgreSQL, Redis and the load "
        "generators share these cores.",
        "",
        "| metric | ember (cluster) | baseline, same run | target | met? |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in found),
        "",
        "## How measured",
        "",
        "- Frontends (`ember serve --role frontend`, Redis throttle) on this machine; each "
        "worker (`ember worker --max-sandboxes 8`) in a network namespace of its own on a "
        "bridge (`tests/netns.py`), reaching PostgreSQL and Redis through a relay on the "
        "bridge. A PostgreSQL of the bench's own, default durability.",
        f"- **Warm p50**: wrk, one connection, {LATENCY_ROUNDS} alternated rounds of "
        f"{LATENCY_SECONDS} s against the frontend (worker in a namespace) and an all-in-one "
        "`ember serve` with the same backends (PostgreSQL, the Redis throttle) running at the "
        "same time; the median of each's p50. (The Redis throttle's two round trips are most "
        "of the difference to an embedded all-in-one: see bench_throttle.)",
        f"- **Scaling**: {CLIENTS_PER_WORKER} closed-loop clients (wrk connections) per "
        "worker through one "
        f"frontend, {SCALE_SECONDS} s after 2 s of warm-up, 1 worker then 4; a call counts "
        "when it answers 200 without a function error.",
        f"- **Warm affinity**: 8 clients, call k goes to function k mod {AFFINITY_FUNCTIONS} "
        f"through frontend k mod 2; {AFFINITY_WARMUP_CALLS:,} calls of warm-up, then "
        f"{AFFINITY_CALLS:,} counted; a cold start is a log tail with `Init Duration`.",
        f"- **Killed / cut off**: 2 frontends (`--pollers {POLLERS}`), 3 workers, per frontend "
        "one Event sender "
        f"(source → OnSuccess → sink, which always fails) and two sync callers; at 0.5-2 s one "
        "worker gets SIGKILL (then restarts on its data dir: the same id) or its link goes "
        f"down (then up again); a sync call *failed or stalled* when it was not a 200 or took "
        f"over {STALLED_S:g} s; every 202 must end as one dead letter of `sink`.",
        "",
    ]
    DOC_PATH.write_text("\n".join(lines))


def quick() -> None:
    """Every step, briefly: a check that the bench runs, not a measurement."""
    global SCALE_SECONDS, AFFINITY_WARMUP_CALLS, AFFINITY_CALLS, LATENCY_ROUNDS
    global LATENCY_SECONDS, CYCLES
    SCALE_SECONDS, AFFINITY_WARMUP_CALLS, AFFINITY_CALLS = 2, 100, 200
    LATENCY_ROUNDS, LATENCY_SECONDS, CYCLES = 1, 1, 1


def main() -> int:
    if "--quick" in sys.argv[1:]:
        quick()
    reason = netns.unavailable()
    if reason is not None:
        print(f"bench_cluster_roles cannot run: {reason}")
        return 1
    wrk_path()
    info = machine(cpu_busy())
    postgres = PrivatePostgres()
    with tempfile.TemporaryDirectory(prefix="ember-bench-roles-") as tmp:
        work = Path(tmp)
        try:
            postgres.control("start")
            warm = measure_warm_p50(work, postgres)
            scale = measure_scaling(work, postgres)
            affinity = measure_affinity(work, postgres)
            killed = measure_failures(work, postgres, cut=False)
            cut = measure_failures(work, postgres, cut=True)
        except Exception as exc:  # report, don't hide: the numbers would be missing
            print(f"bench_cluster_roles failed: {type(exc).__name__}: {exc}")
            for log in sorted(work.glob("*/*.log")):
                print(f"--- {log.parent.name}/{log.name}\n{servers.log_tail(log)}")
            return 1
        finally:
            postgres.close()
    found = rows(warm, scale, affinity, killed, cut)
    for row in found:
        print(" | ".join(row))
    if "--quick" not in sys.argv[1:]:
        write(found, info)
        print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

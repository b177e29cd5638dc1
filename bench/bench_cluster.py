"""Cluster mode benchmark (issue 13); writes docs/benchmarks-cluster.md.

Every measurement runs against a PostgreSQL of the bench's own (initdb into a
temp dir, default settings: fsync and synchronous_commit on), started and
stopped here, so it can be restarted under load without touching anyone else's.

1. propagation: two all-in-one nodes on one database + Redis; 100 functions
   created through node A, each polled on node B until B serves it;
2. accept: `--pollers 0` on PostgreSQL, wrk POSTing Event invokes (as
   bench_async does for SQLite, which is measured beside it as the baseline);
   drain: the same database restarted with pollers;
3. kill -9: two nodes under Event load, one killed and restarted per cycle
   (alternating), a sync caller on the survivor; lost = 202s never delivered;
4. PostgreSQL restarted (immediate stop, start) under Event load: lost, and the
   time from the database's return to the first 202.

Exit 0 when everything was measured (targets missed or not), 1 when something failed to run.
"""

import contextlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

import servers
from bench_async import FAILS, NOOP, create, delivered_ids, measure_accept_and_drain, stats
from loadgen import wrk_path
from report import cpu_busy, machine, percentile

DOC_PATH = servers.ROOT / "docs" / "benchmarks-cluster.md"
CREATES = 100
CYCLES = 10
REDIS_URL = "redis://127.0.0.1:6379/0"
SINK_ARN = "arn:aws:lambda:us-east-1:000000000000:function:sink"

TARGET_PROPAGATION_P99_S = 1.0
TARGET_ACCEPT_RPS = 5000.0
TARGET_ACCEPT_P99_MS = 15.0
TARGET_DRAIN_RPS = 2000.0
TARGET_BACK_S = 5.0


class PrivatePostgres:
    """A PostgreSQL server of the bench's own, on a free port, run as the postgres user."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (scripts/services.sh installs it)")
        self.bin = found[-1].parent
        self.home = Path(tempfile.mkdtemp(prefix="ember-bench-pg-"))
        shutil.chown(self.home, "postgres")
        self.port = servers.free_port()
        self._as_postgres(f"{self.bin}/initdb -D {self.home}/data -U postgres -A trust")

    def _as_postgres(self, command: str) -> None:
        subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", command],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def control(self, action: str) -> None:
        mode = "-m immediate" if action == "stop" else ""
        self._as_postgres(
            f"{self.bin}/pg_ctl -D {self.home}/data -w {mode} -l {self.home}/log "
            f"-o '-h 127.0.0.1 -p {self.port} -k {self.home} -c max_connections=200' {action}"
        )

    def database(self, name: str) -> str:
        self._as_postgres(f"{self.bin}/createdb -h 127.0.0.1 -p {self.port} -U postgres {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.control("stop")
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def node(work: Path, name: str, database: str, *args: str) -> Iterator[str]:
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*servers.ember_command(port, work / name), "--database", database, *args]
    with servers.running(cmd, work / f"{name}.log", url + "/health"):
        yield url


def measure_propagation(work: Path, database: str) -> list[float]:
    """Seconds from CreateFunction's answer on A until B serves GetFunction for it."""
    shared = ("--throttle-backend", "redis", "--redis-url", REDIS_URL)
    delays = []
    with (
        node(work, "prop-a", database, *shared) as a_url,
        node(work, "prop-b", database, *shared) as b_url,
        httpx.Client(base_url=a_url, timeout=30) as a,
        httpx.Client(base_url=b_url, timeout=30) as b,
    ):
        for n in range(CREATES):
            name = f"prop-{n}"
            create(a, name, NOOP, {"MaximumRetryAttempts": 0})
            created = time.perf_counter()
            while b.get(f"/2015-03-31/functions/{name}").status_code != 200:
                if time.perf_counter() - created > 30:
                    raise RuntimeError(f"{name} never reached node B")
                time.sleep(0.002)
            delays.append(time.perf_counter() - created)
    return delays


def send_events(url: str, accepted: list[str], stop: threading.Event) -> None:
    headers = {"X-Amz-Invocation-Type": "Event"}
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post(
                    "/2015-03-31/functions/source/invocations", content=b"{}", headers=headers
                )
            except httpx.HTTPError:
                if stop.is_set():
                    return
                time.sleep(0.01)  # the node is down: this call was never acknowledged
                continue
            if response.status_code == 202:
                accepted.append(response.headers["x-amzn-requestid"])


def call_sync(url: str, counts: dict[str, int], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post("/2015-03-31/functions/noop/invocations", content=b"{}")
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            counts["ok" if ok else "failed"] += 1


def start_node(work: Path, name: str, database: str, port: int) -> subprocess.Popen[bytes]:
    url = f"http://127.0.0.1:{port}"
    args = ("--retry-base-delay", "0.05", "--visibility-margin", "2")
    cmd = [*servers.ember_command(port, work / name), "--database", database, *args]
    log_path = work / f"{name}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=servers.ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    servers.wait_ready(proc, url + "/health", log_path)
    return proc


def set_up_source_and_sink(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        create(client, "sink", FAILS, {"MaximumRetryAttempts": 0})
        create(
            client, "source", NOOP, {"DestinationConfig": {"OnSuccess": {"Destination": SINK_ARN}}}
        )
        create(client, "noop", NOOP, {"MaximumRetryAttempts": 0})


def drain_and_count(url: str, accepted: list[str]) -> dict[str, int]:
    with httpx.Client(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            src, sink = stats(client, "source"), stats(client, "sink")
            if not (src["depth"] or src["inFlight"] or sink["depth"] or sink["inFlight"]):
                break
            time.sleep(0.2)
        delivered = delivered_ids(client)
    expected = set(accepted)
    return {"accepted": len(expected), "lost": len(expected - delivered)}


def measure_kill_9(work: Path, database: str) -> dict[str, int]:
    ports = [servers.free_port(), servers.free_port()]
    procs = [start_node(work, f"kill-{n}", database, ports[n]) for n in range(2)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    set_up_source_and_sink(urls[0])
    rng = random.Random(2026)
    accepted: list[str] = []
    sync = {"ok": 0, "failed": 0}
    try:
        for cycle in range(CYCLES):
            victim, survivor = cycle % 2, 1 - cycle % 2
            stop = threading.Event()
            threads = [
                threading.Thread(target=send_events, args=(urls[victim], accepted, stop)),
                threading.Thread(target=send_events, args=(urls[survivor], accepted, stop)),
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.5, 2.0))
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            caller = threading.Thread(target=call_sync, args=(urls[survivor], sync, stop))
            caller.start()  # only while the victim is down: errors are the survivor's own
            time.sleep(1.0)
            stop.set()
            for thread in [*threads, caller]:
                thread.join()
            servers.stop(procs[victim])
            procs[victim] = start_node(work, f"kill-{victim}", database, ports[victim])
        result = drain_and_count(urls[0], accepted)
    finally:
        for proc in procs:
            servers.stop(proc)
    return {**result, "sync_ok": sync["ok"], "sync_failed": sync["failed"]}


def measure_database_restart(
    work: Path, postgres: PrivatePostgres, database: str
) -> dict[str, float]:
    port = servers.free_port()
    proc = start_node(work, "restart", database, port)
    url = f"http://127.0.0.1:{port}"
    set_up_source_and_sink(url)
    accepted: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=send_events, args=(url, accepted, stop)) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        postgres.control("stop")
        time.sleep(2.0)
        postgres.control("start")
        back_at = time.perf_counter()
        count = len(accepted)
        while len(accepted) == count:
            if time.perf_counter() - back_at > 60:
                raise RuntimeError("no 202 within 60 s of PostgreSQL's return")
            time.sleep(0.005)
        back_s = time.perf_counter() - back_at
        time.sleep(2.0)
        stop.set()
        for thread in threads:
            thread.join()
        result = drain_and_count(url, accepted)
    finally:
        stop.set()
        servers.stop(proc)
    return {**result, "back_s": back_s}


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def main() -> int:
    wrk_path()
    info = machine(cpu_busy())
    postgres = PrivatePostgres()
    with tempfile.TemporaryDirectory(prefix="ember-bench-cluster-") as tmp:
        work = Path(tmp)
        try:
            postgres.control("start")
            delays = measure_propagation(work, postgres.database("propagation"))
            pg = measure_accept_and_drain(work, ("--database", postgres.database("accept")), "pg")
            sqlite = measure_accept_and_drain(work)
            killed = measure_kill_9(work, postgres.database("kill"))
            restart = measure_database_restart(work, postgres, postgres.database("restart"))
        except Exception as exc:  # report, don't hide: the numbers would be missing
            print(f"bench_cluster failed: {exc}")
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name}\n{servers.log_tail(log)}")
            return 1
        finally:
            postgres.close()
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    rows = [
        (
            f"create on A -> served by B, {CREATES} creates",
            f"p50 {p50 * 1000:.1f} ms / p99 {p99 * 1000:.1f} ms (max {max(delays) * 1000:.1f} ms)",
            "—",
            f"p99 ≤ {TARGET_PROPAGATION_P99_S:g} s",
            yes(p99 <= TARGET_PROPAGATION_P99_S),
        ),
        (
            "Event accept rate, durable, 32 clients",
            f"{pg['accept_rps']:,.0f} /s (PostgreSQL)",
            f"{sqlite['accept_rps']:,.0f} /s (SQLite)",
            f"≥ {TARGET_ACCEPT_RPS:,.0f} /s",
            yes(pg["accept_rps"] >= TARGET_ACCEPT_RPS),
        ),
        (
            "202 latency, 16 clients",
            f"p50 {pg['accept_p50']:.2f} / p99 {pg['accept_p99']:.2f} ms at "
            f"{pg['latency_rps']:,.0f} /s",
            f"p50 {sqlite['accept_p50']:.2f} / p99 {sqlite['accept_p99']:.2f} ms at "
            f"{sqlite['latency_rps']:,.0f} /s",
            f"p99 ≤ {TARGET_ACCEPT_P99_MS:g} ms",
            yes(pg["accept_p99"] <= TARGET_ACCEPT_P99_MS),
        ),
        (
            "drain rate, no-op function, 32 pollers",
            f"{pg['drain_rps']:,.0f} /s ({pg['backlog']:,} in {pg['drain_s']:.1f} s)",
            f"{sqlite['drain_rps']:,.0f} /s",
            f"≥ {TARGET_DRAIN_RPS:,.0f} /s",
            yes(pg["drain_rps"] >= TARGET_DRAIN_RPS),
        ),
        (
            f"events lost over {CYCLES} kill -9 cycles of either node",
            f"{killed['lost']} of {killed['accepted']:,} accepted; survivor's sync invokes "
            f"{killed['sync_ok']:,} ok, {killed['sync_failed']} failed",
            "—",
            "0 lost, survivor answers",
            yes(killed["lost"] == 0 and killed["sync_failed"] == 0),
        ),
        (
            "PostgreSQL restarted under Event load",
            f"{restart['lost']:.0f} of {restart['accepted']:,.0f} lost; first 202 "
            f"{restart['back_s']:.2f} s after the database",
            "—",
            f"0 lost, back ≤ {TARGET_BACK_S:g} s",
            yes(restart["lost"] == 0 and restart["back_s"] <= TARGET_BACK_S),
        ),
    ]
    for row in rows:
        print(" | ".join(row))
    lines = [
        "# ember benchmarks: cluster mode",
        "",
        f"Generated by `make bench` (`bench/bench_cluster.py`) on {info['date']}. "
        "Re-run it to refresh this file; do not edit by hand.",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['kernel']}, {info['python']}, "
        f"{info['wrk']}. Before measuring: CPUs {info['busy']} busy over 1 s, load average "
        f"{info['load']} (1/5/15 min). PostgreSQL, Redis, ember and the load generator share "
        "these cores.",
        "",
        "| metric | ember (cluster) | baseline, same run | target | met? |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "## How measured",
        "",
        "- A PostgreSQL of the bench's own (initdb into a temp dir, default durability: fsync "
        "and synchronous_commit on), restarted only by the bench; Redis at 127.0.0.1:6379.",
        f"- **Propagation**: two all-in-one nodes on one database and Redis; {CREATES} "
        "CreateFunction calls through A, each followed by GetFunction on B every 2 ms until it "
        "answers 200 (the registry read by invocations); the time from A's answer.",
        "- **Accept / drain**: as `bench_async.py` (wrk, 32 then 16 connections, `--pollers 0`, "
        "then a restart with 32 pollers), on PostgreSQL and, as the baseline, on SQLite.",
        f"- **kill -9**: two nodes, {CYCLES} cycles; Event invokes sent to both; at a random "
        "moment 0.5-2 s in, one node (alternating) gets SIGKILL; for 1 s a synchronous caller "
        "invokes the survivor; the victim restarts on its data dir (the same node id, so it "
        "releases its own leases). Every 202 must end as one dead letter of `sink` "
        "(source → OnSuccess → sink, which always fails), counted by request id.",
        "- **Database restart**: one node, 4 senders; `pg_ctl stop -m immediate`, 2 s, "
        "`pg_ctl start`; the time from start's return to the next 202; then the same count.",
        "",
    ]
    DOC_PATH.write_text("\n".join(lines))
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

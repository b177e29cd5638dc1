"""Warm invoke latency: one frontend + one worker (two processes) against all-in-one, same run.

Issue 14's target: the frontend-to-worker hop adds at most 0.3 ms to the warm
p50. Both set-ups run side by side on one fresh PostgreSQL database (the
all-in-one embedded), and are measured in interleaved blocks, so that drift of
a shared machine hits both alike. Usage: ``.venv/bin/python bench/bench_roles.py [calls]``.
"""

import contextlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

import ember_api
import servers

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BLOCK = 250


@contextlib.contextmanager
def database() -> Iterator[str]:
    name = f"ember_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def two_roles(work: Path, url: str) -> Iterator[int]:
    """A frontend and a worker on ``url``; yields the frontend's port once the worker is in."""
    token = work / "token"
    token.write_text(secrets.token_hex(32))
    port, worker_port = servers.free_port(), servers.free_port()
    ember = servers.ember_command(port, work / "frontend")[0]
    worker = [
        ember, "worker", "--listen", f"127.0.0.1:{worker_port}", "--database", url,
        "--data-dir", str(work / "worker"), "--cluster-token-file", str(token),
        "--endpoint", f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    frontend = [
        *servers.ember_command(port, work / "frontend"),
        "--database", url, "--role", "frontend", "--cluster-token-file", str(token),
    ]  # fmt: skip
    health = f"http://127.0.0.1:{port}/health"
    with (work / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            worker, cwd=servers.ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with servers.running(frontend, work / "frontend.log", health):
            deadline = time.monotonic() + 60
            while _usable(health) < 1:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise servers.ServerError(servers.log_tail(work / "worker.log"))
                time.sleep(0.1)
            yield port
    finally:
        servers.stop(process)


def _usable(health: str) -> int:
    return int(httpx.get(health, timeout=2).json()["isolation"].get("usable", 0))


def measure(invoker: ember_api.Invoker, count: int) -> list[float]:
    return [invoker.invoke().elapsed_ms for _ in range(count)]


def main() -> int:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    with tempfile.TemporaryDirectory() as tmp, database() as url:
        work = Path(tmp)
        one = servers.free_port()
        alone = servers.ember_command(one, work / "all")
        with (
            servers.running(alone, work / "all.log", f"http://127.0.0.1:{one}/health"),
            two_roles(work, url) as split,
        ):
            invokers = {}
            for name, port in (("all-in-one", one), ("frontend + worker", split)):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                    ember_api.deploy(client)
                invokers[name] = ember_api.Invoker("127.0.0.1", port)
                measure(invokers[name], 200)  # warm-up: sandbox, connections, caches
            samples: dict[str, list[float]] = {name: [] for name in invokers}
            for _ in range(max(1, calls // BLOCK)):
                for name, invoker in invokers.items():
                    samples[name] += measure(invoker, BLOCK)
            for invoker in invokers.values():
                invoker.close()
    p50 = {}
    for name, found in samples.items():
        found.sort()
        p50[name] = statistics.median(found)
        p99 = found[int(len(found) * 0.99)]
        print(f"{name:>18}: {len(found)} warm calls, p50 {p50[name]:.3f} ms, p99 {p99:.3f} ms")
    added = p50["frontend + worker"] - p50["all-in-one"]
    print(f"the hop adds {added:+.3f} ms to the p50 (target: <= +0.3 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

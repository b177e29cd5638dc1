"""`make bench` (manifests part): time to apply 100 Function manifests, written to
docs/benchmarks-manifests.md.

Measures, against a fresh `ember serve`: (1) `ember apply -f dir/` of 100
functions (each with its own code directory: read, checked, zipped and sent),
(2) from the start of the apply until every object reports Ready for its
generation (the controller created them all), (3) a second apply of the same
files (all unchanged). Exit status 0 when everything was measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import servers
from report import machine

DOC_PATH = servers.ROOT / "docs" / "benchmarks-manifests.md"
COUNT = 100
API = "/_ember/apis/ember.dev/v1"


def write_manifests(root: Path) -> None:
    for index in range(COUNT):
        name = f"bench-{index:03d}"
        code = root / name
        code.mkdir(parents=True)
        (code / "app.py").write_text(f"def handler(event, context):\n    return {index}\n")
        body = {
            "apiVersion": "ember.dev/v1",
            "kind": "Function",
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "code": {"path": name},
                "memoryMB": 128,
                "rateLimit": {"rate": 100, "period": "1s"},
                "concurrency": {"reserved": 1},
            },
        }
        (root / f"{name}.yaml").write_text(json.dumps(body))


def all_ready(url: str) -> bool:
    items = httpx.get(url + API + "/functions", params={"labelSelector": "app=bench"}).json()
    ready = 0
    for item in items["items"]:
        for condition in (item.get("status") or {}).get("conditions", []):
            if condition["type"] == "Ready" and condition["status"] == "True":
                ready += condition["observedGeneration"] == item["metadata"]["generation"]
    return ready == COUNT


def apply(url: str, directory: Path) -> float:
    ember = Path(sys.executable).parent / "ember"
    started = time.perf_counter()
    subprocess.run(
        [str(ember), "apply", "-f", str(directory)],
        env={**os.environ, "EMBER_ENDPOINT": url},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_manifests(root / "manifests")
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        command = servers.ember_command(port, root / "data")
        # 100 functions x reserved 1 needs an account above the default 1000 - 100.
        command += ["--account-concurrency", "1200"]
        with servers.running(command, root / "server.log", url + "/health"):
            started = time.perf_counter()
            first = apply(url, root / "manifests")
            while not all_ready(url):
                time.sleep(0.05)
            converged = time.perf_counter() - started
            second = apply(url, root / "manifests")
    info = machine(0.0)
    rows = [
        ("`ember apply -f dir/`, 100 new functions", f"{first:.2f} s"),
        ("apply start until all 100 are Ready", f"{converged:.2f} s"),
        ("second apply, all unchanged", f"{second:.2f} s"),
    ]
    lines = [
        "# Benchmarks: manifests",
        "",
        f"Measured {info['date']} by `bench/bench_manifests.py`: {info['nproc']} cores "
        f"({info['cpu']}), {info['python']}, load {info['load']} (a shared machine).",
        "Each function has its own code directory, a rate limit and reserved concurrency.",
        "",
        "| What | Time |",
        "|---|---|",
        *[f"| {what} | {value} |" for what, value in rows],
        "",
    ]
    DOC_PATH.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

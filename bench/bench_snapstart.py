"""`make bench`, SnapStart part: cold starts that do not grow with Init.

On one `ember serve` (full isolation, `--auth none`), for a function whose Init
sleeps 300 ms after importing json, decimal, http.client and email, and for a
FastAPI app behind Mangum (deployed with its requirements):

- cold start of a published SnapStart version (a fork of its template), HTTP round
  trip, against the same function's `$LATEST` (no SnapStart: Init runs), same run;
- bursts of 16 concurrent first calls on a cold SnapStart version.

Every measured call's sandbox exits just after answering (the handler arms a
200 ms timer that calls `os._exit`), so the next call is a cold start, without
touching the version (a configuration change would make a new template).
Writes docs/benchmarks-snapstart.md. `--quick` takes fewer samples.
"""

import base64
import http.client
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
from rich.console import Console

import servers
from report import Row, cpu_busy, fmt_ms, machine, p50_p99, percentile, print_table, write_markdown

DOC = servers.ROOT / "docs" / "benchmarks-snapstart.md"
FUNCTIONS = "/2015-03-31/functions"
ROLE = "arn:aws:iam::000000000000:role/bench"
QUICK = "--quick" in sys.argv
COLD = 10 if QUICK else 40
COLD_OFF = 5 if QUICK else 10
BURSTS = 3 if QUICK else 6
BURST = 16
_RESTORE = re.compile(r"Restore Duration:\s*([\d.]+)\s*ms")
_INIT = re.compile(r"Init Duration:\s*([\d.]+)\s*ms")
console = Console(width=None if sys.stdout.isatty() else 150)

# Leaves after answering, so that the next call is cold (see the module's docstring).
EXIT_AFTER = (
    "import os, threading\n\n"
    "def leave(event):\n"
    "    if event.get('exit'):\n"
    "        threading.Timer(0.2, os._exit, (0,)).start()\n"
)
SLOW = (
    "import json, decimal, http.client, email, time\n" + EXIT_AFTER + "time.sleep(0.3)\n\n"
    "def handler(event, context):\n"
    "    leave(event)\n"
    "    return {'ok': True}\n"
)
FASTAPI = (
    "from fastapi import FastAPI\nfrom mangum import Mangum\n" + EXIT_AFTER + "app = FastAPI()\n\n"
    "@app.get('/hello/{name}')\n"
    "async def hello(name: str):\n"
    "    return {'hello': name}\n\n"
    "asgi = Mangum(app, lifespan='off')\n\n"
    "def handler(event, context):\n"
    "    leave(event)\n"
    "    return asgi(event, context)\n"
)
# The same with a plain ``def`` endpoint: FastAPI runs it in AnyIO's worker threads,
# whose pool starts at the first request (~40 ms here, in any new sandbox).
FASTAPI_SYNC = FASTAPI.replace("async def hello", "def hello")
# An HTTP API (payload 2.0) request, as API Gateway would send it.
HTTP_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/hello/ember",
    "rawQueryString": "",
    "headers": {"host": "bench", "accept": "application/json"},
    "requestContext": {
        "http": {
            "method": "GET",
            "path": "/hello/ember",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "bench",
        },
        "stage": "$default",
        "requestId": "bench",
        "accountId": "000000000000",
        "apiId": "bench",
        "domainName": "bench",
        "domainPrefix": "bench",
        "time": "07/Dec/2026:00:00:00 +0000",
        "timeEpoch": 0,
    },
    "isBase64Encoded": False,
}


def package(files: dict[str, str], site: Path | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, source in files.items():
            archive.writestr(name, source)
        if site is not None:
            for path in sorted(site.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, str(path.relative_to(site)))
    return base64.b64encode(buffer.getvalue()).decode()


def requirements(target: Path) -> Path:
    """fastapi and mangum installed for the sandboxes' interpreter (this one)."""
    # pip compares --target's packages with this venv's and warns: not an error here.
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target)),
            *("fastapi==0.115.6", "mangum==0.19.0"),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install fastapi mangum failed:\n{done.stderr}")
    return target


def deploy(client: httpx.Client, name: str, zip_b64: str) -> str:
    """Create ``name`` with SnapStart on published versions; publish; wait until the
    version's template is made. Returns the version."""
    body = {
        "FunctionName": name,
        "Runtime": f"python3.{sys.version_info.minor}",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": zip_b64},
        "MemorySize": 256,
        "Timeout": 30,
        "SnapStart": {"ApplyOn": "PublishedVersions"},
    }
    response = client.post(FUNCTIONS, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"CreateFunction {name}: {response.status_code} {response.text}")
    published = client.post(f"{FUNCTIONS}/{name}/versions", json={})
    published.raise_for_status()
    version = str(published.json()["Version"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        config = client.get(f"{FUNCTIONS}/{name}/configuration?Qualifier={version}").json()
        if config["State"] != "Pending":
            break
        time.sleep(0.05)
    if config["SnapStart"].get("OptimizationStatus") != "On":
        raise RuntimeError(f"{name}:{version} has no template: {config}")
    return version


class Caller:
    """Timed invokes over one keep-alive connection; the sandbox may leave after each."""

    def __init__(self, port: int, name: str, qualifier: str) -> None:
        self.port = port
        self.path = f"{FUNCTIONS}/{name}/invocations?Qualifier={qualifier}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def invoke(self, event: dict[str, object]) -> tuple[float, str]:
        body = json.dumps({**event, "exit": True}).encode()
        start = time.perf_counter()
        self.conn.request("POST", self.path, body=body, headers={"X-Amz-Log-Type": "Tail"})
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - start) * 1e3
        if response.status != 200 or response.getheader("x-amz-function-error"):
            raise RuntimeError(f"invoke {self.path}: {response.status} {payload[:300]!r}")
        log = base64.b64decode(response.getheader("x-amz-log-result") or "").decode()
        return elapsed, log


def settle() -> None:
    """Give the sandboxes of the last calls time to leave (each exits 200 ms after its
    answer; the server drops a dead idle sandbox at the next call, which is cold)."""
    time.sleep(0.3)


def colds(
    client: httpx.Client, port: int, name: str, qualifier: str, event: dict[str, object], n: int
) -> tuple[list[float], list[float]]:
    """n cold starts: HTTP round trips and the REPORT's Restore (or Init) Duration."""
    caller = Caller(port, name, qualifier)
    http_ms, server_ms = [], []
    for _ in range(n):
        settle()
        elapsed, log = caller.invoke(event)
        found = _RESTORE.search(log) or _INIT.search(log)
        if found is None:
            raise RuntimeError(f"{name}:{qualifier} was not a cold start: {log}")
        http_ms.append(elapsed)
        server_ms.append(float(found.group(1)))
    return http_ms, server_ms


def _call(caller: Caller, start: threading.Barrier, results: list[tuple[float, str]]) -> None:
    start.wait()
    results.append(caller.invoke({}))


def bursts(client: httpx.Client, port: int, name: str, version: str) -> tuple[list[float], int]:
    """BURSTS bursts of BURST concurrent first calls: every call's round trip, and how
    many calls were not restored (their REPORT has no Restore Duration: the restore
    failed and Init ran, which the server logs)."""
    samples: list[float] = []
    not_restored = 0
    for _ in range(BURSTS):
        settle()
        callers = [Caller(port, name, version) for _ in range(BURST)]
        for caller in callers:
            caller.conn.connect()
        start = threading.Barrier(BURST)
        results: list[tuple[float, str]] = []
        threads = [
            threading.Thread(target=_call, args=(caller, start, results)) for caller in callers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len(results) != BURST:
            raise RuntimeError("a call of the burst failed")
        not_restored += sum(1 for _elapsed, log in results if _RESTORE.search(log) is None)
        samples += [elapsed for elapsed, _log in results]
    return samples, not_restored


def main() -> int:
    busy = cpu_busy()
    with tempfile.TemporaryDirectory(prefix="ember-bench-snapstart-") as tmp:
        console.log("installing fastapi and mangum for the FastAPI function")
        site = requirements(Path(tmp) / "site")
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        command = servers.ember_command(port, Path(tmp) / "data")
        with servers.running(command, Path(tmp) / "server.log", url + "/health"):
            client = httpx.Client(base_url=url, timeout=120)
            slow = deploy(client, "slow", package({"app.py": SLOW}))
            api = deploy(client, "api", package({"app.py": FASTAPI}, site))
            sync = deploy(client, "sync", package({"app.py": FASTAPI_SYNC}, site))
            console.log(f"cold starts: {COLD} with SnapStart, {COLD_OFF} without, each")
            slow_on, slow_restore = colds(client, port, "slow", slow, {}, COLD)
            slow_off, slow_init = colds(client, port, "slow", "$LATEST", {}, COLD_OFF)
            api_on, api_restore = colds(client, port, "api", api, HTTP_EVENT, COLD)
            api_off, api_init = colds(client, port, "api", "$LATEST", HTTP_EVENT, COLD_OFF)
            sync_on, _ = colds(client, port, "sync", sync, HTTP_EVENT, COLD)
            sync_off, _ = colds(client, port, "sync", "$LATEST", HTTP_EVENT, COLD_OFF)
            console.log(f"bursts: {BURSTS} of {BURST} concurrent first calls")
            burst, not_restored = bursts(client, port, "slow", slow)
            client.close()
            for line in (Path(tmp) / "server.log").read_text().splitlines():
                if "SnapStart restore failed" in line:  # why a burst call ran Init
                    console.log(line)
    on50, off50 = percentile(slow_on, 50), percentile(slow_off, 50)
    api50 = percentile(api_on, 50)
    rows = [
        Row(
            "cold start, Init of 300 ms, SnapStart on (HTTP round trip)",
            p50_p99(slow_on),
            f"SnapStart off: {p50_p99(slow_off)}",
            "p50 ≤ 15 ms; off ≥ 300 ms",
            on50 <= 15 and off50 >= 300,
        ),
        Row(
            f"burst of {BURST} concurrent first calls, SnapStart on",
            p50_p99(burst),
            f"one cold start alone: p50 {fmt_ms(on50)}; calls not restored (Init ran): "
            f"{not_restored} of {len(burst)}",
            "p99 ≤ 100 ms",
            percentile(burst, 99) <= 100,
        ),
        Row(
            "cold start, FastAPI + Mangum, SnapStart on (HTTP round trip)",
            p50_p99(api_on),
            f"SnapStart off: {p50_p99(api_off)}",
            "p50 ≤ 20 ms",
            api50 <= 20,
        ),
        Row(
            "cold start, FastAPI + Mangum with a plain `def` endpoint, SnapStart on",
            p50_p99(sync_on),
            f"SnapStart off: {p50_p99(sync_off)}",
            "—",
            None,
        ),
        Row(
            "Restore Duration (REPORT), Init of 300 ms / FastAPI",
            f"{p50_p99(slow_restore)} / {p50_p99(api_restore)}",
            f"Init Duration: {p50_p99(slow_init)} / {p50_p99(api_init)}",
            "—",
            None,
        ),
    ]
    print_table(rows, console)
    how = [
        "One `ember serve` (full isolation, `--auth none`). Each function is created with "
        "`SnapStart: {ApplyOn: PublishedVersions}` and version 1 published; the bench waits "
        "until the version's template is made (State leaves Pending, OptimizationStatus On).",
        "SnapStart on: calls to version 1, each a fork of its template (the zygote isolates "
        "the fork: new user, PID, mount, network, IPC, UTS and cgroup namespaces, /tmp, "
        "cgroup, no capabilities; then the after-restore hooks run). SnapStart off: the same "
        "code as `$LATEST`, where SnapStart does not apply and Init runs.",
        "Every measured call's sandbox exits 200 ms after answering, and the next call comes "
        "300 ms later: each is a cold start (the bench checks its REPORT line says so).",
        f"Bursts: {BURSTS} times, {BURST} threads with a connection each released together "
        "on a cold version; p99 over every call of every burst (nearest rank).",
        "FastAPI 0.115.6 and Mangum 0.19.0 installed with pip into the package; the event is "
        "an HTTP API (payload 2.0) GET of an `async def` endpoint. The `def` endpoint's row: "
        "FastAPI runs it in AnyIO's worker threads, whose pool starts at a sandbox's first "
        "request (tens of ms, with or without SnapStart; the thread cannot be started before "
        "the snapshot, which holds one thread). " + ("Quick run (--quick)." if QUICK else ""),
    ]
    write_markdown(DOC, rows, machine(busy), how)
    return 0


if __name__ == "__main__":
    sys.exit(main())

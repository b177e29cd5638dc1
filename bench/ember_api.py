"""The slice of ember's Lambda REST API the benchmark drives, plus reading sandbox memory."""

import base64
import http.client
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx

HANDLER_FILE = Path(__file__).resolve().parent / "handler" / "app.py"
FUNCTION = "bench"
FUNCTIONS = "/2015-03-31/functions"
INVOKE_PATH = f"{FUNCTIONS}/{FUNCTION}/invocations"
EVENT = {"n": 1}
EXPECTED = {"ok": True, "echo": EVENT}
_INIT_RE = re.compile(r"Init Duration:\s*([\d.]+)\s*ms")


class ApiError(RuntimeError):
    """ember answered something the Lambda API contract does not allow."""


@dataclass(frozen=True)
class Invocation:
    elapsed_ms: float
    # None when the log tail is missing (log_tail False) or the invoke was warm.
    init_ms: float | None
    log_tail: bool


def handler_zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(HANDLER_FILE, "app.py")
    return base64.b64encode(buf.getvalue()).decode()


def deploy(client: httpx.Client) -> None:
    spec = {
        "FunctionName": FUNCTION,
        "Runtime": "python3.11",
        "Role": "arn:aws:iam::000000000000:role/bench",
        "Handler": "app.handler",
        "Code": {"ZipFile": handler_zip_b64()},
        "MemorySize": 128,
        "Timeout": 30,
    }
    _expect(client.post(FUNCTIONS, json=spec), 201, "CreateFunction")
    wait_settled(client)


def force_cold(client: httpx.Client, counter: int) -> None:
    """A configuration change retires the function's sandboxes, so the next invoke is cold."""
    # Lambda wants keys matching [a-zA-Z]([a-zA-Z0-9_])+, i.e. two characters at least.
    body = {"Environment": {"Variables": {"BENCH_I": str(counter)}}}
    resp = _expect(
        client.put(f"{FUNCTIONS}/{FUNCTION}/configuration", json=body), 200, "UpdateConfig"
    )
    # Real Lambda applies updates asynchronously; only poll if the server says it does too.
    if _is_settling(resp.json()):
        wait_settled(client)


def wait_settled(client: httpx.Client, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.get(f"{FUNCTIONS}/{FUNCTION}/configuration")
        if resp.status_code != 200 or not _is_settling(resp.json()):
            return  # settled, or the server has no GetFunctionConfiguration: trust CreateFunction
        time.sleep(0.02)
    raise ApiError(f"function {FUNCTION} still Pending/InProgress after {timeout:.0f} s")


class Invoker:
    """Invokes over one keep-alive connection, timed client-side.

    http.client rather than httpx: httpx spends ~1 ms of client CPU per request on this
    machine (http.client ~0.3 ms), which would be billed to ember's cold start.
    """

    def __init__(self, host: str, port: int) -> None:
        self._conn = http.client.HTTPConnection(host, port, timeout=60)
        self._body = json.dumps(EVENT).encode()

    def close(self) -> None:
        self._conn.close()

    def invoke(self, tail: bool = False) -> Invocation:
        headers = {"Content-Type": "application/json"}
        if tail:
            headers["X-Amz-Log-Type"] = "Tail"
        start = time.perf_counter()
        self._conn.request("POST", INVOKE_PATH, body=self._body, headers=headers)
        resp = self._conn.getresponse()
        payload = resp.read()
        elapsed_ms = (time.perf_counter() - start) * 1e3
        _check_invoke(resp, payload)
        log = resp.getheader("x-amz-log-result")
        return Invocation(elapsed_ms, parse_init_ms(log) if log else None, log is not None)


def _check_invoke(resp: http.client.HTTPResponse, payload: bytes) -> None:
    text = payload.decode(errors="replace")[:500]
    if resp.status != 200:
        raise ApiError(f"Invoke: expected HTTP 200, got {resp.status}: {text}")
    fn_error = resp.getheader("x-amz-function-error")
    if fn_error:
        raise ApiError(f"Invoke: function error {fn_error}: {text}")
    if json.loads(payload) != EXPECTED:
        raise ApiError(f"Invoke: expected {EXPECTED}, got {text}")


def parse_init_ms(log_result_b64: str) -> float | None:
    """Init Duration from the REPORT line of a base64 log tail; absent on warm invokes."""
    text = base64.b64decode(log_result_b64).decode(errors="replace")
    match = _INIT_RE.search(text)
    return float(match.group(1)) if match else None


def idle_sandbox_pids(client: httpx.Client) -> list[int]:
    resp = _expect(client.get("/_ember/sandboxes"), 200, "GET /_ember/sandboxes")
    sandboxes = resp.json()["sandboxes"]
    # Only one function is deployed in the bench's fresh data dir, so all sandboxes are its.
    return [int(s["pid"]) for s in sandboxes if s.get("state") == "idle"]


def uss_kib(pid: int) -> int:
    """Unique set size: the memory this process alone holds, i.e. freed if it exits.

    Pages still shared copy-on-write with the zygote count as Shared_*, not Private_*.
    """
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, rest = line.partition(":")
            if key in ("Private_Clean", "Private_Dirty"):
                total += int(rest.split()[0])  # always in kB
    return total


def _is_settling(config: dict[str, object]) -> bool:
    return config.get("State") == "Pending" or config.get("LastUpdateStatus") == "InProgress"


def _expect(resp: httpx.Response, status: int, what: str) -> httpx.Response:
    if resp.status_code != status:
        raise ApiError(f"{what}: expected HTTP {status}, got {resp.status_code}: {resp.text[:500]}")
    return resp

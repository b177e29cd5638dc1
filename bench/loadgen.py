"""Run wrk against a URL and parse its report."""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
POST_SCRIPT = BENCH_DIR / "post.lua"
CHECK_SCRIPT = BENCH_DIR / "check.lua"

# wrk prints durations with a unit suffix chosen per value.
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE_RE = re.compile(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL_RE = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_FN_ERRORS_RE = re.compile(r"^function_errors:\s+(\d+)", re.MULTILINE)


class LoadError(RuntimeError):
    """wrk could not run, or the server answered with errors: the numbers would be a lie."""


@dataclass(frozen=True)
class WrkResult:
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadError("wrk is not installed (apt-get install -y wrk, or run `make bench`)")
    return path


def run_wrk(
    url: str, connections: int, seconds: int, check: bool = False, script: Path | None = None
) -> WrkResult:
    """One wrk run with a single thread: the machine may have only 2 cores to share.

    ``script`` replaces the default POST script (e.g. one carrying a signature)."""
    script = script or (CHECK_SCRIPT if check else POST_SCRIPT)
    cmd = [wrk_path(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    # A generous timeout: a request stuck behind a cold start must not count as a socket error.
    cmd += ["--timeout", "10s", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise LoadError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}")
    return parse_wrk(proc.stdout, connections)


def successes_per_second(url: str, connections: int, seconds: int) -> float:
    """Closed-loop callers (wrk connections) for ``seconds``: answers that were 2xx and
    carried no X-Amz-Function-Error, per second. Refusals (429 when every sandbox is
    busy) are counted out, not raised: capacity is what is measured."""
    cmd = [wrk_path(), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    cmd += ["-s", str(CHECK_SCRIPT), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    out = proc.stdout
    total, fn_errors = _TOTAL_RE.search(out), _FN_ERRORS_RE.search(out)
    if proc.returncode != 0 or total is None or fn_errors is None:
        raise LoadError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or out}")
    non_2xx = _NON_2XX_RE.search(out)
    failed = int(fn_errors.group(1)) + (int(non_2xx.group(1)) if non_2xx else 0)
    return (int(total.group(1)) - failed) / seconds


def parse_wrk(out: str, connections: int) -> WrkResult:
    _raise_on_errors(out)
    percentiles = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _PERCENTILE_RE.findall(out)}
    rps, total = _RPS_RE.search(out), _TOTAL_RE.search(out)
    if rps is None or total is None or not {50, 99} <= percentiles.keys():
        raise LoadError(f"could not parse wrk output:\n{out}")
    requests = int(total.group(1))
    if requests == 0:
        raise LoadError(f"wrk completed no requests:\n{out}")
    return WrkResult(connections, requests, float(rps.group(1)), percentiles[50], percentiles[99])


def _raise_on_errors(out: str) -> None:
    non_2xx = _NON_2XX_RE.search(out)
    if non_2xx:
        raise LoadError(f"{non_2xx.group(1)} responses were not 2xx/3xx:\n{out}")
    sockets = _SOCKET_RE.search(out)
    if sockets and any(int(n) for n in sockets.groups()):
        raise LoadError(f"wrk saw socket errors:\n{out}")
    fn_errors = _FN_ERRORS_RE.search(out)
    if fn_errors and int(fn_errors.group(1)):
        raise LoadError(f"{fn_errors.group(1)} responses carried X-Amz-Function-Error:\n{out}")

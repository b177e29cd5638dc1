"""SigV4 verification cost: CPU time per verified request (target <= 30 µs).

The request is the one boto3 sends for a synchronous Invoke with a small JSON
payload, taken off the wire by a ``before-send`` hook (never sent); the
verifier's clock reads its own X-Amz-Date, and its signing-key cache is warm
after the first call, as it is for every later call of the same key and day.
CPU time is ``time.process_time`` over 20,000 verifications, best of 5 runs.
A ListFunctions (query string, no body) and a 256 KB Invoke are measured too.

Then what authentication adds to a warm invoke over HTTP (target: p50 within
0.05 ms of ``--auth none``): two servers, one with ``--auth none`` and one
with SigV4 on (the default), the same function deployed on each, measured by
``wrk -t1 -c1`` in alternating runs (none, sigv4, none, ...) so that drift of
a noisy machine falls on both; medians of the runs' p50s are compared. wrk
cannot compute HMACs, so each run sends one request signed by botocore just
before it: a signature stays valid for the five minutes of skew, and the
server does the whole verification for every request all the same.

Run: ``.venv/bin/python bench/bench_auth.py``. Exit status 0 when measured.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

import ember_api
import servers
from ember.auth.principals import Principal
from ember.auth.sigv4 import HttpRequest, Verifier
from ember.cli import credentials
from ember.cli.client import SigV4
from ember.cli.credentials import Credentials
from loadgen import run_wrk

CALLS = 20_000
RUNS = 5
TARGET_US = 30.0
TARGET_DELTA_MS = 0.05
ROUNDS = 7
WARMUP_S = 2
RUN_S = 5
KEY_ID, SECRET = "AKIABENCHBENCHBENCH1", "benchmark/secret+0123456789abcdefghijklm"
PRINCIPAL = Principal("123456789012", "bench")


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def on_the_wire(call: Any) -> HttpRequest:
    client = boto3.client(
        "lambda",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 0}),
    )

    def capture(request: Any, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send.lambda", capture)
    try:
        call(client)
    except _Captured as captured:
        prepared = captured.request
    else:
        raise AssertionError("boto3 sent nothing")
    parts = urlsplit(prepared.url)
    headers = [(b"host", parts.netloc.encode())] + [
        (name.lower().encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in prepared.headers.items()
    ]
    return HttpRequest(prepared.method, parts.path, parts.query, headers, prepared.body or b"")


def cpu_us_per_verification(request: HttpRequest) -> float:
    stamp = dict(request.headers)[b"x-amz-date"].decode()
    signed = calendar.timegm(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").timetuple())
    verifier = Verifier(
        {KEY_ID: (SECRET, PRINCIPAL)}.get, region="us-east-1", clock=lambda: signed + 1.0
    )
    verify = verifier.verify
    assert verify(request) == PRINCIPAL  # warms the signing-key cache
    best = float("inf")
    for _ in range(RUNS):
        started = time.process_time()
        for _ in range(CALLS):
            verify(request)
        best = min(best, (time.process_time() - started) / CALLS * 1e6)
    return best


def root_key(data_dir: Path) -> Credentials:
    """The default account's root key that the server wrote on first start."""
    found = credentials.from_file(data_dir / "credentials", "ember", None)
    if found is None:
        raise RuntimeError(f"ember wrote no credentials file in {data_dir}")
    return found


def signed_script(url: str, key: Credentials, directory: Path) -> Path:
    """A wrk script POSTing the bench event with a fresh signature (valid for 5 minutes)."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=b'{"n": 1}',
        headers={"Content-Type": "application/json"},
    )
    boto_key = BotoCredentials(key.access_key, key.secret_key)
    SigV4Auth(boto_key, "lambda", "us-east-1").add_auth(request)
    lines = ['wrk.method = "POST"', """wrk.body = '{"n": 1}'"""]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in request.headers.items()]
    script = directory / "signed.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


@contextlib.contextmanager
def ember(work: Path, auth: str) -> Iterator[tuple[str, Credentials | None]]:
    """A server with ``auth``, the bench function deployed: (invoke URL, its root key)."""
    port = servers.free_port()
    data_dir = work / f"data-{auth}"
    base = f"http://127.0.0.1:{port}"
    command = servers.ember_command(port, data_dir, auth=auth)
    with servers.running(command, work / f"{auth}.log", base + "/health"):
        key = root_key(data_dir) if auth == "sigv4" else None
        signer = SigV4(key) if key else None
        with httpx.Client(base_url=base, timeout=60, auth=signer) as client:
            ember_api.deploy(client)
        yield base + ember_api.INVOKE_PATH, key


def warm_p50s(work: Path) -> dict[str, list[float]]:
    """p50 of warm invokes at one client per run, runs of both servers alternating."""
    p50s: dict[str, list[float]] = {"none": [], "sigv4": []}
    with ember(work, "none") as (open_url, _), ember(work, "sigv4") as (auth_url, key):
        assert key is not None
        for url, script in ((open_url, None), (auth_url, signed_script(auth_url, key, work))):
            run_wrk(url, 1, WARMUP_S, script=script)
        for _ in range(ROUNDS):
            p50s["none"].append(run_wrk(open_url, 1, RUN_S).p50_ms)
            script = signed_script(auth_url, key, work)
            p50s["sigv4"].append(run_wrk(auth_url, 1, RUN_S, script=script).p50_ms)
    return p50s


def load() -> str:
    """What else the machine was doing, for the record (1-minute load average)."""
    return f"{os.getloadavg()[0]:.2f}"


def main() -> int:
    cases = {
        "Invoke, 18-byte JSON payload": lambda c: c.invoke(
            FunctionName="my-function", Payload=b'{"hello": "world"}'
        ),
        "ListFunctions, MaxItems + Marker": lambda c: c.list_functions(MaxItems=10, Marker="m"),
        "Invoke, 256 KB payload": lambda c: c.invoke(
            FunctionName="my-function", Payload=b'{"d": "' + b"x" * 262_000 + b'"}'
        ),
    }
    print(f"SigV4 verification, CPU µs per request (best of {RUNS} x {CALLS:,}):")
    results = {name: cpu_us_per_verification(on_the_wire(call)) for name, call in cases.items()}
    for name, us in results.items():
        print(f"  {name:36s} {us:7.1f} µs")
    typical = results["Invoke, 18-byte JSON payload"]
    verdict = "met" if typical <= TARGET_US else "MISSED"
    print(f"target <= {TARGET_US:.0f} µs for a typical Invoke: {verdict} ({typical:.1f} µs)")
    print(f"\nWarm invoke over HTTP, wrk -t1 -c1, {ROUNDS} alternating runs of {RUN_S} s each")
    print(f"(load average before: {load()})")
    with tempfile.TemporaryDirectory(prefix="ember-bench-auth-") as scratch:
        p50s = warm_p50s(Path(scratch))
    medians = {auth: statistics.median(runs) for auth, runs in p50s.items()}
    for auth, runs in p50s.items():
        shown = " ".join(f"{v:.3f}" for v in runs)
        print(f"  --auth {auth:6s} p50 median {medians[auth]:.3f} ms  (runs: {shown})")
    delta = medians["sigv4"] - medians["none"]
    verdict = "met" if delta <= TARGET_DELTA_MS else "MISSED"
    ratio = medians["sigv4"] / medians["none"]
    print(
        f"target: SigV4 adds <= {TARGET_DELTA_MS} ms to the warm p50: {verdict} "
        f"(+{delta:.3f} ms, ratio {ratio:.3f}; load average after: {load()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

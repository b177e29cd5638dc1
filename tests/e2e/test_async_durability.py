"""Durability: kill -9 the server under Event load, restart on the same data dir, lose nothing.

Deliveries are counted where they are durable: the source function's OnSuccess
destination always fails with no retries, so each delivered event ends as one
dead letter of the destination (moved there atomically with its acknowledgement),
whose invocation record names the original request id.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from collections.abc import Callable

import httpx
from async_helpers import ALWAYS_FAILS, dead_letters, drained
from e2e_helpers import function_arn

from conftest import ROLE, Server, lambda_client, make_zip, signed_http, wait_until

NOOP = """
def handler(event, context):
    return event
"""
CYCLES = 3
EVENTS_PER_CYCLE = 120


def load(server: Server, name: str, accepted: list[str], stop: threading.Event) -> None:
    """Send Event invokes until ``stop`` or the server dies; keep the ids answered 202."""
    path = f"/2015-03-31/functions/{name}/invocations"
    headers = {"X-Amz-Invocation-Type": "Event"}
    with signed_http(server.url, server.credentials, timeout=10) as client:
        n = 0
        while not stop.is_set():
            try:
                response = client.post(path, content=json.dumps({"n": n}), headers=headers)
            except httpx.HTTPError:
                return  # killed: this request was never acknowledged
            if response.status_code == 202:
                accepted.append(response.headers["x-amzn-requestid"])
            n += 1


def delivered(server: Server, destination: str) -> set[str]:
    return {
        letter["payload"]["requestContext"]["requestId"]
        for letter in dead_letters(server, destination, payload=True)
    }


def test_every_accepted_event_survives_sigkill(spawn_server: Callable[..., Server]) -> None:
    server = spawn_server(None, "--retry-base-delay", "0.05")
    data_dir = server.data_dir
    aws = lambda_client(server)
    try:
        code = {"ZipFile": make_zip({"app.py": ALWAYS_FAILS})}
        common = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE}
        aws.create_function(FunctionName="sink", Code=code, **common)
        aws.put_function_event_invoke_config(FunctionName="sink", MaximumRetryAttempts=0)
        aws.create_function(
            FunctionName="source", Code={"ZipFile": make_zip({"app.py": NOOP})}, **common
        )
        aws.put_function_event_invoke_config(
            FunctionName="source",
            DestinationConfig={"OnSuccess": {"Destination": function_arn("sink")}},
        )
    finally:
        aws.close()

    accepted: list[str] = []
    rng = random.Random(4)
    for _ in range(CYCLES):
        stop = threading.Event()
        before = len(accepted)
        sender = threading.Thread(target=load, args=(server, "source", accepted, stop))
        sender.start()
        # Kill at a random moment once this cycle has had its share of 202s.
        target = before + EVENTS_PER_CYCLE + rng.randrange(EVENTS_PER_CYCLE)
        wait_until(lambda target=target: len(accepted) >= target, timeout=60, interval=0.001)
        server.stop(signal.SIGKILL)
        stop.set()
        sender.join()
        server = spawn_server(data_dir, "--retry-base-delay", "0.05")

    expected = set(accepted)
    assert len(expected) == len(accepted) >= CYCLES * EVENTS_PER_CYCLE
    wait_until(lambda: drained(server, "source") and drained(server, "sink"), timeout=120)
    lost = expected - delivered(server, "sink")
    assert not lost, f"{len(lost)} of {len(expected)} accepted events were never delivered"

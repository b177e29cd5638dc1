"""End-to-end: /metrics, the invocation history, the series and `ember top` of a real
server, driven with boto3, function URLs, the async queue and the CLI.

Counters are read before and after the calls a test makes, so the other tests'
calls on the shared server never matter.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import EMBER, ROLE, Server, lambda_client, make_zip, wait_until

HANDLER = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    print("handled " + context.aws_request_id)
    return {"ok": True}
"""

Spawn = Callable[..., Server]


def create(server: Server, name: str, source: str = HANDLER) -> None:
    lambda_client(server).create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": source})},
    )


def invoke(server: Server, name: str, event: dict[str, Any] | None = None) -> str:
    response = lambda_client(server).invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode()
    )
    return str(response["ResponseMetadata"]["RequestId"])


def samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics by (name, sorted labels)."""
    response = server.http.get("/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def metric(server: Server, name: str, **labels: str) -> float:
    return samples(server).get((name, tuple(sorted(labels.items()))), 0.0)


def history(server: Server, name: str, **params: str) -> dict[str, Any]:
    response = server.http.get(f"/_ember/functions/{name}/invocations", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def recorded(server: Server, name: str, count: int) -> list[dict[str, Any]]:
    """The function's records once ``count`` are written (they are, within a second)."""

    def enough() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = history(server, name, limit="1000")["Invocations"]
        return found if len(found) >= count else None

    result: list[dict[str, Any]] = wait_until(enough, timeout=30)
    return result


def test_metrics_count_calls_outcomes_durations_and_cold_starts(server: Server) -> None:
    name = f"obs-metrics-{uuid.uuid4().hex[:8]}"
    create(server, name)
    labels = {"function": name, "qualifier": "$LATEST"}
    for _ in range(3):
        invoke(server, name)
    invoke(server, name, {"fail": True})
    found = samples(server)

    def value(metric_name: str, **extra: str) -> float:
        return found.get((metric_name, tuple(sorted(extra.items()))), 0.0)

    assert value("ember_invocations_total", **labels, outcome="success") == 3
    assert value("ember_invocations_total", **labels, outcome="error") == 1
    assert value("ember_invocation_duration_seconds_count", function=name) == 4
    assert value("ember_invocation_duration_seconds_bucket", function=name, le="+Inf") == 4
    assert value("ember_invocation_duration_seconds_sum", function=name) > 0
    assert value("ember_cold_starts_total", function=name) == 1
    assert value("ember_init_duration_seconds_count", function=name) == 1
    assert value("ember_concurrent_executions", function=name) == 0
    assert value("ember_sandboxes", state="idle") >= 1
    assert value("ember_overhead_seconds_count") >= 4
    invoke(server, name)
    assert metric(server, "ember_invocations_total", **labels, outcome="success") == 4
    assert metric(server, "ember_cold_starts_total", function=name) == 1


def test_throttles_are_counted_by_reason(server: Server) -> None:
    name = f"obs-throttle-{uuid.uuid4().hex[:8]}"
    create(server, name)
    limit = {"algorithm": "token-bucket", "rate": "1/h", "burst": 1}
    assert server.http.put(f"/_ember/functions/{name}/limits", json=limit).status_code == 200
    invoke(server, name)
    aws = lambda_client(server)
    with pytest.raises(aws.exceptions.TooManyRequestsException):
        aws.invoke(FunctionName=name, Payload=b"{}")
    reason = "FunctionInvocationRateLimitExceeded"
    assert metric(server, "ember_throttles_total", function=name, reason=reason) == 1
    assert (
        metric(
            server, "ember_invocations_total", function=name, qualifier="$LATEST", outcome="success"
        )
        == 1
    )

    def throttled_minute() -> list[dict[str, Any]]:
        points = server.http.get(f"/_ember/functions/{name}/series").json()["Points"]
        return [p for p in points if p["Throttles"]]

    (point,) = wait_until(throttled_minute, timeout=30)
    assert point["Throttles"] == 1 and point["Invocations"] == 1


def test_history_of_sync_async_and_url_calls_with_filters_and_paging(server: Server) -> None:
    name = f"obs-history-{uuid.uuid4().hex[:8]}"
    create(server, name)
    aws = lambda_client(server)
    sync_ids = [invoke(server, name) for _ in range(3)]
    failed_id = invoke(server, name, {"fail": True})
    async_id = aws.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")[
        "ResponseMetadata"
    ]["RequestId"]
    url = aws.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    url_call = httpx.post(url, json={}, timeout=30)
    assert url_call.status_code == 200, url_call.text
    records = recorded(server, name, 6)
    assert len(records) == 6
    origins = {record["RequestId"]: record["Origin"] for record in records}
    assert {origins[i] for i in sync_ids} == {"sync"} and origins[failed_id] == "sync"
    assert origins[async_id] == "async"
    assert sorted(origins.values()).count("url") == 1
    starts = [record["Start"] for record in records]
    assert starts == sorted(starts, reverse=True)  # newest first
    first = records[-1]
    assert first["InitDurationMs"] is not None  # the cold start
    assert first["Version"] == "$LATEST" and first["SandboxId"]
    assert first["TraceId"].startswith("Root=1-")
    assert first["BilledDurationMs"] >= 1 and first["MemorySizeMB"] == 128
    (failed,) = history(server, name, outcome="error,timeout")["Invocations"]
    assert failed["RequestId"] == failed_id
    assert failed["Outcome"] == "error" and failed["ErrorType"] == "ValueError"
    assert history(server, name, since="0", until="1")["Invocations"] == []
    assert len(history(server, name, since="10m")["Invocations"]) == 6

    paged: list[str] = []
    params = {"limit": "4"}
    while True:
        page = history(server, name, **params)
        paged += [record["RequestId"] for record in page["Invocations"]]
        if not page["NextMarker"]:
            break
        params["next"] = page["NextMarker"]
    assert paged == [record["RequestId"] for record in records]

    bad = server.http.get(f"/_ember/functions/{name}/invocations", params={"outcome": "meh"})
    assert bad.status_code == 400 and "meh" in bad.json()["message"]
    missing = server.http.get("/_ember/functions/no-such-fn/invocations")
    assert missing.status_code == 404

    points = server.http.get(f"/_ember/functions/{name}/series", params={"since": "1h"}).json()
    assert sum(p["Invocations"] for p in points["Points"]) == 6
    assert sum(p["Errors"] for p in points["Points"]) == 1
    assert all(p["DurationP99Ms"] >= p["DurationP50Ms"] for p in points["Points"])


def test_invocations_through_the_cli(server: Server) -> None:
    name = f"obs-cli-{uuid.uuid4().hex[:8]}"
    create(server, name)
    good = invoke(server, name)
    bad = invoke(server, name, {"fail": True})
    recorded(server, name, 2)

    def ember(*args: str) -> str:
        done = subprocess.run(
            [EMBER, *args],
            env=server.cli_env(COLUMNS="200"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = ember("invocations", "ls", name)
    assert good in listed and bad in listed
    errors = ember("invocations", "ls", name, "--errors", "--since", "10m")
    assert bad in errors and good not in errors and "ValueError" in errors
    shown = ember("invocations", "show", good)
    assert f"START RequestId: {good}" in shown
    assert f"handled {good}" in shown and f"REPORT RequestId: {good}" in shown
    assert bad not in shown
    as_json = json.loads(ember("invocations", "show", bad, "--json"))
    assert as_json["Invocation"]["Outcome"] == "error"
    assert "asked to fail" in as_json["Logs"]


def test_top_once_shows_each_function(server: Server) -> None:
    name = f"obs-top-{uuid.uuid4().hex[:8]}"
    create(server, name)
    invoke(server, name)
    done = subprocess.run(
        [EMBER, "top", "--once", "--interval", "0.5"],
        env=server.cli_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "CALLS/S" in done.stdout and "COLD" in done.stdout
    (row,) = [line for line in done.stdout.splitlines() if name in line]
    assert row.split()[1] == "0.0"  # no call in the interval


def test_async_events_received_dropped_dead_lettered_and_destinations(spawn_server: Spawn) -> None:
    fast = spawn_server(None, "--retry-base-delay", "0.05")
    aws = lambda_client(fast)
    failing, ok, gone = (f"obs-async-{kind}-{uuid.uuid4().hex[:6]}" for kind in "fsd")
    create(fast, failing, "def handler(e, c):\n    raise ValueError('no')\n")
    create(fast, ok)
    create(fast, gone)
    aws.put_function_event_invoke_config(FunctionName=failing, MaximumRetryAttempts=0)
    aws.put_function_event_invoke_config(
        FunctionName=ok,
        DestinationConfig={
            "OnSuccess": {"Destination": f"arn:aws:lambda:us-east-1:000000000000:function:{gone}"}
        },
    )
    aws.delete_function(FunctionName=gone)
    for target in (failing, ok):
        aws.invoke(FunctionName=target, InvocationType="Event", Payload=b"{}")
    wait_until(lambda: metric(fast, "ember_dead_letters_total", function=failing) == 1)
    wait_until(lambda: metric(fast, "ember_destination_delivery_failures_total", function=ok) == 1)
    assert metric(fast, "ember_async_events_received_total", function=failing) == 1
    assert metric(fast, "ember_async_events_received_total", function=ok) == 1
    assert metric(fast, "ember_async_events_dropped_total", function=failing) == 1
    assert metric(fast, "ember_async_events_dropped_total", function=ok) == 0
    assert metric(fast, "ember_async_event_age_seconds_count") >= 2


def test_metrics_need_a_signature_or_the_token_off_loopback(spawn_server: Spawn) -> None:
    address = _outside_address()
    if address is None:
        pytest.skip("this host has no address besides loopback")
    node = spawn_server(
        None, "--host", "0.0.0.0", "--allow-host", address, "--metrics-token", "s3cret"
    )
    outside = f"http://{address}:{node.port}/metrics"
    assert httpx.get(f"{node.url}/metrics", timeout=10).status_code == 200  # loopback
    refused = httpx.get(outside, timeout=10)
    assert refused.status_code in (401, 403), refused.text
    wrong = httpx.get(outside, headers={"authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code in (401, 403)
    scraped = httpx.get(outside, headers={"authorization": "Bearer s3cret"}, timeout=10)
    assert scraped.status_code == 200 and "ember_sandboxes" in scraped.text


def _outside_address() -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: picks the outbound address
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_history_survives_a_restart(spawn_server: Spawn, tmp_path: Any) -> None:
    node = spawn_server(tmp_path / "data")
    name = f"obs-restart-{uuid.uuid4().hex[:8]}"
    create(node, name)
    request_id = invoke(node, name)
    written = node.health()["history"]
    assert set(written) == {"pending", "written", "dropped", "failed_flushes"}
    node.stop()  # SIGTERM: what is pending is written at close
    again = spawn_server(tmp_path / "data")
    (record,) = history(again, name)["Invocations"]
    assert record["RequestId"] == request_id


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps the protobuf bodies POSTed to /v1/traces."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            self.received.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_spans_reach_an_otlp_receiver(spawn_server: Spawn) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        node = spawn_server(
            None, "--otlp-endpoint", f"http://127.0.0.1:{collector.server_address[1]}"
        )
        name = f"obs-otlp-{uuid.uuid4().hex[:8]}"
        create(node, name)
        request_id = invoke(node, name)

        def spans() -> dict[str, Any] | None:
            found: dict[str, Any] = {}
            for body in _Collector.received:
                export = ExportTraceServiceRequest.FromString(body)
                for resource in export.resource_spans:
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attributes = {a.key: a.value for a in span.attributes}
                            if "faas.invocation_id" in attributes:
                                ours = attributes["faas.invocation_id"].string_value
                                if ours != request_id:
                                    continue
                            found[span.name] = span
            return found if len(found) == 5 else None

        found = wait_until(spans, timeout=30)
    finally:
        collector.shutdown()
        collector.server_close()
    root = found["ember.invoke"]
    assert {span.trace_id for span in found.values()} == {root.trace_id}
    # ember made the trace id: the function's _X_AMZN_TRACE_ID names the root span as Parent.
    (record,) = history(node, name)["Invocations"]
    header = dict(part.split("=", 1) for part in record["TraceId"].split(";"))
    assert root.trace_id.hex() == header["Root"][2:].replace("-", "")
    assert root.span_id.hex() == header["Parent"]
    assert not root.parent_span_id
    assert found["ember.init"].parent_span_id == found["ember.acquire"].span_id
    assert found["ember.sandbox.invoke"].parent_span_id == root.span_id

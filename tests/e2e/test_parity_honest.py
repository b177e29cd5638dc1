"""End-to-end through boto3: no setting is accepted and answered with another value.

Every configuration field is honoured (tracing, logging, the host's architecture)
or refused with InvalidParameterValueException naming it; trace ids are the
caller's or fresh per invocation.
"""

from __future__ import annotations

import base64
import json
import platform
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import Server

Deploy = Callable[..., dict[str, Any]]

HOST_ARCH = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
OTHER_ARCH = "x86_64" if HOST_ARCH == "arm64" else "arm64"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TRACE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]$")

TRACE_ENV = """
import os

def handler(event, context):
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID"), "parent": os.environ.get("TRACEPARENT")}
"""

# Each refused field with a value that asks for something, and one that means "none".
REFUSED = {
    "VpcConfig": ({"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}, {"SubnetIds": []}),
    "FileSystemConfigs": (
        [
            {
                "Arn": "arn:aws:elasticfilesystem:us-east-1:000000000000:access-point/fsap-1",
                "LocalMountPath": "/mnt/efs",
            }
        ],
        [],
    ),
    "KMSKeyArn": ("arn:aws:kms:us-east-1:000000000000:key/abc", ""),
    "DeadLetterConfig": ({"TargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq"}, {}),
    "ImageConfig": ({"Command": ["app.handler"]}, {}),
}


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_a_field_ember_cannot_honour_is_refused_by_name(
    aws: Any, deploy: Deploy, field: str
) -> None:
    asks, none = REFUSED[field]
    with pytest.raises(aws.exceptions.InvalidParameterValueException, match=field):
        deploy("def handler(e, c):\n    return 1\n", **{field: asks})
    created = deploy("def handler(e, c):\n    return 1\n", **{field: none})
    if field in ("ImageConfig", "FileSystemConfigs"):
        return  # not members of UpdateFunctionConfiguration's input in every shape
    with pytest.raises(aws.exceptions.InvalidParameterValueException, match=field):
        aws.update_function_configuration(FunctionName=created["FunctionName"], **{field: asks})


def test_the_code_signing_config_is_refused(aws: Any, deploy: Deploy) -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdef0"
    with pytest.raises(aws.exceptions.InvalidParameterValueException, match="CodeSigningConfigArn"):
        deploy("def handler(e, c):\n    return 1\n", CodeSigningConfigArn=arn)


def test_only_the_hosts_architecture_is_accepted(aws: Any, deploy: Deploy) -> None:
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        deploy("def handler(e, c):\n    return 1\n", Architectures=[OTHER_ARCH])
    assert OTHER_ARCH in str(refused.value) and HOST_ARCH in str(refused.value)

    default = deploy("def handler(e, c):\n    return 1\n")
    assert default["Architectures"] == [HOST_ARCH]
    explicit = deploy("def handler(e, c):\n    return 1\n", Architectures=[HOST_ARCH])
    assert explicit["Architectures"] == [HOST_ARCH]


def test_active_tracing_is_kept_and_answered(aws: Any, deploy: Deploy) -> None:
    created = deploy("def handler(e, c):\n    return 1\n", TracingConfig={"Mode": "Active"})
    name = created["FunctionName"]
    assert created["TracingConfig"] == {"Mode": "Active"}
    assert aws.get_function_configuration(FunctionName=name)["TracingConfig"] == {"Mode": "Active"}

    updated = aws.update_function_configuration(
        FunctionName=name, TracingConfig={"Mode": "PassThrough"}
    )
    assert updated["TracingConfig"] == {"Mode": "PassThrough"}


def test_json_logging_config_is_kept_and_answered(aws: Any, deploy: Deploy) -> None:
    created = deploy("def handler(e, c):\n    return 1\n", LoggingConfig={"LogFormat": "JSON"})
    name = created["FunctionName"]
    assert created["LoggingConfig"] == {
        "LogFormat": "JSON",
        "ApplicationLogLevel": "INFO",
        "SystemLogLevel": "INFO",
        "LogGroup": f"/aws/lambda/{name}",
    }
    updated = aws.update_function_configuration(
        FunctionName=name,
        LoggingConfig={"ApplicationLogLevel": "WARN", "LogGroup": "/shared/group"},
    )
    assert updated["LoggingConfig"] == {
        "LogFormat": "JSON",
        "ApplicationLogLevel": "WARN",
        "SystemLogLevel": "INFO",
        "LogGroup": "/shared/group",
    }
    text = aws.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "Text"})
    assert text["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/shared/group"}


def test_log_levels_need_the_json_format(aws: Any, deploy: Deploy) -> None:
    with pytest.raises(aws.exceptions.InvalidParameterValueException, match="LogFormat"):
        deploy(
            "def handler(e, c):\n    return 1\n",
            LoggingConfig={"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"},
        )


# -- trace ids ---------------------------------------------------------------------------------


def _traced(server: Server, name: str, **headers: str) -> dict[str, Any]:
    response = server.http.post(
        f"{server.url}/2015-03-31/functions/{name}/invocations", content=b"{}", headers=headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_every_invocation_gets_its_own_trace_id(server: Server, deploy: Deploy) -> None:
    name = deploy(TRACE_ENV)["FunctionName"]
    seen = [_traced(server, name) for _ in range(5)]

    traces = [entry["trace"] for entry in seen]
    assert all(TRACE.match(trace) for trace in traces), traces
    assert len({trace.split(";")[0] for trace in traces}) == 5  # never one Root per second
    assert all(trace.endswith("Sampled=0") for trace in traces)  # PassThrough
    for entry in seen:  # the same trace in W3C's form
        root, parent = entry["trace"].split(";")[:2]
        epoch, rand = root.split("-")[1:]
        assert entry["parent"] == f"00-{epoch}{rand}-{parent.removeprefix('Parent=')}-00"


def test_active_tracing_samples_fresh_trace_ids(server: Server, deploy: Deploy) -> None:
    name = deploy(TRACE_ENV, TracingConfig={"Mode": "Active"})["FunctionName"]
    assert _traced(server, name)["trace"].endswith("Sampled=1")


def test_the_callers_trace_header_is_kept(server: Server, deploy: Deploy) -> None:
    name = deploy(TRACE_ENV)["FunctionName"]
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert _traced(server, name, **{"X-Amzn-Trace-Id": header})["trace"] == header

    # X-Amzn-Trace-Id wins over traceparent; traceparent alone is carried over.
    w3c = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    both = _traced(server, name, **{"X-Amzn-Trace-Id": header, "traceparent": w3c})
    assert both["trace"] == header
    carried = _traced(server, name, traceparent=w3c)
    assert carried == {
        "trace": "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1",
        "parent": w3c,
    }


def test_a_malformed_trace_header_gets_a_fresh_id(server: Server, deploy: Deploy) -> None:
    name = deploy(TRACE_ENV)["FunctionName"]
    trace = _traced(server, name, **{"X-Amzn-Trace-Id": "Root=nonsense"})["trace"]
    assert TRACE.match(trace) and "nonsense" not in trace


def test_a_function_url_keeps_the_callers_trace(server: Server, aws: Any, deploy: Deploy) -> None:
    name = deploy(
        {
            "app.py": (
                "import os\n"
                "def handler(event, context):\n"
                "    return {'statusCode': 200, 'body': os.environ['_X_AMZN_TRACE_ID']}\n"
            )
        }
    )["FunctionName"]
    url = aws.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    response = httpx.get(url, headers={"X-Amzn-Trace-Id": header}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.text == header


# -- JSON logs ---------------------------------------------------------------------------------

LOGS = """
import logging

log = logging.getLogger("orders")

def handler(event, context):
    print("plain text")
    log.debug("hidden at INFO")
    log.info("order placed", extra={"orderId": 42})
    try:
        raise ValueError("bad order")
    except ValueError:
        log.exception("failed")
    if event.get("fail"):
        raise RuntimeError("boom")
    return 1
"""


def _tail_lines(aws: Any, name: str, event: dict[str, Any] | None = None) -> list[str]:
    response = aws.invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail"
    )
    return base64.b64decode(response["LogResult"]).decode().splitlines()


def _records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_json_logs_have_lambdas_platform_and_application_records(aws: Any, deploy: Deploy) -> None:
    name = deploy(LOGS, LoggingConfig={"LogFormat": "JSON"})["FunctionName"]
    lines = _tail_lines(aws, name)
    records = _records(lines)

    assert "plain text" in lines  # print output stays as written
    assert [r["type"] for r in records if "type" in r] == ["platform.start", "platform.report"]
    start, report = (r for r in records if "type" in r)
    request_id = start["record"]["requestId"]
    assert start["record"] == {"requestId": request_id, "version": "$LATEST"}
    assert TIME.match(start["time"]) and TIME.match(report["time"])
    assert report["record"]["status"] == "success"
    metrics = report["record"]["metrics"]
    assert {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB"} <= set(metrics)
    assert metrics["memorySizeMB"] == 128

    application = [r for r in records if "level" in r]
    assert [(r["level"], r["message"], r["logger"]) for r in application] == [
        ("INFO", "order placed", "orders"),
        ("ERROR", "failed", "orders"),
    ]
    assert all(r["requestId"] == request_id and TIME.match(r["timestamp"]) for r in application)
    assert application[0]["orderId"] == 42
    assert application[1]["errorType"] == "ValueError"
    assert application[1]["errorMessage"] == "bad order"
    assert not any(line.startswith(("START", "END", "REPORT")) for line in lines)


def test_json_log_levels_filter_application_and_platform_records(aws: Any, deploy: Deploy) -> None:
    config = {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "DEBUG"}
    name = deploy(LOGS, LoggingConfig=config)["FunctionName"]
    records = _records(_tail_lines(aws, name))
    assert [r["message"] for r in records if "level" in r] == [
        "hidden at INFO",
        "order placed",
        "failed",
    ]
    assert [r["type"] for r in records if "type" in r] == [
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
    ]

    quiet = {"ApplicationLogLevel": "ERROR", "SystemLogLevel": "WARN"}
    aws.update_function_configuration(FunctionName=name, LoggingConfig=quiet)
    aws.get_waiter("function_updated_v2").wait(FunctionName=name)
    records = _records(_tail_lines(aws, name))
    assert [(r.get("level"), r.get("message")) for r in records] == [("ERROR", "failed")]


def test_a_failure_is_logged_as_a_json_error_record(aws: Any, deploy: Deploy) -> None:
    name = deploy(LOGS, LoggingConfig={"LogFormat": "JSON"})["FunctionName"]
    records = _records(_tail_lines(aws, name, {"fail": True}))
    error = next(r for r in records if r.get("log_level") == "ERROR")
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "boom")
    report = next(r for r in records if r.get("type") == "platform.report")
    assert report["record"]["status"] == "error"


def test_text_logs_are_unchanged(aws: Any, deploy: Deploy) -> None:
    name = deploy(LOGS)["FunctionName"]
    lines = _tail_lines(aws, name)
    assert lines[0].startswith("START RequestId: ")
    assert any(line.startswith("[ERROR]\t") and line.endswith("\tfailed") for line in lines)
    assert not any("order placed" in line for line in lines)  # WARNING by default

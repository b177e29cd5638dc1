"""Provisioned concurrency through Lambda's API, with boto3: a config per version or
alias, IN_PROGRESS then READY once the controller loop has initialized the sandboxes,
which then serve calls of that qualifier (AWS_LAMBDA_INITIALIZATION_TYPE says so);
FAILED when Init fails; Lambda's rules and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, sandboxes_of, wait_until

SOURCE = """
import os
def handler(event, context):
    return os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]
"""
BROKEN = "raise RuntimeError('init fails')\ndef handler(event, context):\n    return 1\n"


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return error["Code"], error["Message"]


def status(aws: Any, name: str, qualifier: str) -> dict[str, Any]:
    return dict(aws.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier))


def test_a_version_gets_ready_sandboxes_that_serve_its_calls(
    aws: Any, server: Server, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy(SOURCE, Publish=True)["FunctionName"]
    put = aws.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["Status"] == "IN_PROGRESS" and put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["AllocatedProvisionedConcurrentExecutions"] == 0 and put["LastModified"]

    ready = wait_until(lambda: (s := status(aws, name, "1"))["Status"] == "READY" and s)
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2
    assert len([s for s in sandboxes_of(server, name) if s["provisioned"]]) == 2

    answer = aws.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    assert json.loads(answer["Payload"].read()) == "provisioned-concurrency"
    # $LATEST has none: its call starts on demand.
    latest = aws.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(latest["Payload"].read()) == "on-demand"
    latest_revision = aws.get_function(FunctionName=name)["Configuration"]["RevisionId"]

    # An Event invoke of the version is served by them too: no sandbox starts on demand.
    def served() -> int:
        rows = [s for s in sandboxes_of(server, name) if s["provisioned"]]
        return sum(int(row["invocations"]) for row in rows)

    before = served()
    assert aws.invoke(FunctionName=name, Qualifier="1", InvocationType="Event")["StatusCode"] == 202
    wait_until(lambda: served() > before)
    version_sandboxes = [s for s in sandboxes_of(server, name) if s["revision"] != latest_revision]
    assert all(s["provisioned"] for s in version_sandboxes)

    listed = aws.list_provisioned_concurrency_configs(FunctionName=name)
    items = listed["ProvisionedConcurrencyConfigs"]
    assert [item["FunctionArn"].rsplit(":", 1)[1] for item in items] == ["1"]

    aws.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert error_of(lambda: status(aws, name, "1")) == (
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
    )
    wait_until(lambda: not [s for s in sandboxes_of(server, name) if s["provisioned"]])


def test_an_alias_is_provisioned_and_init_failure_is_reported(
    aws: Any, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy(SOURCE, Publish=True)["FunctionName"]
    aws.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    aws.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    wait_until(lambda: status(aws, name, "live")["Status"] == "READY")
    answer = aws.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    assert json.loads(answer["Payload"].read()) == "provisioned-concurrency"
    assert error_of(
        lambda: aws.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )
    ) == ("ResourceConflictException", "Version is pointed by a Provisioned Concurrency alias")

    broken = deploy(BROKEN, Publish=True)["FunctionName"]
    aws.put_provisioned_concurrency_config(
        FunctionName=broken, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    failed = wait_until(lambda: (s := status(aws, broken, "1"))["Status"] == "FAILED" and s)
    assert failed["StatusReason"] == "FUNCTION_ERROR_INIT_FAILURE"


def test_lambda_rules(aws: Any, deploy: Callable[..., dict[str, Any]]) -> None:
    name = deploy(SOURCE, Publish=True)["FunctionName"]

    def put(qualifier: str, count: int) -> Callable[[], Any]:
        return lambda: aws.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier=qualifier, ProvisionedConcurrentExecutions=count
        )

    assert error_of(put("$LATEST", 1)) == (
        "InvalidParameterValueException",
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
    )
    assert error_of(put("9", 1))[0] == "ResourceNotFoundException"
    assert error_of(lambda: status(aws, name, "1"))[0] == (
        "ProvisionedConcurrencyConfigNotFoundException"
    )
    assert error_of(put("1", 100_000))[0] == "InvalidParameterValueException"
    aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert error_of(put("1", 2)) == (
        "InvalidParameterValueException",
        "Requested Provisioned Concurrency should not be greater than the "
        "reservedConcurrentExecution for function",
    )
    aws.update_function_configuration(FunctionName=name, Description="second")
    aws.publish_version(FunctionName=name)
    aws.create_alias(
        FunctionName=name,
        Name="split",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    assert error_of(put("split", 1))[0] == "InvalidParameterValueException"

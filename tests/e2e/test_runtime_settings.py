"""Runtime management and code signing, as Lambda answers an account that uses none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from e2e_helpers import function_arn

RUNTIME_ARN = (
    "arn:aws:lambda:us-east-1::runtime:"
    "0c1f7c9d5ad3c8a3b2e8b7a1a9c4ef0a5d6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d"
)
SOURCE = "def handler(event, context):\n    return event\n"


def error_of(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def test_runtime_management_defaults_to_auto_and_keeps_what_is_put(
    aws: Any, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy(SOURCE)["FunctionName"]
    got = aws.get_runtime_management_config(FunctionName=name)
    assert got["UpdateRuntimeOn"] == "Auto" and got["FunctionArn"] == function_arn(name)
    assert "RuntimeVersionArn" not in got

    put = aws.put_runtime_management_config(
        FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=RUNTIME_ARN
    )
    assert put["UpdateRuntimeOn"] == "Manual" and put["RuntimeVersionArn"] == RUNTIME_ARN
    got = aws.get_runtime_management_config(FunctionName=name)
    assert (got["UpdateRuntimeOn"], got["RuntimeVersionArn"]) == ("Manual", RUNTIME_ARN)

    aws.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="FunctionUpdate")
    got = aws.get_runtime_management_config(FunctionName=name, Qualifier="$LATEST")
    assert got["UpdateRuntimeOn"] == "FunctionUpdate" and "RuntimeVersionArn" not in got
    assert aws.invoke(FunctionName=name, Payload=b'{"ok": 1}')["StatusCode"] == 200


def test_runtime_management_refusals(aws: Any, deploy: Callable[..., dict[str, Any]]) -> None:
    name = deploy(SOURCE)["FunctionName"]
    assert error_of(
        lambda: aws.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual")
    ) == ("InvalidParameterValueException")
    assert error_of(
        lambda: aws.put_runtime_management_config(
            FunctionName=name, UpdateRuntimeOn="Auto", RuntimeVersionArn=RUNTIME_ARN
        )
    ) == ("InvalidParameterValueException")
    assert error_of(
        lambda: aws.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Sometimes")
    ) == ("ValidationException")
    assert error_of(lambda: aws.get_runtime_management_config(FunctionName=f"{name}-absent")) == (
        "ResourceNotFoundException"
    )


def test_code_signing_reads_answer_that_there_is_none(
    aws: Any, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy(SOURCE)["FunctionName"]
    config = aws.get_function_code_signing_config(FunctionName=name)
    config.pop("ResponseMetadata")
    assert config == {}
    assert aws.list_code_signing_configs()["CodeSigningConfigs"] == []
    unknown = "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdef0"
    assert error_of(lambda: aws.get_code_signing_config(CodeSigningConfigArn=unknown)) == (
        "ResourceNotFoundException"
    )
    assert error_of(
        lambda: aws.get_function_code_signing_config(FunctionName=f"{name}-absent")
    ) == ("ResourceNotFoundException")

"""ARNs, qualifiers and types as Lambda judges them (issue 20, point 7), through boto3 and
raw requests where boto3 would refuse to send the mistake itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from async_helpers import ALWAYS_FAILS, dead_letters
from botocore.exceptions import ClientError
from e2e_helpers import ACCOUNT, REGION

from conftest import Server, wait_until

API = "/2015-03-31/functions"


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = raised.value.response
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    return response["Error"]["Code"], status, response["Error"]["Message"]


def arn(name: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


def test_an_arn_of_another_region_names_nothing_here(aws: Any, deploy: Any) -> None:
    name = deploy("def handler(e, c): return 1\n")["FunctionName"]
    foreign = arn(name, region="eu-west-1")
    with pytest.raises(ClientError) as raised:
        aws.get_function(FunctionName=foreign)
    assert error_of(raised) == (
        "ResourceNotFoundException",
        404,
        f"Functions from 'eu-west-1' are not reachable in this region ('{REGION}')",
    )
    with pytest.raises(ClientError) as raised:
        aws.delete_function(FunctionName=foreign)
    assert error_of(raised)[:2] == ("ResourceNotFoundException", 404)
    assert aws.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_an_arn_of_another_account_does_not_delete_the_local_function(
    aws: Any, deploy: Any
) -> None:
    name = deploy("def handler(e, c): return 1\n")["FunctionName"]
    with pytest.raises(ClientError) as raised:
        aws.delete_function(FunctionName=arn(name, account="111122223333"))
    assert error_of(raised)[:2] == ("AccessDeniedException", 403)
    assert aws.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


@pytest.mark.parametrize("qualifier", ["bad!", "a/b", "v 1", "x" * 129])
def test_invalid_qualifier_characters_are_a_validation_error(
    aws: Any, deploy: Any, qualifier: str
) -> None:
    name = deploy("def handler(e, c): return 1\n")["FunctionName"]
    for call in (aws.get_function, aws.invoke, aws.delete_function):
        with pytest.raises(ClientError) as raised:
            call(FunctionName=name, Qualifier=qualifier)
        code, status, message = error_of(raised)
        assert (code, status) == ("ValidationException", 400), call
        assert "at 'qualifier'" in message
    assert aws.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def raw_error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, response.headers["x-amzn-errortype"], body["message"]


@pytest.mark.parametrize(
    ("routing", "member"),
    [
        ("weights", "'routingConfig'"),
        ({"AdditionalVersionWeights": ["1"]}, "'routingConfig.additionalVersionWeights'"),
        ({"AdditionalVersionWeights": {"1": "half"}}, "'routingConfig.additionalVersionWeights.1'"),
    ],
)
def test_routing_config_is_type_checked(
    server: Server, deploy: Any, routing: Any, member: str
) -> None:
    name = deploy("def handler(e, c): return 1\n")["FunctionName"]
    body = {"Name": "live", "FunctionVersion": "$LATEST", "RoutingConfig": routing}
    response = server.http.post(f"{API}/{name}/aliases", json=body)
    status, code, message = raw_error(response)
    assert (status, code) == (400, "ValidationException")
    assert f"at {member}" in message


@pytest.mark.parametrize(
    ("settings", "member"),
    [
        ({"Environment": {"Variables": {"KEY": 5}}}, "'environment.variables.KEY'"),
        ({"Environment": "KEY=1"}, "'environment'"),
        ({"Timeout": "30"}, "'timeout'"),
        ({"Layers": "arn"}, "'layers'"),
        ({"TracingConfig": ["Active"]}, "'tracingConfig'"),
    ],
)
def test_every_structure_is_type_checked(
    server: Server, deploy: Any, settings: dict[str, Any], member: str
) -> None:
    name = deploy("def handler(e, c): return 1\n")["FunctionName"]
    response = server.http.put(f"{API}/{name}/configuration", json=settings)
    status, code, message = raw_error(response)
    assert (status, code) == (400, "ValidationException")
    assert f"at {member}" in message


def test_an_environment_value_over_4kb_names_the_limit_not_a_key(aws: Any, deploy: Any) -> None:
    name = deploy("def handler(e, c): return 1\n")["FunctionName"]
    with pytest.raises(ClientError) as raised:
        aws.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"BIG": "v" * 5000}}
        )
    code, status, message = error_of(raised)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "exceeded the 4KB limit" in message
    assert "Map keys" not in message


def test_dead_letters_of_a_deleted_function_do_not_reappear(
    server: Server, aws: Any, deploy: Callable[..., dict[str, Any]], unique_name: str
) -> None:
    name = deploy(ALWAYS_FAILS, name=f"{unique_name}-dl")["FunctionName"]
    aws.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    aws.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    wait_until(lambda: dead_letters(server, name))
    aws.delete_function(FunctionName=name)
    deploy("def handler(e, c): return 1\n", name=name)
    assert dead_letters(server, name) == []

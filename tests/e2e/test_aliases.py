"""Aliases end to end: boto3 against a real `ember serve`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from e2e_helpers import function_arn, request_id_of

from conftest import Server, lambda_client, make_zip

Deploy = Callable[..., dict[str, Any]]

LABELLED = """
def handler(event, context):
    return {"label": LABEL, "version": context.function_version,
            "arn": context.invoked_function_arn}
"""


def source(label: str) -> str:
    return f"LABEL = {label!r}\n{LABELLED}"


def two_versions(aws: Any, deploy: Deploy) -> str:
    """A function with version 1 ("one") and version 2 ("two"); $LATEST is "two"."""
    name = deploy(source("one"), Publish=True)["FunctionName"]
    aws.update_function_code(
        FunctionName=name, ZipFile=make_zip({"app.py": source("two")}), Publish=True
    )
    return str(name)


def called(aws: Any, name: str, **params: Any) -> tuple[str, dict[str, Any]]:
    response = aws.invoke(FunctionName=name, Payload=b"{}", **params)
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return response["ExecutedVersion"], body


def message(error: ClientError) -> str:
    return str(error.response["Error"]["Message"])


def test_alias_lifecycle(aws: Any, deploy: Deploy) -> None:
    name = two_versions(aws, deploy)
    arn = function_arn(name) + ":live"

    created = aws.create_alias(
        FunctionName=name, Name="live", FunctionVersion="1", Description="production"
    )
    fetched = aws.get_alias(FunctionName=name, Name="live")
    updated = aws.update_alias(
        FunctionName=name, Name="live", FunctionVersion="2", RevisionId=created["RevisionId"]
    )
    aws.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    everything = aws.list_aliases(FunctionName=name)["Aliases"]
    on_one = aws.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    deleted = aws.delete_alias(FunctionName=name, Name="live")

    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    request_id_of(created)
    assert (created["AliasArn"], created["Name"], created["FunctionVersion"]) == (arn, "live", "1")
    assert created["Description"] == "production" and "RoutingConfig" not in created
    assert fetched["RevisionId"] == created["RevisionId"]
    assert updated["FunctionVersion"] == "2" and updated["Description"] == "production"
    assert updated["RevisionId"] != created["RevisionId"]
    assert [a["Name"] for a in everything] == ["live", "old"]
    assert [a["Name"] for a in on_one] == ["old"]
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [a["Name"] for a in aws.list_aliases(FunctionName=name)["Aliases"]] == ["old"]


def test_alias_errors(aws: Any, deploy: Deploy) -> None:
    name = two_versions(aws, deploy)
    aws.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    with pytest.raises(aws.exceptions.ResourceConflictException) as duplicate:
        aws.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert duplicate.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert message(duplicate.value) == f"Alias already exists: {function_arn(name)}:live"
    for call in (
        lambda: aws.get_alias(FunctionName=name, Name="nope"),
        lambda: aws.update_alias(FunctionName=name, Name="nope", FunctionVersion="1"),
        lambda: aws.delete_alias(FunctionName=name, Name="nope"),
    ):
        with pytest.raises(aws.exceptions.ResourceNotFoundException) as missing:
            call()
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert message(missing.value) == f"Cannot find alias arn: {function_arn(name)}:nope"
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as no_version:
        aws.create_alias(FunctionName=name, Name="x", FunctionVersion="9")
    assert message(no_version.value) == f"Function not found: {function_arn(name)}:9"
    with pytest.raises(aws.exceptions.PreconditionFailedException):
        aws.update_alias(FunctionName=name, Name="live", RevisionId="wrong")
    with pytest.raises(ClientError) as digits:
        aws.create_alias(FunctionName=name, Name="123", FunctionVersion="1")
    assert digits.value.response["Error"]["Code"] == "ValidationException"


def test_routing_config_validation(server: Server, aws: Any, deploy: Deploy) -> None:
    name = two_versions(aws, deploy)
    # boto3 refuses some weights itself; the server must refuse them on its own too.
    lax = lambda_client(server, parameter_validation=False)

    def refused(weights: dict[str, Any], version: str = "1") -> tuple[str, str]:
        with pytest.raises(ClientError) as caught:
            lax.create_alias(
                FunctionName=name,
                Name="custom",
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": weights},
            )
        return caught.value.response["Error"]["Code"], message(caught.value)

    assert refused({"1": 0.8, "2": 0.2}) == (
        "InvalidParameterValueException",
        "Number of items in AdditionalVersionWeights cannot be greater than 1",
    )
    code, text = refused({"2": 2})
    assert code == "ValidationException" and "Value '{2=2}' at 'routingConfig" in text
    assert refused({"2": -1})[0] == "ValidationException"
    assert refused({"1": 0.5}) == (
        "InvalidParameterValueException",
        "Invalid function version 1. Function version 1 is already included in routing "
        "configuration.",
    )
    assert refused({"1": 0.5}, version="$LATEST") == (
        "InvalidParameterValueException",
        "$LATEST is not supported for an alias pointing to more than 1 version",
    )
    assert refused({"$LATEST": 0.5})[0] == "ValidationException"
    assert refused({"10": 0.5}) == (
        "ResourceNotFoundException",
        f"Function not found: {function_arn(name)}:10",
    )
    empty = lax.create_alias(
        FunctionName=name,
        Name="empty",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {}},
    )
    assert "RoutingConfig" not in empty
    lax.close()


def test_invoking_an_alias_runs_its_version(aws: Any, deploy: Deploy) -> None:
    name = two_versions(aws, deploy)
    aws.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    aws.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")

    executed, result = called(aws, name, Qualifier="live")
    by_arn = called(aws, function_arn(name) + ":live")
    moved = aws.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    after_move = called(aws, f"{name}:live")

    assert (executed, result["label"], result["version"]) == ("1", "one", "1")
    assert result["arn"] == function_arn(name) + ":live"
    assert by_arn[0] == "1"
    assert moved["FunctionVersion"] == "2"
    assert (after_move[0], after_move[1]["label"]) == ("2", "two")
    assert called(aws, name, Qualifier="edge")[0] == "$LATEST"
    configuration = aws.get_function_configuration(FunctionName=name, Qualifier="live")
    assert configuration["FunctionArn"] == function_arn(name) + ":live"
    assert configuration["Version"] == "2"
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
        aws.invoke(FunctionName=name, Qualifier="nope")
    assert message(caught.value) == f"Function not found: {function_arn(name)}:nope"


def test_weighted_alias_splits_traffic(aws: Any, deploy: Deploy) -> None:
    name = two_versions(aws, deploy)
    alias = aws.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}},
    )
    calls = 400

    runs = [called(aws, name, Qualifier="canary") for _ in range(calls)]
    versions = Counter(executed for executed, _ in runs)
    labels = {executed: body["label"] for executed, body in runs}

    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    assert set(versions) == {"1", "2"}
    assert labels == {"1": "one", "2": "two"}  # the reported version is the one that ran
    # Binomial(400, 0.3): mean 120, standard deviation 9.2; six deviations either side
    # fails once in ~500 million runs.
    assert 65 <= versions["2"] <= 175, versions
    assert versions["1"] + versions["2"] == calls

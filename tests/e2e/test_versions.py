"""Published versions end to end: boto3 against a real `ember serve`."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from async_helpers import ALWAYS_FAILS, DESTINATION_PRINTER, dead_letters, records
from e2e_helpers import (
    TOKEN_SOURCE,
    code_sha256,
    function_arn,
    invoke_json,
    request_id_of,
)

from conftest import ROLE, Server, lambda_client, wait_until

Deploy = Callable[..., dict[str, Any]]

# Reports which version ran, as the function itself sees it.
DESCRIBE = (
    TOKEN_SOURCE
    + """
import os

def handler(event, context):
    return {
        "label": LABEL,
        "token": TOKEN,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "env": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
        "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
    }
"""
)


def describe(label: str) -> str:
    return f"LABEL = {label!r}\n{DESCRIBE}"


def package(label: str) -> bytes:
    """The zip of ``describe(label)``, the same bytes every time (a fixed timestamp)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("app.py", (2026, 1, 1, 0, 0, 0)), describe(label))
    return buffer.getvalue()


def without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def called(aws: Any, name: str, **params: Any) -> tuple[str, dict[str, Any]]:
    """(X-Amz-Executed-Version, decoded result) of one synchronous call."""
    response = aws.invoke(FunctionName=name, Payload=b"{}", **params)
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return response["ExecutedVersion"], body


def test_publish_version_freezes_code_and_configuration(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    created = deploy(describe("one"), Environment={"Variables": {"STAGE": "1"}})
    name = created["FunctionName"]
    first = aws.publish_version(FunctionName=name, Description="first release")

    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    request_id_of(first)
    assert first["Version"] == "1"
    assert first["FunctionArn"] == function_arn(name) + ":1"
    assert first["Description"] == "first release"
    assert first["CodeSha256"] == created["CodeSha256"]
    assert first["Environment"] == {"Variables": {"STAGE": "1"}}
    assert "LastUpdateStatus" not in first
    # Nothing changed in $LATEST: publishing again returns the same version.
    again = aws.publish_version(FunctionName=name)
    assert (again["Version"], again["RevisionId"]) == ("1", first["RevisionId"])

    aws.update_function_code(FunctionName=name, ZipFile=package("two"))
    aws.update_function_configuration(FunctionName=name, Environment={"Variables": {"STAGE": "2"}})

    version = aws.get_function(FunctionName=name, Qualifier="1")
    assert version["Configuration"] == without_metadata(first)
    zipped = server.http.get(version["Code"]["Location"], timeout=30).content
    assert code_sha256(zipped) == created["CodeSha256"]
    by_arn = aws.get_function_configuration(FunctionName=function_arn(name) + ":1")
    assert by_arn["Environment"] == {"Variables": {"STAGE": "1"}}
    latest = aws.get_function_configuration(FunctionName=name, Qualifier="$LATEST")
    assert latest["FunctionArn"] == function_arn(name) + ":$LATEST"
    assert latest["Environment"] == {"Variables": {"STAGE": "2"}}


def test_invoke_a_version_by_qualifier_name_or_arn(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(describe("one"), Publish=True)["FunctionName"]
    aws.update_function_code(FunctionName=name, ZipFile=package("two"))

    for target, params in (
        (name, {"Qualifier": "1"}),
        (f"{name}:1", {}),
        (function_arn(name) + ":1", {}),
    ):
        executed, result = called(aws, target, **params)
        assert executed == "1"
        assert result["label"] == "one"
        assert (result["version"], result["env"]) == ("1", "1")
        assert result["arn"] == function_arn(name) + ":1"
        assert "/[1]" in result["stream"]
    executed, result = called(aws, name)
    assert (executed, result["label"], result["version"]) == ("$LATEST", "two", "$LATEST")
    assert result["arn"] == function_arn(name) and "/[$LATEST]" in result["stream"]

    response = aws.invoke(FunctionName=name, Qualifier="1", LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    assert f"START RequestId: {response['ResponseMetadata']['RequestId']} Version: 1" in tail
    logs = server.http.get(f"/_ember/functions/{name}/logs", timeout=10)
    assert " Version: 1\n" in logs.json()["logs"]


def test_publish_keeps_latest_warm_and_updates_keep_versions_warm(aws: Any, deploy: Deploy) -> None:
    created = deploy(describe("one"))
    name = created["FunctionName"]
    _, before = called(aws, name)
    aws.publish_version(FunctionName=name)
    # Lambda gives $LATEST a new RevisionId when a version is published from it.
    assert (
        aws.get_function(FunctionName=name)["Configuration"]["RevisionId"]
        != (created["RevisionId"])
    )

    _, after = called(aws, name)
    _, v1 = called(aws, name, Qualifier="1")
    aws.update_function_configuration(FunctionName=name, Timeout=10)
    _, v1_again = called(aws, name, Qualifier="1")

    assert after["token"] == before["token"]  # the same warm $LATEST sandbox
    assert v1["token"] != before["token"]  # a version runs in sandboxes of its own
    assert v1_again["token"] == v1["token"]  # not retired by a change to $LATEST


def test_publish_errors(aws: Any, deploy: Deploy) -> None:
    created = deploy(describe("one"))
    name = created["FunctionName"]

    with pytest.raises(aws.exceptions.InvalidParameterValueException) as caught:
        aws.publish_version(FunctionName=name, CodeSha256="wrong")
    assert caught.value.response["Error"]["Message"] == (
        f"CodeSHA256 (wrong) is different from current CodeSHA256 in $LATEST "
        f"({created['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST."
    )
    with pytest.raises(aws.exceptions.PreconditionFailedException):
        aws.publish_version(FunctionName=name, RevisionId="wrong")
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as missing:
        aws.publish_version(FunctionName=name + "-nope")
    assert missing.value.response["Error"]["Message"] == (
        f"Function not found: {function_arn(name + '-nope')}"
    )
    published = aws.publish_version(
        FunctionName=name, CodeSha256=created["CodeSha256"], RevisionId=created["RevisionId"]
    )
    assert published["Version"] == "1"


def test_publish_on_create_and_on_update_code(aws: Any, deploy: Deploy) -> None:
    created = deploy(describe("one"), Publish=True)
    name = created["FunctionName"]
    updated = aws.update_function_code(FunctionName=name, ZipFile=package("two"), Publish=True)

    assert created["Version"] == "1" and created["FunctionArn"] == function_arn(name)
    assert updated["Version"] == "2" and updated["FunctionArn"] == function_arn(name) + ":2"
    assert updated["CodeSha256"] == code_sha256(package("two"))
    assert called(aws, name, Qualifier="1")[1]["label"] == "one"
    assert called(aws, name, Qualifier="2")[1]["label"] == "two"


def test_list_versions_pages_with_latest_first(aws: Any, deploy: Deploy) -> None:
    name = deploy(describe("one"), Publish=True)["FunctionName"]
    for timeout in (5, 6, 7):
        aws.update_function_configuration(FunctionName=name, Timeout=timeout)
        aws.publish_version(FunctionName=name)

    first = aws.list_versions_by_function(FunctionName=name, MaxItems=2)
    pages = aws.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 2}
    )
    listed = [v for page in pages for v in page["Versions"]]

    assert [v["Version"] for v in first["Versions"]] == ["$LATEST", "1"]
    assert first["NextMarker"]
    assert [v["Version"] for v in listed] == ["$LATEST", "1", "2", "3", "4"]
    assert [v["Timeout"] for v in listed] == [7, 3, 5, 6, 7]
    assert listed[0]["FunctionArn"] == function_arn(name) + ":$LATEST"
    assert listed[3]["FunctionArn"] == function_arn(name) + ":3"


def test_list_functions_with_all_versions(aws: Any, deploy: Deploy) -> None:
    name = deploy(describe("one"), Publish=True)["FunctionName"]

    pages = aws.get_paginator("list_functions").paginate(
        FunctionVersion="ALL", PaginationConfig={"PageSize": 1}
    )
    every = [f["FunctionArn"] for page in pages for f in page["Functions"]]
    plain = [f["FunctionArn"] for f in aws.list_functions()["Functions"]]

    assert [arn for arn in every if f":{name}:" in arn] == [
        function_arn(name) + ":$LATEST",
        function_arn(name) + ":1",
    ]
    assert function_arn(name) in plain and function_arn(name) + ":1" not in plain


def test_delete_one_version(aws: Any, deploy: Deploy) -> None:
    name = deploy(describe("one"), Publish=True)["FunctionName"]
    aws.update_function_code(FunctionName=name, ZipFile=package("two"), Publish=True)

    deleted = aws.delete_function(FunctionName=name, Qualifier="1")
    # Deleting a version that is not there succeeds, as on Lambda.
    again = aws.delete_function(FunctionName=f"{name}:1")

    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (
        lambda: aws.get_function(FunctionName=name, Qualifier="1"),
        lambda: aws.invoke(FunctionName=name, Qualifier="1"),
    ):
        with pytest.raises(aws.exceptions.ResourceNotFoundException) as caught:
            call()
        assert caught.value.response["Error"]["Message"] == (
            f"Function not found: {function_arn(name)}:1"
        )
    versions = aws.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "2"]
    assert called(aws, name, Qualifier="2")[1]["label"] == "two"
    # Numbers are never reused.
    aws.update_function_configuration(FunctionName=name, Timeout=9)
    assert aws.publish_version(FunctionName=name)["Version"] == "3"


def test_a_version_an_alias_points_to_cannot_be_deleted(aws: Any, deploy: Deploy) -> None:
    name = deploy(describe("one"), Publish=True)["FunctionName"]
    aws.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    with pytest.raises(aws.exceptions.ResourceConflictException) as caught:
        aws.delete_function(FunctionName=name, Qualifier="1")

    assert caught.value.response["Error"]["Message"] == (
        "Unable to delete version because the following aliases reference it: [live]"
    )
    assert called(aws, name, Qualifier="1")[0] == "1"
    # Without a qualifier the function goes with its versions and aliases.
    aws.delete_function(FunctionName=name)
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_alias(FunctionName=name, Name="live")


def test_async_event_keeps_its_version(server: Server, aws: Any, deploy: Deploy) -> None:
    destination = deploy(DESTINATION_PRINTER)["FunctionName"]
    name = deploy(describe("one"), Publish=True)["FunctionName"]
    aws.update_function_code(FunctionName=name, ZipFile=package("two"))
    aws.put_function_event_invoke_config(
        FunctionName=name,
        Qualifier="1",
        DestinationConfig={"OnSuccess": {"Destination": function_arn(destination)}},
    )

    sent = aws.invoke(FunctionName=name, Qualifier="1", InvocationType="Event", Payload=b"{}")

    assert sent["StatusCode"] == 202
    (record,) = wait_until(lambda: records(server, destination))
    assert record["requestContext"]["requestId"] == request_id_of(sent)
    assert record["requestContext"]["functionArn"] == function_arn(name) + ":1"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "1"}
    assert record["responsePayload"]["label"] == "one"
    config = aws.get_function_event_invoke_config(FunctionName=name, Qualifier="1")
    assert config["FunctionArn"] == function_arn(name) + ":1"


def test_a_versions_event_follows_its_own_config_and_dead_letters_apart(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(ALWAYS_FAILS, Publish=True)["FunctionName"]
    aws.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    # No retry for the alias's events (the function's own default would wait a minute).
    aws.put_function_event_invoke_config(
        FunctionName=name, Qualifier="live", MaximumRetryAttempts=0
    )

    sent = aws.invoke(FunctionName=f"{name}:live", InvocationType="Event", Payload=b"{}")

    (letter,) = wait_until(lambda: dead_letters(server, f"{name}:live"))
    assert letter["requestId"] == request_id_of(sent)
    assert (letter["condition"], letter["approximateInvokeCount"]) == ("RetriesExhausted", 1)
    assert letter["errorType"] == "ValueError"
    assert dead_letters(server, name) == []


def test_versions_and_aliases_survive_a_restart(
    spawn_server: Callable[..., Server], unique_name: str
) -> None:
    server = spawn_server()
    aws = lambda_client(server)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": package("one")},
        Publish=True,
    )
    aws.update_function_code(FunctionName=unique_name, ZipFile=package("two"), Publish=True)
    aws.update_function_code(FunctionName=unique_name, ZipFile=package("three"), Publish=True)
    aws.delete_function(FunctionName=unique_name, Qualifier="3")
    alias = aws.create_alias(
        FunctionName=unique_name,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}},
    )
    aws.close()
    server.stop()

    again = spawn_server(server.data_dir)
    aws = lambda_client(again)
    versions = aws.list_versions_by_function(FunctionName=unique_name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert without_metadata(aws.get_alias(FunctionName=unique_name, Name="live")) == (
        without_metadata(alias)
    )
    assert called(aws, unique_name, Qualifier="1")[1]["label"] == "one"
    assert called(aws, unique_name, Qualifier="2")[1]["label"] == "two"
    assert invoke_json(aws, unique_name)["label"] == "three"
    assert called(aws, unique_name, Qualifier="live")[0] in ("1", "2")
    aws.update_function_configuration(FunctionName=unique_name, Timeout=8)
    assert aws.publish_version(FunctionName=unique_name)["Version"] == "4"
    aws.close()

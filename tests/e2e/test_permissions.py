"""End-to-end: resource policies (AddPermission, GetPolicy, RemovePermission) with boto3,
and function URLs of AuthType AWS_IAM called with botocore-signed requests.

The URL tests sign with the credentials ember writes to ``<data-dir>/credentials`` at
first start and create a user through ``POST /_ember/keys``: they need the SigV4
guard and the account store (helpers "authn" and "accounts") wired in.
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from e2e_helpers import ACCOUNT, REGION, function_arn

from conftest import Server

HANDLER = """
def handler(event, context):
    return {"statusCode": 200, "body": "hello " + event["rawPath"]}
"""
OTHER = "123456789012"


def test_add_get_remove_permission_in_lambdas_shapes(aws: Any, deploy: Callable[..., Any]) -> None:
    name = deploy(HANDLER)["FunctionName"]
    added = aws.add_permission(
        FunctionName=name,
        StatementId="from-s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::uploads",
        SourceAccount=ACCOUNT,
    )
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(added["Statement"]) == {
        "Sid": "from-s3",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": function_arn(name),
        "Condition": {
            "StringEquals": {"AWS:SourceAccount": ACCOUNT},
            "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::uploads"},
        },
    }
    account = aws.add_permission(
        FunctionName=name, StatementId="peer", Action="lambda:GetFunction", Principal=OTHER
    )
    assert json.loads(account["Statement"])["Principal"] == {"AWS": f"arn:aws:iam::{OTHER}:root"}

    got = aws.get_policy(FunctionName=name)
    policy = json.loads(got["Policy"])
    assert policy["Version"] == "2012-10-17"
    assert [s["Sid"] for s in policy["Statement"]] == ["from-s3", "peer"]
    assert got["RevisionId"]

    removed = aws.remove_permission(
        FunctionName=name, StatementId="peer", RevisionId=got["RevisionId"]
    )
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    policy = json.loads(aws.get_policy(FunctionName=name)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["from-s3"]


def test_permission_errors_are_lambdas(aws: Any, deploy: Callable[..., Any]) -> None:
    name = deploy(HANDLER)["FunctionName"]
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as none:
        aws.get_policy(FunctionName=name)
    assert "No policy is associated with the given resource." in str(none.value)
    statement = {"Action": "lambda:InvokeFunction", "Principal": OTHER}
    aws.add_permission(FunctionName=name, StatementId="a", **statement)
    with pytest.raises(aws.exceptions.ResourceConflictException) as duplicate:
        aws.add_permission(FunctionName=name, StatementId="a", **statement)
    assert (
        "The statement id (a) provided already exists. Please provide a new statement id, "
        "or remove the existing statement."
    ) in str(duplicate.value)
    with pytest.raises(aws.exceptions.PreconditionFailedException):
        aws.add_permission(FunctionName=name, StatementId="b", RevisionId="stale", **statement)
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.remove_permission(FunctionName=name, StatementId="missing")
    with pytest.raises(aws.exceptions.ResourceNotFoundException) as no_function:
        aws.add_permission(FunctionName=name + "-gone", StatementId="a", **statement)
    assert "Function not found" in str(no_function.value)
    aws.remove_permission(FunctionName=name, StatementId="a")
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_policy(FunctionName=name)


def test_an_aliass_policy_is_its_own_and_goes_with_it(aws: Any, deploy: Callable[..., Any]) -> None:
    name = deploy(HANDLER)["FunctionName"]
    aws.publish_version(FunctionName=name)
    aws.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    added = aws.add_permission(
        FunctionName=name,
        Qualifier="prod",
        StatementId="a",
        Action="lambda:InvokeFunction",
        Principal=OTHER,
    )
    assert json.loads(added["Statement"])["Resource"] == function_arn(name) + ":prod"
    assert aws.get_policy(FunctionName=f"{name}:prod")["Policy"]
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_policy(FunctionName=name)
    aws.delete_alias(FunctionName=name, Name="prod")
    aws.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_policy(FunctionName=name, Qualifier="prod")


# --- function URLs of AuthType AWS_IAM ------------------------------------------------


def root_credentials(server: Server) -> Credentials:
    """The default account's root key, as ember wrote it at first start."""
    profiles = configparser.ConfigParser()
    profiles.read(server.data_dir / "credentials")
    profile = profiles["ember"]
    return Credentials(profile["aws_access_key_id"], profile["aws_secret_access_key"])


def send(
    credentials: Credentials | None,
    method: str,
    url: str,
    body: bytes = b"",
    presign: bool = False,
) -> httpx.Response:
    """``method url`` signed with ``credentials`` (SigV4, service lambda), or unsigned."""
    request = AWSRequest(method=method, url=url, data=body)
    if credentials is not None:
        signer = (
            SigV4QueryAuth(credentials, "lambda", REGION, expires=300)
            if presign
            else SigV4Auth(credentials, "lambda", REGION)
        )
        signer.add_auth(request)
    prepared = request.prepare()
    return httpx.request(
        method, prepared.url, headers=dict(prepared.headers), content=body, timeout=60
    )


def create_user(server: Server, name: str, policy: dict[str, Any] | None) -> Credentials:
    body: dict[str, Any] = {"UserName": name}
    if policy is not None:
        body["Policy"] = json.dumps(policy)
    response = send(
        root_credentials(server), "POST", server.url + "/_ember/keys", json.dumps(body).encode()
    )
    assert response.status_code == 201, response.text
    created = response.json()
    return Credentials(created["AccessKeyId"], created["SecretAccessKey"])


@pytest.fixture
def iam_url(aws: Any, deploy: Callable[..., Any]) -> tuple[str, str]:
    """(function name, URL) of a function whose URL has AuthType AWS_IAM."""
    name = deploy(HANDLER)["FunctionName"]
    url = aws.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    return name, str(url)


def test_an_iam_url_answers_signed_requests_only(server: Server, iam_url: tuple[str, str]) -> None:
    _, url = iam_url
    unsigned = httpx.get(url + "hi", timeout=60)
    assert unsigned.status_code == 403 and unsigned.json() == {"Message": "Forbidden"}
    root = root_credentials(server)
    signed = send(root, "POST", url + "hi", b'{"a": 1}')
    assert (signed.status_code, signed.text) == (200, "hello /hi")
    presigned = send(root, "GET", url + "there", presign=True)
    assert (presigned.status_code, presigned.text) == (200, "hello /there")
    forged = Credentials(root.access_key, "not-the-secret")
    assert send(forged, "GET", url + "hi").status_code == 403


def test_a_user_of_an_iam_url_needs_a_policy(
    server: Server, aws: Any, iam_url: tuple[str, str], unique_name: str
) -> None:
    name, url = iam_url
    allowed = create_user(
        server,
        unique_name[:40] + "-a",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "lambda:InvokeFunctionUrl",
                    "Resource": function_arn(name),
                }
            ],
        },
    )
    assert send(allowed, "GET", url + "x").status_code == 200
    stranger_name = unique_name[:40] + "-b"
    stranger = create_user(server, stranger_name, None)
    refused = send(stranger, "GET", url + "x")
    assert refused.status_code == 403 and refused.json() == {"Message": "Forbidden"}
    aws.add_permission(
        FunctionName=name,
        StatementId="user-b",
        Action="lambda:InvokeFunctionUrl",
        Principal=f"arn:aws:iam::{ACCOUNT}:user/{stranger_name}",
        FunctionUrlAuthType="AWS_IAM",
    )
    assert send(stranger, "GET", url + "x").status_code == 200


def test_a_none_url_stays_public(aws: Any, deploy: Callable[..., Any]) -> None:
    name = deploy(HANDLER)["FunctionName"]
    url = aws.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    response = httpx.get(url + "open", timeout=60)
    assert (response.status_code, response.text) == (200, "hello /open")

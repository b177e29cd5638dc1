"""Code from the users' own S3 bucket (``ember serve --code-s3-endpoint``), as SAM, CDK
and Terraform deploy: a zip uploaded to a real S3 server (SeaweedFS), then
CreateFunction / UpdateFunctionCode / PublishLayerVersion naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from e2e_helpers import code_sha256, shared_credentials_file

from conftest import ROLE, S3Endpoint, Server, lambda_client, make_zip

AWS = str(Path(sys.executable).parent / "aws")


def source(answer: str) -> str:
    return f"def handler(event, context):\n    return {answer!r}\n"


@pytest.fixture(scope="module")
def bucket(s3_endpoint: S3Endpoint) -> Iterator[tuple[Any, str]]:
    """(an S3 client of the users' store, a fresh bucket in it)."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint.url,
        region_name="us-east-1",
        aws_access_key_id=s3_endpoint.key,
        aws_secret_access_key=s3_endpoint.secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )
    name = f"user-code-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    yield client, name
    client.close()


@pytest.fixture
def s3_server(
    spawn_server: Callable[..., Server],
    s3_endpoint: S3Endpoint,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Server:
    """A server reading users' code from ``s3_endpoint``, with the store's credentials in
    its environment (the usual AWS variables, as an operator sets them)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret)
    return spawn_server(tmp_path / "data", "--code-s3-endpoint", s3_endpoint.url)


def invoke(aws: Any, name: str, qualifier: str | None = None) -> Any:
    extra = {"Qualifier": qualifier} if qualifier else {}
    answer = aws.invoke(FunctionName=name, Payload=b"{}", **extra)
    assert "FunctionError" not in answer, answer["Payload"].read()
    return json.loads(answer["Payload"].read())


def test_create_and_update_from_s3_then_invoke(s3_server: Server, bucket: tuple[Any, str]) -> None:
    s3, name = bucket
    first, second = make_zip({"app.py": source("one")}), make_zip({"app.py": source("two")})
    s3.put_object(Bucket=name, Key="builds/one.zip", Body=first)
    s3.put_object(Bucket=name, Key="builds/two.zip", Body=second)
    aws = lambda_client(s3_server)

    created = aws.create_function(
        FunctionName="from-s3",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"S3Bucket": name, "S3Key": "builds/one.zip"},
    )
    assert created["CodeSha256"] == code_sha256(first)
    assert created["CodeSize"] == len(first)
    assert invoke(aws, "from-s3") == "one"

    updated = aws.update_function_code(
        FunctionName="from-s3", S3Bucket=name, S3Key="builds/two.zip", Publish=True
    )
    assert updated["CodeSha256"] == code_sha256(second)
    assert invoke(aws, "from-s3") == "two"
    assert invoke(aws, "from-s3", updated["Version"]) == "two"


def test_a_missing_object_or_bucket_is_refused_as_lambda_does(
    s3_server: Server, bucket: tuple[Any, str]
) -> None:
    _, name = bucket
    aws = lambda_client(s3_server)
    settings = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE}
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as missing_key:
        aws.create_function(
            FunctionName="nokey", Code={"S3Bucket": name, "S3Key": "absent.zip"}, **settings
        )
    assert missing_key.value.response["Error"]["Message"] == (
        "Error occurred while GetObject. S3 Error Code: NoSuchKey. "
        "S3 Error Message: The specified key does not exist."
    )
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as missing_bucket:
        aws.create_function(
            FunctionName="nobucket",
            Code={"S3Bucket": f"absent-{uuid.uuid4().hex[:8]}", "S3Key": "a.zip"},
            **settings,
        )
    assert missing_bucket.value.response["Error"]["Message"] == (
        "Error occurred while GetObject. S3 Error Code: NoSuchBucket. "
        "S3 Error Message: The specified bucket does not exist"
    )
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_function(FunctionName="nokey")


def test_an_object_that_is_not_a_zip_is_judged_as_an_upload(
    s3_server: Server, bucket: tuple[Any, str]
) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="not-a-zip", Body=b"plain text, not a package")
    aws = lambda_client(s3_server)
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        aws.create_function(
            FunctionName="notzip",
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"S3Bucket": name, "S3Key": "not-a-zip"},
        )
    assert refused.value.response["Error"]["Message"].startswith("Could not unzip uploaded file")


def test_a_layer_from_s3_is_used_by_a_function(s3_server: Server, bucket: tuple[Any, str]) -> None:
    s3, name = bucket
    s3.put_object(
        Bucket=name, Key="layer.zip", Body=make_zip({"python/shared.py": "WORD = 'layered'\n"})
    )
    aws = lambda_client(s3_server)
    layer = aws.publish_layer_version(
        LayerName="from-s3", Content={"S3Bucket": name, "S3Key": "layer.zip"}
    )
    aws.create_function(
        FunctionName="uses-layer",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={
            "ZipFile": make_zip(
                {"app.py": "import shared\ndef handler(e, c):\n    return shared.WORD\n"}
            )
        },
        Layers=[layer["LayerVersionArn"]],
    )
    assert invoke(aws, "uses-layer") == "layered"


def test_a_version_of_a_versioned_object_is_the_one_deployed(
    s3_server: Server, bucket: tuple[Any, str]
) -> None:
    s3, name = bucket
    versioned = f"{name}-versions"
    s3.create_bucket(Bucket=versioned)
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=versioned, Key="app.zip", Body=make_zip({"app.py": source("old")}))
    s3.put_object(Bucket=versioned, Key="app.zip", Body=make_zip({"app.py": source("new")}))
    assert old.get("VersionId"), "the S3 server gave no version id"
    aws = lambda_client(s3_server)
    aws.create_function(
        FunctionName="pinned",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"S3Bucket": versioned, "S3Key": "app.zip", "S3ObjectVersion": old["VersionId"]},
    )
    assert invoke(aws, "pinned") == "old"
    aws.update_function_code(FunctionName="pinned", S3Bucket=versioned, S3Key="app.zip")
    assert invoke(aws, "pinned") == "new"


def test_the_aws_cli_creates_a_function_from_s3(
    s3_server: Server, bucket: tuple[Any, str], tmp_path: Path
) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="cli.zip", Body=make_zip({"app.py": source("cli")}))
    home = tmp_path / "cli-home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") or key == "AWS_DATA_PATH"
    }
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(shared_credentials_file(s3_server, home)),
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_PROFILE="ember",
        HOME=str(home),
    )
    command = [AWS, "--endpoint-url", s3_server.url, "--region", "us-east-1", "lambda"]
    created = subprocess.run(
        [
            *command,
            "create-function",
            "--function-name",
            "cli-s3",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--role",
            ROLE,
            "--code",
            f"S3Bucket={name},S3Key=cli.zip",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["FunctionName"] == "cli-s3"
    assert invoke(lambda_client(s3_server), "cli-s3") == "cli"


def test_without_the_option_s3_code_is_refused_saying_how_to_enable_it(aws: Any) -> None:
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        aws.create_function(
            FunctionName="no-s3",
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"S3Bucket": "some-bucket", "S3Key": "app.zip"},
        )
    assert "--code-s3-endpoint" in refused.value.response["Error"]["Message"]

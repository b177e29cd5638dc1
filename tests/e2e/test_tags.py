"""Tags of functions through boto3 and the AWS CLI: CreateFunction's Tags, TagResource,
UntagResource, ListTags, GetFunction's Tags; Lambda's limits and errors; kept across a
restart; audited and authorized as any change is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from e2e_helpers import function_arn, shared_credentials_file

from conftest import ROLE, Server, lambda_client, make_zip, wait_until

AWS = str(Path(sys.executable).parent / "aws")
SOURCE = "def handler(event, context):\n    return event\n"


def create(aws: Any, name: str, **settings: Any) -> dict[str, Any]:
    return dict(
        aws.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": SOURCE})},
            **settings,
        )
    )


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return error["Code"], error["Message"]


def test_create_tag_untag_and_list(aws: Any, unique_name: str) -> None:
    created = create(aws, unique_name, Tags={"team": "shop", "env": "dev"})
    arn = created["FunctionArn"]
    assert aws.get_function(FunctionName=unique_name)["Tags"] == {"team": "shop", "env": "dev"}

    aws.tag_resource(Resource=arn, Tags={"env": "prod", "cost-center": "42"})
    assert aws.list_tags(Resource=arn)["Tags"] == {
        "team": "shop",
        "env": "prod",
        "cost-center": "42",
    }
    aws.untag_resource(Resource=arn, TagKeys=["team", "cost-center", "absent"])
    assert aws.list_tags(Resource=arn)["Tags"] == {"env": "prod"}

    # Tags are the function's: a version carries them in GetFunction, and tagging
    # changes neither the configuration's RevisionId nor what runs.
    version = aws.publish_version(FunctionName=unique_name)["Version"]
    assert aws.get_function(FunctionName=unique_name, Qualifier=version)["Tags"] == {"env": "prod"}
    before = aws.get_function_configuration(FunctionName=unique_name)["RevisionId"]
    aws.tag_resource(Resource=arn, Tags={"late": "yes"})
    assert aws.get_function_configuration(FunctionName=unique_name)["RevisionId"] == before

    aws.delete_function(FunctionName=unique_name)
    create(aws, unique_name)  # the same name again starts untagged
    assert aws.list_tags(Resource=arn)["Tags"] == {}
    aws.delete_function(FunctionName=unique_name)


def test_lambda_errors_and_limits(aws: Any, unique_name: str) -> None:
    arn = create(aws, unique_name)["FunctionArn"]
    aws.publish_version(FunctionName=unique_name)
    assert error_of(lambda: aws.tag_resource(Resource=f"{arn}:1", Tags={"a": "b"})) == (
        "InvalidParameterValueException",
        "Tags on function aliases and versions are not supported. Please specify a function ARN.",
    )
    missing = function_arn(f"absent-{uuid.uuid4().hex[:6]}")
    assert error_of(lambda: aws.list_tags(Resource=missing)) == (
        "ResourceNotFoundException",
        f"Function not found: {missing}",
    )
    code, _ = error_of(lambda: aws.list_tags(Resource="arn:aws:lambda:us-east-1:1:function:x"))
    assert code == "ValidationException"
    many = {f"k{i}": "v" for i in range(51)}
    assert error_of(lambda: aws.tag_resource(Resource=arn, Tags=many)) == (
        "InvalidParameterValueException",
        "Number of tags exceeds resource tag limit.",
    )
    aws.tag_resource(Resource=arn, Tags={f"k{i}": "v" for i in range(50)})
    assert error_of(lambda: aws.tag_resource(Resource=arn, Tags={"one-more": "v"}))[0] == (
        "InvalidParameterValueException"
    )
    code, message = error_of(lambda: aws.tag_resource(Resource=arn, Tags={"aws:owner": "me"}))
    assert code == "InvalidParameterValueException" and "aws:" in message
    assert error_of(lambda: aws.tag_resource(Resource=arn, Tags={"k" * 129: "v"}))[0] == (
        "ValidationException"
    )
    assert error_of(lambda: aws.tag_resource(Resource=arn, Tags={"k": "v" * 257}))[0] == (
        "ValidationException"
    )
    code, _ = error_of(lambda: create(aws, f"{unique_name}-x", Tags={"aws:x": "y"}))
    assert code == "InvalidParameterValueException"
    assert error_of(lambda: aws.get_function(FunctionName=f"{unique_name}-x"))[0] == (
        "ResourceNotFoundException"
    )
    aws.delete_function(FunctionName=unique_name)


def test_tags_survive_a_restart_and_are_audited(
    spawn_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = spawn_server(tmp_path / "data")
    aws = lambda_client(server)
    arn = create(aws, "kept", Tags={"team": "shop"})["FunctionArn"]
    aws.tag_resource(Resource=arn, Tags={"env": "prod"})
    aws.untag_resource(Resource=arn, TagKeys=["team"])

    def audited() -> list[str]:
        listed = server.http.get("/_ember/audit", params={"since": "10m"}).json()["Events"]
        return [event["Action"] for event in listed if event["Resource"] == arn]

    actions = wait_until(lambda: {"lambda:TagResource", "lambda:UntagResource"} <= set(audited()))
    assert actions
    server.stop()
    again = spawn_server(tmp_path / "data")
    assert lambda_client(again).list_tags(Resource=arn)["Tags"] == {"env": "prod"}


def test_a_user_needs_lambda_tag_resource(server: Server, aws: Any, unique_name: str) -> None:
    arn = create(aws, unique_name)["FunctionArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:ListTags", "Resource": arn}],
    }
    made = server.http.post(
        "/_ember/keys",
        json={"UserName": f"tagger-{unique_name[-6:]}", "Policy": json.dumps(policy)},
    )
    assert made.status_code == 201, made.text
    key = made.json()
    keys = server.credentials
    reader = lambda_client(
        server,
        type(keys)(
            key["AccessKeyId"], key["SecretAccessKey"], None, keys.region, "a user of the test"
        ),
    )
    assert reader.list_tags(Resource=arn)["Tags"] == {}
    assert error_of(lambda: reader.tag_resource(Resource=arn, Tags={"a": "b"}))[0] == (
        "AccessDeniedException"
    )
    aws.delete_function(FunctionName=unique_name)


def test_the_aws_cli_tags_a_function(
    server: Server, aws: Any, unique_name: str, tmp_path: Path
) -> None:
    arn = create(aws, unique_name)["FunctionArn"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(shared_credentials_file(server, tmp_path)),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_PROFILE="ember",
        HOME=str(tmp_path),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [AWS, "--endpoint-url", server.url, "--region", "us-east-1", "lambda", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    tagged = cli("tag-resource", "--resource", arn, "--tags", "team=shop,env=dev")
    assert tagged.returncode == 0, tagged.stderr
    listed = cli("list-tags", "--resource", arn)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["Tags"] == {"team": "shop", "env": "dev"}
    untagged = cli("untag-resource", "--resource", arn, "--tag-keys", "env")
    assert untagged.returncode == 0, untagged.stderr
    assert json.loads(cli("list-tags", "--resource", arn).stdout)["Tags"] == {"team": "shop"}
    aws.delete_function(FunctionName=unique_name)


def test_a_manifests_spec_tags_are_the_functions_tags(server: Server, tmp_path: Path) -> None:
    """``spec.tags`` is the whole set (API tags outside it go); labels are not tags."""
    name = f"manifest-tags-{uuid.uuid4().hex[:6]}"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(SOURCE)

    def apply(tags: dict[str, str]) -> None:
        body = {
            "apiVersion": "ember.dev/v1",
            "kind": "Function",
            "metadata": {"name": name, "labels": {"app": "shop"}},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "code": {"path": "src"},
                "tags": tags,
            },
        }
        (tmp_path / "fn.yaml").write_text(json.dumps(body))
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ember"), "apply", "-f", str(tmp_path)],
            env=server.cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    aws = lambda_client(server)
    arn = function_arn(name)

    def tags_now() -> dict[str, str] | None:
        try:
            return dict(aws.list_tags(Resource=arn)["Tags"])
        except aws.exceptions.ResourceNotFoundException:
            return None

    apply({"team": "shop"})
    wait_until(lambda: tags_now() == {"team": "shop"})
    aws.tag_resource(Resource=arn, Tags={"by-hand": "x"})
    apply({"team": "shop", "env": "prod"})
    wait_until(lambda: tags_now() == {"team": "shop", "env": "prod"})
    subprocess.run(
        [str(Path(sys.executable).parent / "ember"), "delete", "-f", str(tmp_path)],
        env=server.cli_env(),
        capture_output=True,
        timeout=120,
    )

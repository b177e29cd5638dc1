"""Tags of event source mappings through boto3 and the AWS CLI: CreateEventSourceMapping's
Tags, TagResource, UntagResource, ListTags on the mapping's ARN; Lambda's limits and
errors; per account; gone with the mapping; kept across a restart; shared by a cluster.

The mappings are created disabled on a broker nobody answers: tags need no messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from e2e_helpers import shared_credentials_file

from conftest import ROLE, Server, lambda_client, make_zip, wait_until
from ember.cli.credentials import Credentials

AWS = str(Path(sys.executable).parent / "aws")
BROKER = "arn:aws:mq:us-east-1:000000000000:broker:mq:b-0123"
BROKER_ARGS = ("--broker", "mq=amqp://guest:guest@127.0.0.1:1/")
SOURCE = "def handler(event, context):\n    return event\n"


@pytest.fixture(scope="module")
def mq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("esm-tags") / "data", extra_args=[*BROKER_ARGS])
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def aws(mq_server: Server) -> Iterator[Any]:
    client = lambda_client(mq_server)
    yield client
    client.close()


def mapping(aws: Any, **settings: Any) -> dict[str, Any]:
    """A disabled mapping (to a new function) that has settled."""
    name = f"tagged-{uuid.uuid4().hex[:8]}"
    aws.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SOURCE})},
    )
    created = dict(
        aws.create_event_source_mapping(
            FunctionName=name, EventSourceArn=BROKER, Queues=["q"], Enabled=False, **settings
        )
    )
    wait_until(
        lambda: aws.get_event_source_mapping(UUID=created["UUID"])["State"] == "Disabled",
        timeout=20,
    )
    return created


def delete(aws: Any, mapping_id: str) -> None:
    aws.delete_event_source_mapping(UUID=mapping_id)

    def gone() -> bool:
        try:
            aws.get_event_source_mapping(UUID=mapping_id)
        except ClientError:
            return True
        return False

    wait_until(gone, timeout=20)


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return error["Code"], error["Message"]


NOT_FOUND = ("ResourceNotFoundException", "The resource you requested does not exist.")


def test_create_tag_untag_list_and_delete(aws: Any) -> None:
    created = mapping(aws, Tags={"team": "shop", "env": "dev"})
    arn = created["EventSourceMappingArn"]
    assert arn.endswith(f":event-source-mapping:{created['UUID']}")
    # As on Lambda, the mapping's configuration carries no tags; ListTags does.
    assert "Tags" not in created
    assert "Tags" not in aws.get_event_source_mapping(UUID=created["UUID"])
    assert aws.list_tags(Resource=arn)["Tags"] == {"team": "shop", "env": "dev"}

    aws.tag_resource(Resource=arn, Tags={"env": "prod", "cost-center": "42"})
    assert aws.list_tags(Resource=arn)["Tags"] == {
        "team": "shop",
        "env": "prod",
        "cost-center": "42",
    }
    aws.untag_resource(Resource=arn, TagKeys=["team", "cost-center", "absent"])
    assert aws.list_tags(Resource=arn)["Tags"] == {"env": "prod"}

    delete(aws, created["UUID"])
    assert error_of(lambda: aws.list_tags(Resource=arn)) == NOT_FOUND


def test_lambda_errors_and_limits(aws: Any) -> None:
    arn = mapping(aws)["EventSourceMappingArn"]
    assert aws.list_tags(Resource=arn)["Tags"] == {}
    unknown = arn.rsplit(":", 1)[0] + f":{uuid.uuid4()}"
    assert error_of(lambda: aws.list_tags(Resource=unknown)) == NOT_FOUND
    assert error_of(lambda: aws.tag_resource(Resource=unknown, Tags={"a": "b"})) == NOT_FOUND
    assert error_of(lambda: aws.tag_resource(Resource=arn, Tags={"aws:x": "y"}))[0] == (
        "InvalidParameterValueException"
    )
    assert error_of(lambda: aws.tag_resource(Resource=arn, Tags={"k" * 129: "v"}))[0] == (
        "ValidationException"
    )
    aws.tag_resource(Resource=arn, Tags={f"k{i}": "v" for i in range(50)})
    assert error_of(lambda: aws.tag_resource(Resource=arn, Tags={"one-more": "v"})) == (
        "InvalidParameterValueException",
        "Number of tags exceeds resource tag limit.",
    )
    # Refused tags on Create leave no mapping behind.
    before = len(aws.list_event_source_mappings()["EventSourceMappings"])
    code, message = error_of(lambda: mapping(aws, Tags={"aws:owner": "me"}))
    assert code == "InvalidParameterValueException" and "aws:" in message
    assert len(aws.list_event_source_mappings()["EventSourceMappings"]) == before


def test_another_accounts_mapping_is_not_found(mq_server: Server, aws: Any) -> None:
    created = mapping(aws, Tags={"team": "shop"})
    made = mq_server.http.post("/_ember/accounts", json={"Name": f"tags-{uuid.uuid4().hex[:6]}"})
    assert made.status_code == 201, made.text
    keys = made.json()
    other = lambda_client(
        mq_server,
        Credentials(keys["AccessKeyId"], keys["SecretAccessKey"], None, "us-east-1", "other"),
    )
    try:
        theirs = created["EventSourceMappingArn"].replace(
            ":000000000000:", f":{keys['AccountId']}:"
        )
        assert error_of(lambda: other.list_tags(Resource=theirs)) == NOT_FOUND
        assert error_of(lambda: other.tag_resource(Resource=theirs, Tags={"a": "b"})) == NOT_FOUND
        # The owner's ARN is another account's resource to this caller.
        code, _ = error_of(lambda: other.list_tags(Resource=created["EventSourceMappingArn"]))
        assert code == "AccessDeniedException"
    finally:
        other.close()
    assert aws.list_tags(Resource=created["EventSourceMappingArn"])["Tags"] == {"team": "shop"}


def test_a_user_needs_lambda_tag_resource_on_the_mappings_arn(mq_server: Server, aws: Any) -> None:
    arn = mapping(aws, Tags={"team": "shop"})["EventSourceMappingArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:ListTags", "Resource": arn}],
    }
    made = mq_server.http.post(
        "/_ember/keys",
        json={"UserName": f"esm-tagger-{uuid.uuid4().hex[:6]}", "Policy": json.dumps(policy)},
    )
    assert made.status_code == 201, made.text
    key, keys = made.json(), mq_server.credentials
    reader = lambda_client(
        mq_server,
        Credentials(key["AccessKeyId"], key["SecretAccessKey"], None, keys.region, "a user"),
    )
    try:
        assert reader.list_tags(Resource=arn)["Tags"] == {"team": "shop"}
        assert error_of(lambda: reader.tag_resource(Resource=arn, Tags={"a": "b"}))[0] == (
            "AccessDeniedException"
        )
    finally:
        reader.close()


def test_the_aws_cli_tags_a_mapping(mq_server: Server, aws: Any, tmp_path: Path) -> None:
    arn = mapping(aws)["EventSourceMappingArn"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(shared_credentials_file(mq_server, tmp_path)),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_PROFILE="ember",
        HOME=str(tmp_path),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [AWS, "--endpoint-url", mq_server.url, "--region", "us-east-1", "lambda", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    tagged = cli("tag-resource", "--resource", arn, "--tags", "team=shop,env=dev")
    assert tagged.returncode == 0, tagged.stderr
    listed = cli("list-tags", "--resource", arn)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["Tags"] == {"team": "shop", "env": "dev"}
    untagged = cli("untag-resource", "--resource", arn, "--tag-keys", "env")
    assert untagged.returncode == 0, untagged.stderr
    assert json.loads(cli("list-tags", "--resource", arn).stdout)["Tags"] == {"team": "shop"}


def test_tags_survive_a_restart_and_go_with_the_mapping(
    spawn_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = spawn_server(tmp_path / "data", *BROKER_ARGS)
    aws = lambda_client(server)
    kept, dropped = mapping(aws, Tags={"team": "shop"}), mapping(aws, Tags={"team": "ops"})
    aws.tag_resource(Resource=kept["EventSourceMappingArn"], Tags={"env": "prod"})
    delete(aws, dropped["UUID"])
    server.stop()
    again = lambda_client(spawn_server(tmp_path / "data", *BROKER_ARGS))
    assert again.list_tags(Resource=kept["EventSourceMappingArn"])["Tags"] == {
        "team": "shop",
        "env": "prod",
    }
    assert error_of(lambda: again.list_tags(Resource=dropped["EventSourceMappingArn"])) == (
        NOT_FOUND
    )


def test_a_cluster_shares_a_mappings_tags(
    spawn_server: Callable[..., Server], postgres_url: str, tmp_path: Path
) -> None:
    first, second = (
        spawn_server(tmp_path / f"node-{n}", "--database", postgres_url, *BROKER_ARGS)
        for n in range(2)
    )
    one, two = lambda_client(first), lambda_client(second)
    created = mapping(one, Tags={"team": "shop"})
    arn = created["EventSourceMappingArn"]

    def tags_on_two() -> dict[str, str] | None:
        """None until the change feed has brought the mapping to the second node."""
        try:
            return dict(two.list_tags(Resource=arn)["Tags"])
        except two.exceptions.ResourceNotFoundException:
            return None

    wait_until(lambda: tags_on_two() == {"team": "shop"}, timeout=20)
    two.tag_resource(Resource=arn, Tags={"env": "prod"})
    wait_until(lambda: one.list_tags(Resource=arn)["Tags"] == {"team": "shop", "env": "prod"})
    delete(one, created["UUID"])

    def gone_on_two() -> bool:
        try:
            two.list_tags(Resource=arn)
        except ClientError:
            return True
        return False

    wait_until(gone_on_two, timeout=20)

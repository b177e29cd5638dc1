"""End-to-end: the audit log of a real server, read with signed requests and the CLI.

The entries come from the guard (``ember.api.guard``): the tests that need one
recorded are skipped, with that reason, on a tree that does not have it yet.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import EMBER, ROLE, Server, make_zip, wait_until

REGION = "us-east-1"
needs_guard = pytest.mark.skipif(
    importlib.util.find_spec("ember.api.guard") is None,
    reason="no guard (ember.api.guard) in this tree records audit entries yet",
)


def root_credentials(server: Server) -> tuple[str, str]:
    """The default account's root key the server wrote at first start (any key without one)."""
    path = server.data_dir / "credentials"
    if not path.exists():
        return "test", "test"
    parser = configparser.ConfigParser()
    parser.read(path)
    profile = parser["ember"]
    return profile["aws_access_key_id"], profile["aws_secret_access_key"]


def signed(
    server: Server, method: str, path: str, key: tuple[str, str], body: Any = None, **params: str
) -> httpx.Response:
    """One request signed as Lambda's API is (SigV4, service lambda) by botocore."""
    url = str(httpx.URL(server.url + path, params=params))
    data = json.dumps(body).encode() if body is not None else b""
    request = AWSRequest(method, url, data=data, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(*key), "lambda", REGION).add_auth(request)
    return httpx.request(method, url, content=data, headers=dict(request.headers), timeout=10)


def lambda_as(server: Server, key: tuple[str, str]) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 0}),
    )


def events(server: Server, **params: str) -> list[dict[str, Any]]:
    response = signed(server, "GET", "/_ember/audit", root_credentials(server), **params)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["Events"]
    return listed


def create(server: Server, key: tuple[str, str], name: str) -> None:
    lambda_as(server, key).create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})},
    )


def entry_of(server: Server, name: str, allowed: bool) -> Callable[[], dict[str, Any] | None]:
    """A condition: the CreateFunction entry of ``name`` with ``allowed``, once written."""

    def find() -> dict[str, Any] | None:
        for event in events(server, since="10m"):
            if event["Resource"].endswith(f":{name}") and event["Allowed"] is allowed:
                return event
        return None

    return find


def test_the_route_answers_and_names_a_bad_parameter(server: Server) -> None:
    key = root_credentials(server)
    page = signed(server, "GET", "/_ember/audit", key, limit="5").json()
    assert isinstance(page["Events"], list) and "NextMarker" in page
    bad = signed(server, "GET", "/_ember/audit", key, since="last tuesday")
    assert bad.status_code == 400
    assert "since" in bad.json()["message"]


def test_the_cli_prints_the_log(server: Server) -> None:
    key = root_credentials(server)
    env = {**os.environ, "EMBER_ENDPOINT": server.url}
    env |= {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1]}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(server.data_dir / "credentials")
    run = subprocess.run(
        [EMBER, "audit", "--since", "1h", "--limit", "3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["Events"]) <= 3
    refused = subprocess.run(
        [EMBER, "audit", "--since", "never"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "since" in refused.stderr


@needs_guard
def test_an_allowed_and_a_denied_create_function_are_logged(server: Server) -> None:
    name = f"audited-{uuid.uuid4().hex[:8]}"
    create(server, root_credentials(server), name)
    allowed = wait_until(entry_of(server, name, allowed=True), timeout=10)
    assert allowed["Action"] == "lambda:CreateFunction"
    assert allowed["Status"] == 201 and allowed["Error"] is None
    assert allowed["Principal"].endswith(":root") and allowed["RequestId"]

    user = f"reader-{uuid.uuid4().hex[:6]}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "*"}],
    }
    made = signed(
        server,
        "POST",
        "/_ember/keys",
        root_credentials(server),
        body={"UserName": user, "Policy": json.dumps(policy)},
    )
    assert made.status_code == 201, made.text
    reader = (made.json()["AccessKeyId"], made.json()["SecretAccessKey"])
    refused = f"{name}-denied"
    with pytest.raises(ClientError) as denied_call:
        create(server, reader, refused)
    assert denied_call.value.response["Error"]["Code"] == "AccessDeniedException"
    denied = wait_until(entry_of(server, refused, allowed=False), timeout=10)
    assert denied["Action"] == "lambda:CreateFunction"
    assert denied["Status"] == 403 and denied["Principal"].endswith(f":user/{user}")


@needs_guard
def test_a_change_accepted_before_a_clean_stop_is_kept(
    spawn_server: Callable[..., Server],
) -> None:
    first = spawn_server()
    name = f"kept-{uuid.uuid4().hex[:8]}"
    create(first, root_credentials(first), name)
    assert first.stop() == 0  # at once: the entry may still be pending, close writes it
    again = spawn_server(first.data_dir)
    assert entry_of(again, name, allowed=True)() is not None

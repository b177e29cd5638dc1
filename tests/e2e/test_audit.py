"""End-to-end: the audit log of a real server, read with signed requests and the CLI.

The entries come from the guard (``ember.api.guard``), which records every
control-plane change, allowed or refused.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import EMBER, ROLE, Server, lambda_client, make_zip, wait_until
from ember.cli.credentials import Credentials


def events(server: Server, **params: str) -> list[dict[str, Any]]:
    response = server.http.get("/_ember/audit", params=params)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["Events"]
    return listed


def create(server: Server, key: Credentials, name: str) -> None:
    lambda_client(server, key).create_function(
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
    page = server.http.get("/_ember/audit", params={"limit": "5"}).json()
    assert isinstance(page["Events"], list) and "NextMarker" in page
    bad = server.http.get("/_ember/audit", params={"since": "last tuesday"})
    assert bad.status_code == 400
    assert "since" in bad.json()["message"]


def test_the_cli_prints_the_log(server: Server) -> None:
    env = server.cli_env()
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


def test_an_allowed_and_a_denied_create_function_are_logged(server: Server) -> None:
    name = f"audited-{uuid.uuid4().hex[:8]}"
    create(server, server.credentials, name)
    allowed = wait_until(entry_of(server, name, allowed=True), timeout=10)
    assert allowed["Action"] == "lambda:CreateFunction"
    assert allowed["Status"] == 201 and allowed["Error"] is None
    assert allowed["Principal"].endswith(":root") and allowed["RequestId"]

    user = f"reader-{uuid.uuid4().hex[:6]}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "*"}],
    }
    made = server.http.post("/_ember/keys", json={"UserName": user, "Policy": json.dumps(policy)})
    assert made.status_code == 201, made.text
    key = made.json()
    reader = replace(
        server.credentials, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"]
    )
    refused = f"{name}-denied"
    with pytest.raises(ClientError) as denied_call:
        create(server, reader, refused)
    assert denied_call.value.response["Error"]["Code"] == "AccessDeniedException"
    denied = wait_until(entry_of(server, refused, allowed=False), timeout=10)
    assert denied["Action"] == "lambda:CreateFunction"
    assert denied["Status"] == 403 and denied["Principal"].endswith(f":user/{user}")


def test_a_change_accepted_before_a_clean_stop_is_kept(
    spawn_server: Callable[..., Server],
) -> None:
    first = spawn_server()
    name = f"kept-{uuid.uuid4().hex[:8]}"
    create(first, first.credentials, name)
    assert first.stop() == 0  # at once: the entry may still be pending, close writes it
    again = spawn_server(first.data_dir)
    assert entry_of(again, name, allowed=True)() is not None

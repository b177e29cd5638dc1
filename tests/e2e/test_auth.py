"""Authentication end to end: real `ember serve` with SigV4 on, real boto3 and raw signed HTTP.

The server's first start writes the root's key to DATA_DIR/credentials; boto3
reads that file as any AWS tool would. Refusals carry Lambda's error codes.
"""

from __future__ import annotations

import base64
import configparser
import datetime
import json
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.session
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import EMBER, ROLE, Server, database_for, free_port, make_zip, wait_until

Spawn = Callable[..., Server]
LIST = "/2015-03-31/functions/"
HANDLER = "def handler(event, context):\n    return {'got': event}\n"


@pytest.fixture
def authed(spawn_server: Spawn) -> Server:
    return spawn_server(None, "--auth", "sigv4")


# A user may do only what a policy allows: these may list functions, nothing more.
LIST_ONLY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"}],
    }
)


def credentials_of(server: Server) -> Credentials:
    """The root's key, as the server's first start wrote it to DATA_DIR/credentials."""
    profile = configparser.ConfigParser()
    profile.read_string((server.data_dir / "credentials").read_text())
    section = profile["ember"]
    return Credentials(section["aws_access_key_id"], section["aws_secret_access_key"])


def client(server: Server, key: str, secret: str) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 0}, read_timeout=120),
    )


def signed(
    server: Server,
    creds: Credentials,
    method: str,
    path: str,
    body: bytes = b"",
    send_body: bytes | None = None,
) -> httpx.Response:
    """Sign ``body`` as botocore does, then send ``send_body`` (default: the same)."""
    request = AWSRequest(method=method, url=server.url + path, data=body)
    if body:
        request.headers["Content-Type"] = "application/json"
    SigV4Auth(creds, "lambda", "us-east-1").add_auth(request)
    return httpx.request(
        method,
        server.url + path,
        headers=dict(request.headers.items()),
        content=body if send_body is None else send_body,
        timeout=30,
    )


def error_code(response: httpx.Response) -> str:
    return str(response.headers.get("x-amzn-errortype", ""))


def refused_code(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def test_boto3_with_the_credentials_file_creates_invokes_and_lists(authed: Server) -> None:
    session = botocore.session.Session()
    session.set_config_variable("credentials_file", str(authed.data_dir / "credentials"))
    aws = boto3.Session(botocore_session=session, profile_name="ember").client(
        "lambda", endpoint_url=authed.url, config=Config(retries={"max_attempts": 0})
    )
    aws.create_function(
        FunctionName="hello",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    answer = aws.invoke(FunctionName="hello", Payload=b'{"n": 1}')
    assert json.loads(answer["Payload"].read()) == {"got": {"n": 1}}
    assert [f["FunctionName"] for f in aws.list_functions()["Functions"]] == ["hello"]
    # A query string and a percent-encoded path are signed as sent.
    assert len(aws.list_functions(MaxItems=1)["Functions"]) == 1
    arn = "arn:aws:lambda:us-east-1:000000000000:function:hello"
    assert aws.get_function(FunctionName=arn)["Configuration"]["FunctionName"] == "hello"
    assert stat.S_IMODE((authed.data_dir / "credentials").stat().st_mode) == 0o600


def test_a_wrong_secret_an_unknown_key_and_no_signature_are_refused(authed: Server) -> None:
    creds = credentials_of(authed)
    wrong = client(authed, creds.access_key, "x" * 40)
    code, _ = refused_code(wrong.list_functions)
    assert code == "InvalidSignatureException"
    code, message = refused_code(
        client(authed, "AKIAUNKNOWNUNKNOWN22", creds.secret_key).list_functions
    )
    assert code == "UnrecognizedClientException"
    assert message == "The security token included in the request is invalid."
    for method, path in (("GET", LIST), ("POST", LIST + "hello/invocations")):
        response = httpx.request(method, authed.url + path, timeout=10)
        assert response.status_code == 403
        assert error_code(response) == "MissingAuthenticationTokenException"
    assert httpx.get(authed.url + "/health", timeout=10).status_code == 200


def test_a_signature_made_six_minutes_ago_has_expired(
    authed: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    past = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    # The test client's clock, six minutes behind: the server's is the real one.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    response = signed(authed, credentials_of(authed), "GET", LIST)
    assert response.status_code == 403
    assert error_code(response) == "InvalidSignatureException"
    assert response.json()["message"].startswith("Signature expired:")


def test_a_tampered_body_is_refused(authed: Server) -> None:
    creds = credentials_of(authed)
    aws = client(authed, creds.access_key, creds.secret_key)
    aws.create_function(
        FunctionName="echo",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    path = LIST + "echo/invocations"
    assert signed(authed, creds, "POST", path, b'{"pay": 1}').json() == {"got": {"pay": 1}}
    tampered = signed(authed, creds, "POST", path, b'{"pay": 1}', send_body=b'{"pay": 9}')
    assert tampered.status_code == 403
    assert error_code(tampered) == "InvalidSignatureException"


def test_keys_made_through_the_api_work_and_secrets_stay_out_of_listings(authed: Server) -> None:
    root = credentials_of(authed)
    body = {"UserName": "ci", "Policy": LIST_ONLY}
    made = signed(authed, root, "POST", "/_ember/keys", json.dumps(body).encode())
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["AccountId"] == "000000000000" and key["UserName"] == "ci"
    assert (
        client(authed, key["AccessKeyId"], key["SecretAccessKey"]).list_functions()["Functions"]
        == []
    )
    listed = signed(authed, root, "GET", "/_ember/keys")
    assert {k["AccessKeyId"] for k in listed.json()["Keys"]} == {
        root.access_key,
        key["AccessKeyId"],
    }
    assert key["SecretAccessKey"] not in listed.text
    assert key["SecretAccessKey"] not in authed.output()

    bad = json.dumps({"UserName": "ro", "Policy": '{"Statement": "nope"}'}).encode()
    refused = signed(authed, root, "POST", "/_ember/keys", bad)
    assert refused.status_code == 400
    assert error_code(refused) == "InvalidParameterValueException"

    deleted = signed(authed, root, "DELETE", f"/_ember/keys/{key['AccessKeyId']}")
    assert deleted.status_code == 204
    gone = client(authed, key["AccessKeyId"], key["SecretAccessKey"])
    assert refused_code(gone.list_functions)[0] == "UnrecognizedClientException"


def test_a_new_account_gets_a_working_root_key(authed: Server) -> None:
    root = credentials_of(authed)
    made = signed(authed, root, "POST", "/_ember/accounts", b'{"Name": "team"}')
    assert made.status_code == 201, made.text
    account = made.json()
    assert len(account["AccountId"]) == 12 and account["Name"] == "team"
    team = Credentials(account["AccessKeyId"], account["SecretAccessKey"])
    client(authed, team.access_key, team.secret_key).list_functions()
    # That root sees its own account only and may not make accounts.
    listed = signed(authed, team, "GET", "/_ember/accounts").json()["Accounts"]
    assert [a["AccountId"] for a in listed] == [account["AccountId"]]
    denied = signed(authed, team, "POST", "/_ember/accounts", b'{"Name": "mine"}')
    assert denied.status_code == 403
    assert error_code(denied) == "AccessDeniedException"


def _serve(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `ember serve` expecting it to refuse to start (it exits on its own)."""
    return subprocess.run(
        [EMBER, "serve", "--port", str(free_port()), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_auth_none_on_a_public_address_refuses_to_start(tmp_path: Path) -> None:
    done = _serve(tmp_path / "data", "--auth", "none", "--host", "0.0.0.0")
    assert done.returncode != 0
    assert "--auth none" in done.stderr and "loopback" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wrong_master_key_refuses_to_start(authed: Server) -> None:
    authed.stop()
    wrong = base64.b64encode(bytes(32)).decode()
    database = database_for(authed.data_dir)  # where its keys are, in a PostgreSQL run
    args = ("--database", database) if database else ()
    done = _serve(authed.data_dir, *args, env={"EMBER_MASTER_KEY": wrong})
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "the master key cannot decrypt the stored access keys" in output
    assert credentials_of(authed).secret_key not in output


@pytest.fixture
def two_nodes(
    spawn_server: Spawn, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[Server, Server]]:
    key_file = tmp_path / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    key_file.chmod(0o600)
    args = ("--auth", "sigv4", "--database", postgres_url, "--master-key-file", str(key_file))
    yield spawn_server(tmp_path / "a", *args), spawn_server(tmp_path / "b", *args)


def test_two_nodes_share_one_bootstrap_key_and_every_key_made_since(
    two_nodes: tuple[Server, Server],
) -> None:
    a, b = two_nodes
    root = credentials_of(a)
    on_b_file = credentials_of(b)
    assert (on_b_file.access_key, on_b_file.secret_key) == (root.access_key, root.secret_key)
    body = json.dumps({"UserName": "deployer", "Policy": LIST_ONLY}).encode()
    made = signed(a, root, "POST", "/_ember/keys", body).json()
    on_b = client(b, made["AccessKeyId"], made["SecretAccessKey"])

    def works_on_b() -> bool:
        try:
            on_b.list_functions()
        except ClientError:
            return False
        return True

    wait_until(works_on_b, timeout=15)
    listed = signed(b, root, "GET", "/_ember/keys").json()["Keys"]
    assert [k["AccessKeyId"] for k in listed if k["UserName"] is None] == [root.access_key]

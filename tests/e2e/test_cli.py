"""End-to-end: the `ember` command line, run as a subprocess against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ALLOW_ALL, shared_credentials_file

from conftest import EMBER, Server, free_port, wait_until

APP = """
import os

def handler(event, context):
    print("cli says", context.aws_request_id)
    return {"version": os.environ.get("APP_VERSION"), "event": event}
"""


def ember(
    server: Server, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI against ``server``, signing with its credentials."""
    env = server.cli_env()
    result = subprocess.run(
        [EMBER, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, f"ember {' '.join(args)} failed:\n{result.stderr}"
    return result


def write_app(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(textwrap.dedent(APP))
    (directory / "VERSION").write_text(version)
    return directory


@pytest.fixture
def cli_name(server: Server) -> Iterator[str]:
    """A function name for one test; whatever the test left is removed after it."""
    name = f"cli-{uuid.uuid4().hex[:10]}"
    yield name
    ember(server, "rm", name, check=False)


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")


def test_deploy_a_directory_then_update_it(server: Server, cli_name: str, tmp_path: Path) -> None:
    source = write_app(tmp_path / "fn", "1")
    created = ember(
        server,
        "deploy",
        cli_name,
        str(source),
        "--handler",
        "app.handler",
        "--runtime",
        "python3.11",
        "--env",
        "APP_VERSION=one",
        "--memory",
        "192",
    )
    assert cli_name in created.stdout
    assert "(created)" in created.stdout
    result = json.loads(ember(server, "invoke", cli_name).stdout)
    assert result == {"version": "one", "event": {}}

    (source / "app.py").write_text(textwrap.dedent(APP).replace("event}", "event, 'v': 2}"))
    updated = ember(
        server,
        "deploy",
        cli_name,
        str(source),
        "--handler",
        "app.handler",
        "--env",
        "APP_VERSION=two",
    )
    assert "(updated)" in updated.stdout
    result = json.loads(ember(server, "invoke", cli_name).stdout)
    assert result == {"version": "two", "event": {}, "v": 2}
    config = json.loads(ember(server, "get", cli_name).stdout)["Configuration"]
    assert config["MemorySize"] == 192  # options not given keep their value
    assert config["Runtime"] == "python3.11"


def test_deploy_a_zip(server: Server, cli_name: str, tmp_path: Path) -> None:
    archive = tmp_path / "fn.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", textwrap.dedent(APP))
    result = ember(server, "deploy", cli_name, str(archive), "--handler", "app.handler")
    assert "(created)" in result.stdout
    config = json.loads(ember(server, "get", cli_name).stdout)["Configuration"]
    assert config["Handler"] == "app.handler"
    assert config["FunctionName"] == cli_name
    assert json.loads(ember(server, "invoke", cli_name).stdout)["event"] == {}


@pytest.fixture
def deployed(server: Server, cli_name: str, tmp_path: Path) -> str:
    source = write_app(tmp_path / "fn", "1")
    ember(server, "deploy", cli_name, str(source), "--handler", "app.handler")
    return cli_name


def test_invoke_with_payload(server: Server, deployed: str) -> None:
    result = ember(server, "invoke", deployed, "--payload", '{"a": [1, 2]}')
    assert json.loads(result.stdout)["event"] == {"a": [1, 2]}


def test_invoke_with_payload_file(server: Server, deployed: str, tmp_path: Path) -> None:
    payload = tmp_path / "event.json"
    payload.write_text(json.dumps({"from": "file"}))
    result = ember(server, "invoke", deployed, "--payload-file", str(payload))
    assert json.loads(result.stdout)["event"] == {"from": "file"}


def test_invoke_with_log_prints_the_log_on_stderr(server: Server, deployed: str) -> None:
    result = ember(server, "invoke", deployed, "--log")
    assert json.loads(result.stdout)["event"] == {}
    assert "START RequestId: " in result.stderr
    assert "cli says " in result.stderr
    assert "REPORT RequestId: " in result.stderr
    assert "START" not in result.stdout


def test_invoke_of_a_failing_function_exits_non_zero(
    server: Server, cli_name: str, tmp_path: Path
) -> None:
    source = tmp_path / "fn"
    source.mkdir()
    (source / "app.py").write_text("def handler(event, context):\n    raise ValueError('nope')\n")
    ember(server, "deploy", cli_name, str(source), "--handler", "app.handler")
    result = ember(server, "invoke", cli_name, check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorType"] == "ValueError"
    assert result.stderr.strip() == "error: Unhandled: ValueError: nope"


def test_ls_get_and_rm(server: Server, deployed: str) -> None:
    listing = ember(server, "ls").stdout
    assert deployed in listing
    assert "NAME" in listing
    names = [fn["FunctionName"] for fn in json.loads(ember(server, "ls", "--json").stdout)]
    assert deployed in names

    got = json.loads(ember(server, "get", deployed).stdout)
    assert got["Configuration"]["FunctionName"] == deployed
    assert "Location" in got["Code"]

    assert ember(server, "rm", deployed).stdout.strip() == f"deleted {deployed}"
    assert deployed not in ember(server, "ls").stdout
    assert_one_error_line(ember(server, "get", deployed, check=False))


def test_logs_show_the_invocations(server: Server, deployed: str) -> None:
    invoked = ember(server, "invoke", deployed, "--log")
    start = next(line for line in invoked.stderr.splitlines() if line.startswith("START"))
    request_id = start.split()[2]

    def logged() -> str | None:
        text = ember(server, "logs", deployed).stdout
        return text if f"END RequestId: {request_id}" in text else None

    text = wait_until(logged, timeout=30)
    assert f"START RequestId: {request_id}" in text
    assert f"cli says {request_id}" in text
    assert f"REPORT RequestId: {request_id}" in text


def test_logs_follow_prints_new_invocations(
    server: Server, aws: Any, deployed: str, tmp_path: Path
) -> None:
    out_path = tmp_path / "follow.out"
    env = server.cli_env()
    with open(out_path, "wb") as out:
        follower = subprocess.Popen(
            [EMBER, "logs", deployed, "--follow"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        response = aws.invoke(FunctionName=deployed, Payload=b'{"follow": true}')
        request_id = response["ResponseMetadata"]["RequestId"]
        wait_until(lambda: f"REPORT RequestId: {request_id}" in out_path.read_text(), timeout=30)
        assert follower.poll() is None  # still following
        second = aws.invoke(FunctionName=deployed, Payload=b"{}")
        second_id = second["ResponseMetadata"]["RequestId"]
        wait_until(lambda: f"REPORT RequestId: {second_id}" in out_path.read_text(), timeout=30)
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            code = follower.wait(10)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait(10)
            raise
    assert code == 0  # Ctrl-C is how --follow ends
    text = out_path.read_text()
    assert text.count(f"START RequestId: {request_id}") == 1  # printed once, not re-read
    assert "Traceback" not in text


def test_invoke_of_a_missing_function_is_one_error_line(server: Server) -> None:
    result = ember(server, "invoke", f"missing-{uuid.uuid4().hex[:8]}", check=False)
    assert_one_error_line(result)
    assert "ResourceNotFoundException" in result.stderr
    assert result.stdout == ""


def test_rm_of_a_missing_function_is_one_error_line(server: Server) -> None:
    result = ember(server, "rm", f"missing-{uuid.uuid4().hex[:8]}", check=False)
    assert_one_error_line(result)
    assert "ResourceNotFoundException" in result.stderr


def test_unreachable_endpoint_is_one_error_line(tmp_path: Path) -> None:
    nowhere = Server(tmp_path / "never-started", port=free_port())
    for args in (("ls",), ("invoke", "anything"), ("logs", "anything")):
        result = ember(nowhere, *args, check=False)
        assert_one_error_line(result)
        assert nowhere.url in result.stderr


def test_deploy_of_something_that_is_not_a_package(
    server: Server, cli_name: str, tmp_path: Path
) -> None:
    stray = tmp_path / "notes.txt"
    stray.write_text("not code")
    result = ember(server, "deploy", cli_name, str(stray), "--handler", "app.handler", check=False)
    assert_one_error_line(result)


def test_invalid_payload_is_a_usage_error(server: Server, deployed: str) -> None:
    result = ember(server, "invoke", deployed, "--payload", "{nope", check=False)
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


# -- credentials, accounts and keys ---------------------------------------------------


def bare_env(server: Server, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no AWS settings at all (and an empty home)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EMBER_"))}
    return {**env, "HOME": str(home), "EMBER_ENDPOINT": server.url, **extra}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EMBER, *args], env=env, capture_output=True, text=True, timeout=60)


def test_the_cli_finds_the_data_dirs_credentials_or_says_where_it_looked(
    server: Server, tmp_path: Path
) -> None:
    data_dir = server.data_dir
    if not server.credentials_file.is_file():  # a server that verifies no signatures
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        shared_credentials_file(server, data_dir)
    env = bare_env(server, tmp_path)
    listed = run_cli(env, "--data-dir", str(data_dir), "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    assert run_cli({**env, "EMBER_DATA_DIR": str(data_dir)}, "ls").returncode == 0

    nowhere = run_cli(env, "--data-dir", str(tmp_path / "empty"), "ls")
    assert nowhere.returncode == 1
    assert nowhere.stderr.startswith("error: NoCredentials: no credentials found")
    assert str(tmp_path / "empty" / "credentials") in nowhere.stderr


def test_accounts_and_keys_from_the_cli(server: Server, tmp_path: Path) -> None:
    if server.http.get("/_ember/accounts", timeout=10).status_code == 404:
        pytest.skip("this build has no /_ember/accounts routes yet")
    verifies = server.credentials_file.is_file()
    name = f"team-{uuid.uuid4().hex[:8]}"
    created = json.loads(ember(server, "accounts", "create", name, "--json").stdout)
    assert created["Name"] == name and created["AccessKeyId"] and created["SecretAccessKey"]
    account = created["AccountId"]
    listed = json.loads(ember(server, "accounts", "ls", "--json").stdout)
    assert account in [entry["AccountId"] for entry in listed]
    assert name in ember(server, "accounts", "ls").stdout

    # The new account's root key signs on its own, and sees an empty account.
    as_team = bare_env(
        server,
        tmp_path,
        AWS_ACCESS_KEY_ID=created["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=created["SecretAccessKey"],
    )
    assert json.loads(run_cli(as_team, "ls", "--json").stdout) == []

    policy = tmp_path / "policy.json"
    policy.write_text(ALLOW_ALL)
    args = ("keys", "create", "--account", account, "--user", "bob", "--policy", str(policy))
    bob = json.loads(ember(server, *args, "--json").stdout)
    assert (bob["AccountId"], bob["UserName"]) == (account, "bob")
    keys = json.loads(ember(server, "keys", "ls", "--account", account, "--json").stdout)
    assert {key["AccessKeyId"] for key in keys} == {created["AccessKeyId"], bob["AccessKeyId"]}
    assert all("SecretAccessKey" not in key for key in keys)
    removed = ember(server, "keys", "rm", bob["AccessKeyId"])
    assert removed.stdout.strip() == f"deleted access key {bob['AccessKeyId']}"
    as_bob = {**as_team, "AWS_ACCESS_KEY_ID": bob["AccessKeyId"]}
    as_bob["AWS_SECRET_ACCESS_KEY"] = bob["SecretAccessKey"]
    refused = run_cli(as_bob, "ls")
    if verifies:
        assert refused.returncode == 1
        assert "UnrecognizedClientException" in refused.stderr

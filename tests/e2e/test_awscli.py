"""The unmodified AWS CLI (v1) against ember: the commands a user types, end to end."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import code_sha256, echo_source, function_arn, shared_credentials_file

from conftest import ROLE, Server, make_zip

AWS = str(Path(sys.executable).parent / "aws")

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Cli:
    """Run ``aws lambda ...`` against the server; returns the finished process."""
    home = tmp_path / "cli-home"
    home.mkdir()
    # v1 has no --cli-binary-format flag and always sends blobs raw; the setting makes
    # AWS CLI v2 behave the same, so --payload takes plain JSON with either.
    (home / "config").write_text("[default]\ncli_binary_format = raw-in-base64-out\n")
    # What `make run` tells a user: the server's credentials file and its profile.
    env = {
        **os.environ,
        # The host's own AWS configuration must not change what the CLI does.
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(shared_credentials_file(server, home)),
        "AWS_PROFILE": "ember",
        "HOME": str(home),
        "AWS_DEFAULT_OUTPUT": "json",
        "AWS_MAX_ATTEMPTS": "1",
    }
    for variable in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    ):
        env.pop(variable, None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [AWS, "--endpoint-url", server.url, "--region", "us-east-1", "lambda", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    return run


def ok(process: subprocess.CompletedProcess[str]) -> Any:
    """The command succeeded; its JSON output (None when it printed nothing)."""
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout) if process.stdout.strip() else None


@pytest.fixture
def fresh_name(aws: Any, unique_name: str) -> Iterator[str]:
    yield unique_name
    with contextlib.suppress(aws.exceptions.ResourceNotFoundException):
        aws.delete_function(FunctionName=unique_name)


@pytest.fixture
def package(tmp_path: Path) -> tuple[Path, bytes]:
    data = make_zip({"app.py": echo_source("cli")})
    path = tmp_path / "function.zip"
    path.write_bytes(data)
    return path, data


def create(cli: Cli, name: str, zip_path: Path, *extra: str) -> Any:
    return ok(
        cli(
            "create-function",
            "--function-name", name,
            "--runtime", "python3.11",
            "--handler", "app.handler",
            "--role", ROLE,
            "--zip-file", f"fileb://{zip_path}",
            *extra,
        )
    )  # fmt: skip


def test_create_function_from_a_zip_file(
    cli: Cli, aws: Any, fresh_name: str, package: tuple[Path, bytes]
) -> None:
    zip_path, data = package

    created = create(cli, fresh_name, zip_path, "--environment", "Variables={GREETING=hi}")

    assert created["FunctionName"] == fresh_name
    assert created["FunctionArn"] == function_arn(fresh_name)
    assert created["CodeSha256"] == code_sha256(data)
    assert created["CodeSize"] == len(data)
    assert created["State"] == "Active"
    assert created["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert (created["Timeout"], created["MemorySize"]) == (3, 128)
    assert aws.get_function_configuration(FunctionName=fresh_name)["CodeSha256"] == code_sha256(
        data
    )


def test_get_function_shows_configuration_and_code(
    server: Server, cli: Cli, fresh_name: str, package: tuple[Path, bytes]
) -> None:
    zip_path, data = package
    created = create(cli, fresh_name, zip_path)

    function = ok(cli("get-function", "--function-name", fresh_name))
    configuration = ok(cli("get-function-configuration", "--function-name", fresh_name))

    assert function["Configuration"] == configuration == created
    assert function["Code"]["RepositoryType"] == "S3"
    assert server.http.get(function["Code"]["Location"], timeout=30).content == data


def test_list_functions_includes_the_function_once(
    cli: Cli, fresh_name: str, package: tuple[Path, bytes]
) -> None:
    create(cli, fresh_name, package[0])

    # The CLI follows NextMarker itself and prints every function.
    listed = ok(cli("list-functions"))["Functions"]
    first = ok(cli("list-functions", "--max-items", "1"))

    assert [f["FunctionName"] for f in listed].count(fresh_name) == 1
    assert len(first["Functions"]) == 1
    if len(listed) > 1:
        assert first["NextToken"]


def test_update_function_configuration_then_invoke_to_a_file(
    cli: Cli, fresh_name: str, package: tuple[Path, bytes], tmp_path: Path
) -> None:
    created = create(cli, fresh_name, package[0], "--environment", "Variables={GREETING=hi}")

    updated = ok(
        cli(
            "update-function-configuration",
            "--function-name", fresh_name,
            "--timeout", "10",
            "--memory-size", "256",
            "--description", "from the cli",
            "--environment", "Variables={GREETING=bye}",
        )
    )  # fmt: skip
    outfile = tmp_path / "out.json"
    result = ok(
        cli(
            "invoke",
            "--function-name", fresh_name,
            "--payload", '{"n": 1}',
            str(outfile),
        )
    )  # fmt: skip

    assert (updated["Timeout"], updated["MemorySize"]) == (10, 256)
    assert updated["Description"] == "from the cli"
    assert updated["Environment"] == {"Variables": {"GREETING": "bye"}}
    assert updated["RevisionId"] != created["RevisionId"]
    assert result == {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    assert json.loads(outfile.read_text()) == {"version": "cli", "env": "bye", "event": {"n": 1}}


def test_invoke_reports_a_function_error_and_log_tail(
    cli: Cli, deploy: Any, tmp_path: Path
) -> None:
    name = deploy("def handler(event, context):\n    print('about to fail')\n    1 / 0\n")[
        "FunctionName"
    ]
    outfile = tmp_path / "out.json"

    result = ok(cli("invoke", "--function-name", name, "--log-type", "Tail", str(outfile)))

    # A function error is not a CLI error: exit 0, FunctionError in the output.
    assert result["StatusCode"] == 200
    assert result["FunctionError"] == "Unhandled"
    assert "about to fail" in base64.b64decode(result["LogResult"]).decode()
    assert json.loads(outfile.read_text())["errorType"] == "ZeroDivisionError"


def test_delete_function_then_it_is_gone(
    cli: Cli, fresh_name: str, package: tuple[Path, bytes]
) -> None:
    create(cli, fresh_name, package[0])

    # The CLI prints DeleteFunction's StatusCode, taken from the HTTP status.
    assert ok(cli("delete-function", "--function-name", fresh_name)) == {"StatusCode": 204}

    missing = cli("get-function", "--function-name", fresh_name)
    assert missing.returncode == 255
    assert (
        "An error occurred (ResourceNotFoundException) when calling the GetFunction operation: "
        f"Function not found: {function_arn(fresh_name)}"
    ) in missing.stderr
    assert missing.stdout == ""


def test_errors_exit_nonzero_with_lambdas_message(
    cli: Cli, fresh_name: str, package: tuple[Path, bytes]
) -> None:
    create(cli, fresh_name, package[0])

    duplicate = cli(
        "create-function",
        "--function-name", fresh_name,
        "--runtime", "python3.11",
        "--handler", "app.handler",
        "--role", ROLE,
        "--zip-file", f"fileb://{package[0]}",
    )  # fmt: skip
    too_long = cli("update-function-configuration", "--function-name", fresh_name,
                   "--timeout", "901")  # fmt: skip

    assert duplicate.returncode == 255
    assert (
        "An error occurred (ResourceConflictException) when calling the CreateFunction "
        f"operation: Function already exist: {fresh_name}"
    ) in duplicate.stderr
    assert too_long.returncode == 255
    assert "An error occurred (ValidationException)" in too_long.stderr
    assert "Member must have value less than or equal to 900" in too_long.stderr


def test_publish_a_version_invoke_it_and_delete_it(
    cli: Cli, fresh_name: str, package: tuple[Path, bytes], tmp_path: Path
) -> None:
    zip_path, data = package
    create(cli, fresh_name, zip_path)
    listed = ok(cli("list-functions"))["Functions"]

    published = ok(cli("publish-version", "--function-name", fresh_name,
                       "--description", "first"))  # fmt: skip
    newer = tmp_path / "newer.zip"
    newer.write_bytes(make_zip({"app.py": echo_source("newer")}))
    ok(cli("update-function-code", "--function-name", fresh_name,
           "--zip-file", f"fileb://{newer}"))  # fmt: skip
    versions = ok(cli("list-versions-by-function", "--function-name", fresh_name))["Versions"]
    outfile = tmp_path / "out.json"
    result = ok(
        cli("invoke", "--function-name", fresh_name, "--qualifier", "1",
            "--payload", '{"n": 2}', str(outfile))
    )  # fmt: skip
    alias = ok(cli("create-alias", "--function-name", fresh_name, "--name", "live",
                   "--function-version", "1"))  # fmt: skip
    through_alias = ok(cli("invoke", "--function-name", f"{fresh_name}:live", str(outfile)))

    assert fresh_name in [f["FunctionName"] for f in listed]
    assert published["Version"] == "1" and published["Description"] == "first"
    assert published["FunctionArn"] == function_arn(fresh_name) + ":1"
    assert published["CodeSha256"] == code_sha256(data)
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    assert result == {"StatusCode": 200, "ExecutedVersion": "1"}
    assert alias["AliasArn"] == function_arn(fresh_name) + ":live"
    assert through_alias == {"StatusCode": 200, "ExecutedVersion": "1"}
    assert json.loads(outfile.read_text())["version"] == "cli"

    in_use = cli("delete-function", "--function-name", fresh_name, "--qualifier", "1")
    assert in_use.returncode == 255
    assert "(ResourceConflictException)" in in_use.stderr
    ok(cli("delete-alias", "--function-name", fresh_name, "--name", "live"))
    assert ok(cli("delete-function", "--function-name", fresh_name, "--qualifier", "1")) == {
        "StatusCode": 204
    }
    assert ok(cli("delete-function", "--function-name", fresh_name)) == {"StatusCode": 204}
    assert cli("get-function", "--function-name", fresh_name).returncode == 255

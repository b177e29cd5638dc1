"""Unit tests of the CLI: packaging, option parsing, and how API errors are shown.

The server is replaced by `httpx.MockTransport`, injected through the client
factory that `CliState` carries, so no process or socket is involved.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from ember.cli.client import ApiError, EmberClient
from ember.cli.main import CliState, main, parse_env, zip_directory

Handler = Callable[[httpx.Request], httpx.Response]

CONFIG = {
    "FunctionName": "hello",
    "Runtime": "python3.12",
    "MemorySize": 128,
    "Timeout": 3,
    "CodeSha256": "abc=",
    "LastModified": "2024-01-01T00:00:00.000+0000",
}


def not_found(name: str) -> httpx.Response:
    return httpx.Response(
        404,
        headers={"x-amzn-ErrorType": "ResourceNotFoundException"},
        json={"Type": "User", "message": f"Function not found: {name}"},
    )


def run(handler: Handler, args: list[str], **kwargs: Any) -> Result:
    """Run the CLI against a mock server answering with `handler`."""
    transport = httpx.MockTransport(handler)
    state = CliState(
        client_factory=lambda endpoint: EmberClient(endpoint, transport=transport),
        sleep=lambda _seconds: None,
    )
    return CliRunner().invoke(main, args, obj=state, **kwargs)


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# -- packaging ---------------------------------------------------------------


def test_zip_is_deterministic_across_mtimes_and_creation_order(tmp_path: Path) -> None:
    files = {"app.py": "def h(e, c): return e\n", "lib/util.py": "X = 1\n"}
    first = make_tree(tmp_path / "a", files)
    second = make_tree(tmp_path / "b", dict(reversed(list(files.items()))))
    os.utime(second / "app.py", (1_000_000, 1_000_000))

    assert zip_directory(first) == zip_directory(first)
    assert zip_directory(first) == zip_directory(second)


def test_zip_skips_caches_and_vcs_and_uses_relative_posix_names(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "app.py": "",
            "pkg/mod.py": "",
            "pkg/__pycache__/mod.cpython-311.pyc": "",
            "stale.pyc": "",
            ".git/HEAD": "",
        },
    )
    names = zipfile.ZipFile(io.BytesIO(zip_directory(root))).namelist()
    assert names == ["app.py", "pkg/mod.py"]


def test_deploy_sends_a_zip_file_as_is(tmp_path: Path) -> None:
    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", "def h(e, c): return 1\n")
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return not_found("hello")
        sent.append(json.loads(request.content))
        return httpx.Response(201, json=CONFIG)

    result = run(handler, ["deploy", "hello", str(archive), "--handler", "app.h"])

    assert result.exit_code == 0, result.output
    assert base64.b64decode(sent[0]["Code"]["ZipFile"]) == archive.read_bytes()
    assert sent[0]["Runtime"] == "python3.11"  # the default
    assert "Environment" not in sent[0]
    assert result.stdout == "deployed hello (python3.12, 128 MB, 3 s) sha256=abc= (created)\n"


def test_deploy_updates_an_existing_function_with_only_the_given_options(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src", {"app.py": ""})
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
        if request.method == "GET":
            return httpx.Response(200, json={"Configuration": CONFIG, "Code": {}})
        return httpx.Response(200, json=CONFIG)

    args = ["deploy", "hello", str(root), "--handler", "app.h", "--memory", "256", "--env", "A=1"]
    result = run(handler, args)

    assert result.exit_code == 0, result.output
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", "/2015-03-31/functions/hello"),
        ("PUT", "/2015-03-31/functions/hello/code"),
        ("PUT", "/2015-03-31/functions/hello/configuration"),
    ]
    assert calls[2][2] == {
        "Handler": "app.h",
        "MemorySize": 256,
        "Environment": {"Variables": {"A": "1"}},
    }
    assert result.stdout.endswith("(updated)\n")


def test_deploy_rejects_a_file_that_is_not_a_zip(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("")
    result = run(lambda r: httpx.Response(500), ["deploy", "f", str(script), "--handler", "a.b"])
    assert result.exit_code == 1
    assert (
        result.stderr == f"error: InvalidPackage: {script} is neither a directory nor a .zip file\n"
    )


# -- option parsing ----------------------------------------------------------


def test_parse_env_splits_on_the_first_equals_sign() -> None:
    assert parse_env(None, None, ("A=1", "B=x=y", "C=")) == {"A": "1", "B": "x=y", "C": ""}
    assert parse_env(None, None, ()) is None


@pytest.mark.parametrize("bad", ["NOEQUALS", "=value"])
def test_parse_env_rejects_malformed_pairs(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_env(None, None, (bad,))


def test_malformed_env_is_a_usage_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"app.py": ""})
    args = ["deploy", "f", str(root), "--handler", "app.h", "--env", "oops"]
    result = run(lambda r: httpx.Response(500), args)
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.stderr


def test_invoke_rejects_a_payload_that_is_not_json() -> None:
    result = run(lambda r: httpx.Response(500), ["invoke", "f", "--payload", "{nope"])
    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr


# -- errors and output -------------------------------------------------------


def test_api_errors_print_one_line_and_exit_1() -> None:
    result = run(lambda r: not_found("ghost"), ["get", "ghost"])
    assert result.exit_code == 1
    assert result.stderr == "error: ResourceNotFoundException: Function not found: ghost\n"
    assert result.stdout == ""


def test_error_code_suffix_and_capitalised_message_are_understood() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"x-amzn-ErrorType": "TooManyRequestsException:http://internal/"}
        return httpx.Response(429, headers=headers, json={"Message": "Rate exceeded"})

    result = run(handler, ["rm", "f"])
    assert result.stderr == "error: TooManyRequestsException: Rate exceeded\n"


def test_non_json_error_bodies_fall_back_to_the_status() -> None:
    result = run(lambda r: httpx.Response(502, text="bad gateway"), ["ls"])
    assert result.stderr == "error: HTTP502: bad gateway\n"


def test_an_unreachable_server_is_reported_without_a_traceback() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = run(handler, ["--endpoint", "http://127.0.0.1:1", "ls"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: ConnectionError: cannot reach ember at http://127.0.0.1:1: "
        "is `ember serve` running?\n"
    )


def test_invoke_prints_the_payload_and_the_decoded_log_tail() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"X-Amz-Log-Result": base64.b64encode(b"START\nhi\nEND\n").decode()}
        return httpx.Response(200, headers=headers, content=b'{"ok": true}')

    result = run(handler, ["invoke", "a/b", "--payload", '{"x": 1}', "--log"])

    assert result.exit_code == 0
    assert result.stdout == '{"ok": true}\n'
    assert result.stderr == "START\nhi\nEND\n"
    assert seen[0].url.raw_path == b"/2015-03-31/functions/a%2Fb/invocations"
    assert seen[0].headers["X-Amz-Log-Type"] == "Tail"
    assert seen[0].content == b'{"x": 1}'


def test_invoke_reads_the_payload_from_stdin() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, content=b"null")

    result = run(handler, ["invoke", "f", "--payload-file", "-"], input='{"a": [1]}')
    assert result.exit_code == 0
    assert bodies == [b'{"a": [1]}']


def test_a_function_error_still_prints_the_payload_and_exits_1() -> None:
    document = {"errorType": "ZeroDivisionError", "errorMessage": "division by zero"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"X-Amz-Function-Error": "Unhandled"}, json=document)

    result = run(handler, ["invoke", "f"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == document
    assert result.stderr == "error: Unhandled: ZeroDivisionError: division by zero\n"


def test_ls_follows_next_marker_through_every_page() -> None:
    markers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        marker = request.url.params.get("Marker")
        markers.append(marker)
        if marker is None:
            return httpx.Response(200, json={"Functions": [CONFIG], "NextMarker": "m1"})
        return httpx.Response(200, json={"Functions": [{**CONFIG, "FunctionName": "two"}]})

    result = run(handler, ["ls", "--json"])
    assert result.exit_code == 0
    assert markers == [None, "m1"]
    assert [f["FunctionName"] for f in json.loads(result.stdout)] == ["hello", "two"]

    table = run(handler, ["ls"])
    assert "NAME" in table.stdout and "two" in table.stdout and "128 MB" in table.stdout


def test_ls_says_when_there_are_no_functions() -> None:
    result = run(lambda r: httpx.Response(200, json={"Functions": []}), ["ls"])
    assert result.stdout == "No functions.\n"


def test_logs_follow_polls_from_the_last_offset_until_interrupted() -> None:
    sinces: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        sinces.append(since)
        if len(sinces) == 3:
            raise KeyboardInterrupt
        return httpx.Response(200, json={"logs": f"line {len(sinces)}\n", "next": len(sinces)})

    result = run(handler, ["logs", "f", "--follow"])
    assert result.exit_code == 0
    assert sinces == [None, "1", "2"]
    assert result.stdout == "line 1\nline 2\n"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    """What `ember serve` would run the server with: (settings, log level) per call."""
    calls: list[tuple[Any, str]] = []
    fake = types.ModuleType("ember.server")
    fake.serve = lambda settings, log_level: calls.append((settings, log_level))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ember.server", fake)
    return calls


def test_serve_builds_settings_from_options_and_env(
    tmp_path: Path, served: list[tuple[Any, str]]
) -> None:
    calls = served
    result = CliRunner().invoke(
        main,
        ["serve", "--port", "9911", "--sandbox", "process", "--log-level", "debug"],
        env={"EMBER_DATA_DIR": str(tmp_path), "EMBER_KEEP_ALIVE": "5"},
    )

    assert result.exit_code == 0, result.output
    settings, log_level = calls[0]
    assert (settings.port, settings.sandbox, settings.data_dir) == (9911, "process", tmp_path)
    assert settings.keep_alive_seconds == 5.0
    assert log_level == "debug"
    # Embedded unless told otherwise: no database, the default queue and blobs of that mode.
    assert (settings.database_url, settings.queue, settings.blob_store) == (None, "sqlite", "local")
    assert settings.throttle_unavailable == "deny"


def test_serve_takes_the_cluster_options_from_the_environment(
    tmp_path: Path, served: list[tuple[Any, str]]
) -> None:
    calls = served
    url = "postgresql://postgres@127.0.0.1:5432/ember"
    environment = {
        "EMBER_DATA_DIR": str(tmp_path),
        "EMBER_DATABASE_URL": url,
        "EMBER_THROTTLE_UNAVAILABLE": "allow",
    }

    result = CliRunner().invoke(main, ["serve", "--visibility-margin", "2"], env=environment)

    assert result.exit_code == 0, result.output
    settings = calls[0][0]
    assert (settings.database_url, settings.queue, settings.blob_store) == (
        url,
        "postgresql",
        "postgresql",
    )
    assert settings.throttle_unavailable == "allow"
    assert settings.visibility_margin_seconds == 2.0


def test_client_raises_api_error_with_status() -> None:
    with (
        EmberClient(
            "127.0.0.1:9900/", transport=httpx.MockTransport(lambda r: not_found("x"))
        ) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.get_function("x")
    assert (caught.value.status, caught.value.code) == (404, "ResourceNotFoundException")
    assert client.endpoint == "http://127.0.0.1:9900"


def test_serve_takes_brokers_from_the_environment_and_never_echoes_a_bad_one(
    tmp_path: Path, served: list[tuple[Any, str]]
) -> None:
    environment = {
        "EMBER_DATA_DIR": str(tmp_path),
        "EMBER_BROKERS": "orders=amqp://app:pw@rabbit:5672 events=nats://127.0.0.1:4222",
    }
    result = CliRunner().invoke(main, ["serve"], env=environment)
    assert result.exit_code == 0, result.output
    assert served[0][0].brokers == (
        ("orders", "amqp://app:pw@rabbit:5672"),
        ("events", "nats://127.0.0.1:4222"),
    )
    refused = CliRunner().invoke(
        main, ["serve", "--broker", "orders=http://app:s3cr3t@rabbit"], env=environment
    )
    assert refused.exit_code != 0 and "orders" in refused.output
    assert "s3cr3t" not in refused.output

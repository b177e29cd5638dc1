"""End-to-end: response streaming — InvokeWithResponseStream through boto3 and the
AWS CLI, RESPONSE_STREAM function URLs through httpx and curl, from a Python
handler returning a generator (ember's extension) and from a custom runtime
posting a chunked ``streaming`` response to the Runtime API.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import REGION, ROLE, Server, host_pid_of, lambda_client, sandboxes_of, wait_until
from ember.cli.credentials import Credentials

# Writes, sleeps, leaves a marker in its /tmp, writes again.
SLOW = """
import os
import time

def handler(event, context):
    yield "first "
    time.sleep(1)
    open("/tmp/after-sleep", "w").close()
    yield b"second"
"""

CHUNKS = """
def handler(event, context):
    print("streaming", event.get("n"))
    return (str(i) + "," for i in range(event.get("n", 3)))
"""

PLAIN = """
def handler(event, context):
    return {"plain": True}
"""

BREAKS = """
def handler(event, context):
    yield "partial"
    raise ValueError("broke mid-stream")
"""

SLEEPS = """
import time

def handler(event, context):
    yield "started"
    time.sleep(30)
    yield "never"
"""


def events(response: dict[str, Any]) -> list[dict[str, Any]]:
    return list(response["EventStream"])


def payload_of(received: list[dict[str, Any]]) -> bytes:
    return b"".join(e["PayloadChunk"]["Payload"] for e in received if "PayloadChunk" in e)


def complete_of(received: list[dict[str, Any]]) -> dict[str, Any]:
    assert "InvokeComplete" in received[-1], received
    return dict(received[-1]["InvokeComplete"])


def test_a_generator_streams_through_boto3(aws: Any, deploy: Callable[..., Any]) -> None:
    name = deploy(CHUNKS)["FunctionName"]
    response = aws.invoke_with_response_stream(
        FunctionName=name, Payload=json.dumps({"n": 4}), LogType="Tail"
    )
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    received = events(response)
    assert payload_of(received) == b"0,1,2,3,"
    assert sum("PayloadChunk" in e for e in received) == 4  # one event per write
    complete = complete_of(received)
    assert "ErrorCode" not in complete
    assert "streaming 4" in base64.b64decode(complete["LogResult"]).decode()
    # The same function through plain Invoke: the chunks gathered into the payload.
    plain = aws.invoke(FunctionName=name, Payload=json.dumps({"n": 3}))
    assert plain["Payload"].read() == b"0,1,2,"


def test_a_function_that_does_not_stream_answers_in_one_chunk(
    aws: Any, deploy: Callable[..., Any]
) -> None:
    name = deploy(PLAIN)["FunctionName"]
    received = events(aws.invoke_with_response_stream(FunctionName=name))
    assert [list(e) for e in received] == [["PayloadChunk"], ["InvokeComplete"]]
    assert json.loads(payload_of(received)) == {"plain": True}


def test_the_first_chunk_arrives_before_the_handler_finishes(
    server: Server, aws: Any, deploy: Callable[..., Any]
) -> None:
    name = deploy(SLOW)["FunctionName"]
    stream = iter(aws.invoke_with_response_stream(FunctionName=name)["EventStream"])
    first = next(stream)
    assert first["PayloadChunk"]["Payload"] == b"first "
    # The handler writes its marker after its sleep, after the first write.
    marker = Path(f"/proc/{host_pid_of(server, name)}/root/tmp/after-sleep")
    assert not marker.exists()
    rest = list(stream)
    assert payload_of(rest) == b"second"
    assert marker.exists()  # the check above could see it: the order is proven


def test_an_error_mid_stream_ends_it_with_invoke_complete(
    aws: Any, deploy: Callable[..., Any]
) -> None:
    name = deploy(BREAKS)["FunctionName"]
    received = events(aws.invoke_with_response_stream(FunctionName=name))
    assert payload_of(received) == b"partial"
    complete = complete_of(received)
    assert complete["ErrorCode"] == "ValueError"
    assert complete["ErrorDetails"] == "broke mid-stream"


def test_the_timeout_ends_the_stream(aws: Any, deploy: Callable[..., Any]) -> None:
    name = deploy(SLEEPS, Timeout=1)["FunctionName"]
    received = events(aws.invoke_with_response_stream(FunctionName=name))
    assert payload_of(received) == b"started"
    complete = complete_of(received)
    assert complete["ErrorCode"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in complete["ErrorDetails"]


def test_errors_before_the_stream_are_json_errors(aws: Any, deploy: Callable[..., Any]) -> None:
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.invoke_with_response_stream(FunctionName="no-such-function")
    name = deploy(PLAIN)["FunctionName"]
    with pytest.raises(aws.exceptions.InvalidRequestContentException):
        aws.invoke_with_response_stream(FunctionName=name, Payload=b"{not json")
    dry = aws.invoke_with_response_stream(FunctionName=name, InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert list(dry["EventStream"]) == []  # nothing streams (and the connection is released)


def test_the_aws_cli_reads_the_stream(
    server: Server, deploy: Callable[..., Any], tmp_path: Path
) -> None:
    aws_cli = str(Path(sys.executable).parent / "aws")
    probe = subprocess.run(
        [aws_cli, "lambda", "invoke-with-response-stream", "help"],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PAGER": "cat"},
    )
    if probe.returncode != 0:
        # AWS CLI v1 (the one on PyPI) has no event-stream operations; v2 has.
        pytest.skip("this AWS CLI has no invoke-with-response-stream (AWS CLI v2 has)")
    name = deploy(CHUNKS)["FunctionName"]
    out = tmp_path / "out.json"
    done = subprocess.run(
        [
            aws_cli,
            "--endpoint-url",
            server.url,
            "lambda",
            "invoke-with-response-stream",
            "--function-name",
            name,
            "--payload",
            base64.b64encode(b'{"n": 2}').decode(),
            str(out),
        ],
        env=server.cli_env(AWS_CONFIG_FILE=os.devnull, AWS_MAX_ATTEMPTS="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b"0,1,"
    assert json.loads(done.stdout)["StatusCode"] == 200


# A function URL's stream: the prelude (a dict yielded first) sets status and headers.
PAGE = """
import time

def handler(event, context):
    yield {"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-Stream": "yes"},
           "cookies": ["a=1"]}
    yield "hello "
    time.sleep(1)
    open("/tmp/after-sleep", "w").close()
    yield "world"
"""


@pytest.fixture
def deploy_bootstrap(aws: Any, unique_name: str) -> Iterator[Callable[[str], str]]:
    """Create a ``provided.al2023`` function from a bootstrap's source; deleted after."""
    created: list[str] = []

    def create(bootstrap: str) -> str:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            archive.writestr(info, bootstrap)
        name = f"{unique_name}-rt{len(created)}"
        aws.create_function(
            FunctionName=name,
            Runtime="provided.al2023",
            Role=ROLE,
            Handler="none",
            Code={"ZipFile": buffer.getvalue()},
        )
        created.append(name)
        return name

    yield create
    for name in created:
        aws.delete_function(FunctionName=name)


@pytest.fixture
def stream_url(
    aws: Any, deploy: Callable[..., Any], deploy_bootstrap: Callable[[str], str]
) -> Callable[..., tuple[str, str]]:
    """Deploy ``source`` (a Python handler, or a custom runtime's bootstrap) with a
    function URL, RESPONSE_STREAM unless told; returns (function name, URL)."""

    def make(source: str, mode: str = "RESPONSE_STREAM") -> tuple[str, str]:
        custom = source.startswith("#!")
        name = deploy_bootstrap(source) if custom else deploy(source)["FunctionName"]
        config = aws.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode=mode)
        return name, str(config["FunctionUrl"])

    return make


def test_a_url_streams_with_the_preludes_status_and_headers(
    server: Server, stream_url: Callable[..., tuple[str, str]]
) -> None:
    name, url = stream_url(PAGE)
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 201
        assert response.headers["content-type"] == "text/plain"
        assert response.headers["x-stream"] == "yes"
        assert response.headers["set-cookie"] == "a=1"
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["x-amzn-requestid"]
        pieces = response.iter_raw()
        assert next(pieces) == b"hello "
        marker = Path(f"/proc/{host_pid_of(server, name)}/root/tmp/after-sleep")
        assert not marker.exists()  # the handler has not finished
        assert b"".join(pieces) == b"world"
        assert marker.exists()


def test_curl_reads_a_streaming_url(stream_url: Callable[..., tuple[str, str]]) -> None:
    _, url = stream_url(CHUNKS)
    done = subprocess.run(
        ["curl", "-sS", "-N", "-i", url], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: application/octet-stream" in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"0,1,2,"


def test_a_url_that_does_not_stream_and_buffered_urls_answer_as_before(
    stream_url: Callable[..., tuple[str, str]],
) -> None:
    _, streaming = stream_url(PLAIN)
    answer = httpx.get(streaming, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"plain": True}
    _, buffered = stream_url(PAGE, mode="BUFFERED")
    whole = httpx.get(buffered, timeout=30)  # the gathered stream is no JSON answer
    assert whole.status_code == 502 and whole.content == b"Internal Server Error"
    _, failing = stream_url(BREAKS)
    broken = httpx.get(failing, timeout=30)
    assert broken.status_code == 200 and broken.content == b"partial"  # cut where it failed


def test_a_client_gone_mid_stream_leaves_the_sandbox_working(
    stream_url: Callable[..., tuple[str, str]],
) -> None:
    _, url = stream_url(PAGE)
    with httpx.stream("GET", url, timeout=30) as response:
        assert next(response.iter_raw()) == b"hello "
    # Closed after the first chunk; the next request is served in full.
    assert httpx.get(url, timeout=30).content == b"hello world"


# A custom runtime streaming through the Runtime API: chunked, with error trailers.
STREAMING_BOOTSTRAP = """#!/usr/bin/env python3
import base64
import io
import json
import os
import socket
import time
import urllib.request

ADDRESS = os.environ["AWS_LAMBDA_RUNTIME_API"]
API = "http://" + ADDRESS + "/2018-06-01/runtime"
HOST, PORT = ADDRESS.split(":")


def chunk(sock, data):
    sock.sendall(b"%x\\r\\n%s\\r\\n" % (len(data), data))


while True:
    with urllib.request.urlopen(API + "/invocation/next") as answer:
        request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(answer.read())
    http = event.get("rawPath") is not None  # a function URL's request
    content_type = (
        "application/vnd.awslambda.http-integration-response" if http else "text/plain"
    )
    sock = socket.create_connection((HOST, int(PORT)))
    sock.sendall(
        (
            "POST /2018-06-01/runtime/invocation/" + request_id + "/response HTTP/1.1\\r\\n"
            "Host: " + ADDRESS + "\\r\\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\\r\\n"
            "Transfer-Encoding: chunked\\r\\n"
            "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\\r\\n"
            "Content-Type: " + content_type + "\\r\\n\\r\\n"
        ).encode()
    )
    if http:
        prelude = {"statusCode": 202, "headers": {"content-type": "text/csv"}}
        chunk(sock, json.dumps(prelude).encode() + b"\\0" * 8)
    chunk(sock, b"one ")
    if event.get("slow"):
        time.sleep(1)
        open("/tmp/after-sleep", "w").close()
    chunk(sock, b"two")
    if event.get("fail"):
        error = json.dumps({"errorType": "Custom.Failed", "errorMessage": "gave up"})
        sock.sendall(
            b"0\\r\\nLambda-Runtime-Function-Error-Type: Custom.Failed\\r\\n"
            b"Lambda-Runtime-Function-Error-Body: "
            + base64.b64encode(error.encode())
            + b"\\r\\n\\r\\n"
        )
    else:
        sock.sendall(b"0\\r\\n\\r\\n")
    sock.recv(65536)
    sock.close()
"""


def test_a_custom_runtime_streams_through_the_runtime_api(
    server: Server, aws: Any, deploy_bootstrap: Callable[[str], str]
) -> None:
    name = deploy_bootstrap(STREAMING_BOOTSTRAP)
    response = aws.invoke_with_response_stream(FunctionName=name, Payload=b'{"slow": true}')
    stream = iter(response["EventStream"])
    assert next(stream)["PayloadChunk"]["Payload"] == b"one "
    marker = Path(f"/proc/{host_pid_of(server, name)}/root/tmp/after-sleep")
    assert not marker.exists()
    rest = list(stream)
    assert payload_of(rest) == b"two" and "ErrorCode" not in complete_of(rest)
    assert marker.exists()

    failed = events(aws.invoke_with_response_stream(FunctionName=name, Payload=b'{"fail": 1}'))
    assert payload_of(failed) == b"one two"
    assert complete_of(failed)["ErrorCode"] == "Custom.Failed"
    assert complete_of(failed)["ErrorDetails"] == "gave up"


def test_a_custom_runtimes_http_prelude_sets_a_urls_status(
    stream_url: Callable[..., tuple[str, str]],
) -> None:
    _, url = stream_url(STREAMING_BOOTSTRAP)
    done = subprocess.run(
        ["curl", "-sS", "-N", "-i", url], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202")
    assert b"content-type: text/csv" in head.lower()
    assert body == b"one two"


def test_a_reader_gone_mid_stream_leaves_the_function_working(
    server: Server, aws: Any, deploy: Callable[..., Any]
) -> None:
    name = deploy(SLOW)["FunctionName"]
    path = f"/2021-11-15/functions/{name}/response-streaming-invocations"
    with server.http.stream("POST", path, content=b"{}") as response:
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
        assert b"first " in next(response.iter_raw())
    # The connection is gone; the handler is still asleep.
    # The invocation runs to its end and its sandbox goes back to the pool, whole.
    (sandbox,) = wait_until(
        lambda: [s for s in sandboxes_of(server, name) if s["state"] == "idle"] or None
    )
    assert sandbox["invocations"] == 1
    again = events(aws.invoke_with_response_stream(FunctionName=name))
    assert payload_of(again) == b"first second"
    assert [s["id"] for s in sandboxes_of(server, name)] == [sandbox["id"]]


def test_streaming_needs_lambda_invoke_function(
    server: Server, deploy: Callable[..., Any], unique_name: str
) -> None:
    name = deploy(PLAIN)["FunctionName"]
    clients = {}
    for user, action in (("reader", "lambda:GetFunction"), ("invoker", "lambda:InvokeFunction")):
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action,
                                                          "Resource": "*"}]}  # fmt: skip
        created = server.http.post(
            "/_ember/keys", json={"UserName": f"{unique_name}-{user}", "Policy": json.dumps(policy)}
        )
        assert created.status_code == 201, created.text
        keys = created.json()
        clients[user] = lambda_client(
            server,
            Credentials(keys["AccessKeyId"], keys["SecretAccessKey"], None, REGION, "test"),
        )
    refused = clients["reader"]
    with pytest.raises(refused.exceptions.ClientError) as caught:
        refused.invoke_with_response_stream(FunctionName=name)
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "lambda:InvokeFunction" in caught.value.response["Error"]["Message"]
    allowed = clients["invoker"].invoke_with_response_stream(FunctionName=name)
    assert json.loads(payload_of(events(allowed))) == {"plain": True}

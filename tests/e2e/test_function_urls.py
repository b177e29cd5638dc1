"""End-to-end: function URLs — the config API with boto3, HTTP requests with httpx.

Every URL here has AuthType NONE, so its requests go unsigned, as a browser's would.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import function_arn

from conftest import ROLE, Server, lambda_client, make_zip

# Returns the event it got, with a status, a header and a cookie of its own.
ECHO = """
import json

def handler(event, context):
    return {
        "statusCode": 201,
        "headers": {"X-Echo": "yes", "Content-Type": "application/json"},
        "cookies": ["session=abc; Path=/", "theme=dark"],
        "body": json.dumps(event),
    }
"""

# Sends the request body back reversed, as binary.
REVERSE = """
import base64
import re

def handler(event, context):
    raw = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream"},
        "body": base64.b64encode(raw[::-1]).decode(),
        "isBase64Encoded": True,
    }
"""

PLAIN = """
def handler(event, context):
    return {"answer": 42, "path": event["rawPath"]}
"""

FAILS = """
def handler(event, context):
    raise RuntimeError("secret internals")
"""


@pytest.fixture
def url_of(aws: Any, deploy: Callable[..., Any]) -> Callable[..., str]:
    """Deploy ``source`` with a function URL (AuthType NONE); returns the URL."""

    def make(source: str, **settings: Any) -> str:
        name = deploy(source)["FunctionName"]
        return str(
            aws.create_function_url_config(FunctionName=name, AuthType="NONE", **settings)[
                "FunctionUrl"
            ]
        )

    return make


def test_url_config_lifecycle(aws: Any, server: Server, deploy: Callable[..., Any]) -> None:
    name = deploy(PLAIN)["FunctionName"]
    created = aws.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionUrl"] == f"{server.url}/url/{name}/"
    assert created["FunctionArn"] == function_arn(name)
    assert created["AuthType"] == "NONE" and created["InvokeMode"] == "BUFFERED"
    with pytest.raises(aws.exceptions.ResourceConflictException) as conflict:
        aws.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert "FunctionUrlConfig exists for this Lambda function" in str(conflict.value)

    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET"], "MaxAge": 60}
    updated = aws.update_function_url_config(FunctionName=name, Cors=cors, AuthType="AWS_IAM")
    assert updated["Cors"] == cors and updated["AuthType"] == "AWS_IAM"
    got = aws.get_function_url_config(FunctionName=name)
    assert got["Cors"] == cors and got["CreationTime"] == created["CreationTime"]
    listed = aws.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [created["FunctionUrl"]]

    deleted = aws.delete_function_url_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_function_url_config(FunctionName=name)
    assert httpx.get(created["FunctionUrl"]).status_code == 404
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.create_function_url_config(FunctionName="no-such-function", AuthType="NONE")


def test_get_with_query_and_cookies_builds_the_2_0_event(url_of: Callable[..., str]) -> None:
    url = url_of(ECHO)
    response = httpx.get(
        url + "some/path",
        params=[("a", "1"), ("a", "2"), ("b", "x y")],
        headers={"Cookie": "c1=v1; c2=v2", "X-Custom": "Hello", "User-Agent": "tests/1.0"},
    )
    assert response.status_code == 201
    assert response.headers["x-echo"] == "yes"
    assert response.headers.get_list("set-cookie") == ["session=abc; Path=/", "theme=dark"]
    event = response.json()
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path"
    assert event["rawQueryString"] == "a=1&a=2&b=x+y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-custom"] == "Hello" and "cookie" not in event["headers"]
    assert event["isBase64Encoded"] is False and "body" not in event
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/some/path",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1.0",
    }
    assert context["stage"] == "$default" and context["accountId"] == "000000000000"
    assert context["requestId"] == response.headers["x-amzn-requestid"]
    assert isinstance(context["timeEpoch"], int) and context["time"].endswith("+0000")


def test_post_binary_body_round_trips_as_base64(url_of: Callable[..., str]) -> None:
    url = url_of(REVERSE)
    payload = bytes(range(256))
    response = httpx.post(url, content=payload, headers={"content-type": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == payload[::-1]
    text = httpx.post(url, content="hello", headers={"content-type": "text/plain"})
    assert text.content == b"olleh"


def test_a_plain_return_value_is_a_json_200(url_of: Callable[..., str]) -> None:
    response = httpx.put(url_of(PLAIN) + "x")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"answer": 42, "path": "/x"}


def test_a_function_error_is_a_502_with_a_short_body(url_of: Callable[..., str]) -> None:
    response = httpx.get(url_of(FAILS))
    assert response.status_code == 502
    assert response.text == "Internal Server Error"


def test_throttled_requests_get_429(aws: Any, url_of: Callable[..., str]) -> None:
    url = url_of(PLAIN)
    name = url.rstrip("/").rsplit("/", 1)[1]
    aws.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    response = httpx.get(url)
    assert response.status_code == 429
    assert response.json() == {"Message": "Rate Exceeded."}


def test_cors_preflight_and_headers(url_of: Callable[..., str]) -> None:
    cors = {
        "AllowOrigins": ["https://app.example"],
        "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-token"],
        "MaxAge": 300,
    }
    url = url_of(PLAIN, Cors=cors)
    origin = {"Origin": "https://app.example"}
    preflight = httpx.options(url, headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    assert preflight.headers["access-control-max-age"] == "300"
    simple = httpx.get(url, headers=origin)
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.get(url, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_url_of_a_missing_function_is_404(server: Server) -> None:
    assert httpx.get(f"{server.url}/url/no-such-function/").status_code == 404
    encoded = base64.b64encode(b"x").decode()
    assert httpx.post(f"{server.url}/url/no-such-function", content=encoded).status_code == 404


def test_a_recreated_function_does_not_inherit_the_old_url_after_a_restart(
    spawn_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = spawn_server(tmp_path / "data", "--sandbox", "process")
    aws = lambda_client(server)
    create = {
        "FunctionName": "reborn",
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": PLAIN})},
    }
    aws.create_function(**create)
    aws.create_function_url_config(FunctionName="reborn", AuthType="NONE")
    aws.delete_function(FunctionName="reborn")
    aws.create_function(**create)
    server.stop()

    again = lambda_client(spawn_server(tmp_path / "data", "--sandbox", "process"))
    with pytest.raises(again.exceptions.ResourceNotFoundException):
        again.get_function_url_config(FunctionName="reborn")


# A web app as a framework would serve it at "/": root-relative links, a redirect,
# and an OpenAPI page that loads its schema from "/openapi.json" (as FastAPI's /docs).
WEB_APP = """
import json

PAGES = {
    "/": ("text/html", '<a href="/docs">docs</a> <a href="/items/1">item</a>'),
    "/docs": ("text/html", '<script>SwaggerUIBundle({url: "/openapi.json"})</script>'),
    "/openapi.json": ("application/json", json.dumps({"openapi": "3.1.0", "paths": {}})),
    "/items/1": ("application/json", json.dumps({"id": 1})),
}

def handler(event, context):
    path = event["rawPath"]
    if path == "/old":
        return {"statusCode": 307, "headers": {"location": "/items/1"}, "body": ""}
    if path not in PAGES:
        return {"statusCode": 404, "body": "not found"}
    kind, body = PAGES[path]
    return {"statusCode": 200, "headers": {"content-type": kind}, "body": body}
"""
HOST_URL = r"^http://([a-z2-7]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/$"


def _browse(url: str) -> httpx.Response:
    """GET ``url`` as a browser does for ``*.localhost``: to loopback, with its Host."""
    target = httpx.URL(url)
    return httpx.get(
        target.copy_with(host="127.0.0.1"),
        headers={"host": f"{target.host}:{target.port}"},
        timeout=30,
    )


def test_a_web_app_runs_at_the_root_of_its_host_style_url(
    spawn_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = spawn_server(tmp_path / "data", "--url-domain", "localhost")
    aws = lambda_client(server)
    aws.create_function(
        FunctionName="web",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": WEB_APP})},
    )
    created = aws.create_function_url_config(FunctionName="web", AuthType="NONE")
    url = created["FunctionUrl"]
    assert re.match(HOST_URL, url), url
    assert aws.get_function_url_config(FunctionName="web")["FunctionUrl"] == url

    home = _browse(url)
    assert home.status_code == 200, home.text
    for link in re.findall(r'href="([^"]+)"', home.text):  # root-relative links resolve
        assert _browse(str(httpx.URL(url).join(link))).status_code == 200, link
    docs = _browse(str(httpx.URL(url).join("/docs")))
    schema_path = re.search(r'url: "([^"]+)"', docs.text)[1]  # type: ignore[index]
    assert _browse(str(httpx.URL(url).join(schema_path))).json()["openapi"] == "3.1.0"

    moved = _browse(str(httpx.URL(url).join("/old")))
    assert moved.status_code == 307
    assert _browse(str(httpx.URL(url).join(moved.headers["location"]))).json() == {"id": 1}
    # The path form still answers, for resolvers that do not map *.localhost to loopback.
    assert httpx.get(f"{server.url}/url/web/items/1", timeout=30).json() == {"id": 1}

"""Calls a web page can make a browser send, against a real ``ember serve --auth none``.

A page can POST ``text/plain`` to ``127.0.0.1:PORT`` without a CORS preflight
and, by DNS rebinding, even read the answer: the request then names the
attacker's host in ``Host``, or carries the page's ``Origin``. Neither may
reach the Lambda API or ember's routes (421 and 403, in Lambda's error shape,
nothing created or run); names the operator allowed (``--allow-host``) and
loopback still work, and function URLs, public by design, are reached by their
own host name (``<id>.lambda-url.<region>.<url domain>``), never the API.

And identity a request merely claims: with ``--auth none`` a per-caller rate
limit keys on the client address, which ``X-Forwarded-For`` changes only when
sent by a proxy named with ``--trusted-proxy``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, Server, lambda_client, make_zip

Spawn = Callable[..., Server]
ALLOWED = "ember.example"
URL_DOMAIN = "lambda.test"
SOURCE = """
import json

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"ran": True, "path": event.get("rawPath")})}
"""


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Authentication off: only the Host and Origin checks stand between a page and it."""
    data = tmp_path_factory.mktemp("forged") / "data"
    args = ["--auth", "none", "--allow-host", ALLOWED, "--url-domain", URL_DOMAIN]
    instance = Server(data, extra_args=args).start()
    yield instance
    instance.stop()


def create_body(name: str) -> bytes:
    """CreateFunction's JSON, as a page would send it: a text/plain form body."""
    code = base64.b64encode(make_zip({"app.py": SOURCE})).decode()
    body = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": code},
    }
    return json.dumps(body).encode()


def post_create(server: Server, name: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/2015-03-31/functions",
        content=create_body(name),
        headers={"content-type": "text/plain", **headers},
        timeout=60,
    )


def exists(server: Server, name: str) -> bool:
    try:
        lambda_client(server).get_function(FunctionName=name)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ResourceNotFoundException"
        return False
    return True


def assert_lambda_error(response: httpx.Response, status: int, code: str) -> None:
    """Lambda's error shape, as botocore reads it: the type header and a message."""
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-errortype"] == code
    assert response.headers["x-amzn-requestid"]
    assert response.json()["message"]


def test_a_rebound_host_creates_nothing(open_server: Server) -> None:
    port = open_server.port
    for host in ("attacker.example", f"attacker.example:{port}", f"127.0.0.1.nip.io:{port}"):
        refused = post_create(open_server, "rebound", host=host)
        assert_lambda_error(refused, 421, "MisdirectedRequestException")
    assert not exists(open_server, "rebound")
    # Every route is covered, Invoke's lean path and ember's own routes included.
    for method, path in (
        ("POST", "/2015-03-31/functions/rebound/invocations"),
        ("GET", "/2015-03-31/functions/"),
        ("GET", "/_ember/accounts"),
        ("POST", "/mcp"),
    ):
        answer = httpx.request(
            method, open_server.url + path, headers={"host": "attacker.example"}, timeout=30
        )
        assert_lambda_error(answer, 421, "MisdirectedRequestException")
    # Liveness answers whatever the name: probes use any address of the node.
    assert httpx.get(open_server.url + "/health", headers={"host": "lb.internal"}).is_success


def test_a_foreign_origin_creates_nothing(open_server: Server) -> None:
    for origin in ("http://attacker.example", "null", f"http://{ALLOWED}.attacker.example"):
        refused = post_create(open_server, "cross-site", origin=origin)
        assert_lambda_error(refused, 403, "AccessDeniedException")
    assert not exists(open_server, "cross-site")
    invoke = httpx.post(
        f"{open_server.url}/2015-03-31/functions/cross-site/invocations",
        headers={"origin": "https://attacker.example"},
        timeout=30,
    )
    assert_lambda_error(invoke, 403, "AccessDeniedException")


def test_loopback_and_allowed_names_are_served(open_server: Server) -> None:
    port = open_server.port
    made = post_create(open_server, "same-origin", origin=f"http://localhost:{port}")
    assert made.status_code == 201, made.text
    for headers in (
        {"host": f"localhost:{port}"},
        {"host": f"[::1]:{port}"},
        {"host": ALLOWED},
        {"host": f"{ALLOWED}:443", "origin": f"https://{ALLOWED}"},
    ):
        listed = httpx.get(f"{open_server.url}/2015-03-31/functions", headers=headers)
        assert listed.status_code == 200, (headers, listed.text)
    lambda_client(open_server).delete_function(FunctionName="same-origin")


def test_a_host_style_url_reaches_its_function_never_the_api(open_server: Server) -> None:
    aws = lambda_client(open_server)
    aws.create_function(
        FunctionName="web",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SOURCE})},
    )
    url = aws.create_function_url_config(FunctionName="web", AuthType="NONE")["FunctionUrl"]
    parts = urlsplit(url)
    assert parts.hostname is not None
    label, suffix = parts.hostname.split(".", 1)
    assert suffix == f"lambda-url.us-east-1.{URL_DOMAIN}" and len(label) == 32
    assert parts.port == open_server.port and parts.path == "/"
    host = {"host": parts.netloc}
    # A page may call a public URL from anywhere: its Origin does not matter here.
    reached = httpx.get(
        f"{open_server.url}/hello", headers={**host, "origin": "https://app.example"}
    )
    assert reached.status_code == 200, reached.text
    assert reached.json() == {"ran": True, "path": "/hello"}
    # An API path under a URL's host is the function's path, not a call of the API.
    api_path = "/2015-03-31/functions/"
    assert httpx.get(open_server.url + api_path, headers=host).json()["path"] == api_path
    # A URL id nobody has: 404 from function URLs, not the API's answer.
    unknown = {"host": f"{'a' * 32}.lambda-url.us-east-1.{URL_DOMAIN}:{open_server.port}"}
    missing = httpx.get(open_server.url + api_path, headers=unknown)
    assert missing.status_code == 404 and "Functions" not in missing.text
    # ember's path form keeps working.
    assert httpx.get(f"{open_server.url}/url/web/x").json()["path"] == "/x"
    aws.delete_function(FunctionName="web")
    assert httpx.get(f"{open_server.url}/hello", headers=host).status_code == 404


# --- identity a request merely claims --------------------------------------------------


APP = "def handler(event, context):\n    return {'ok': True}\n"


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 is local)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=120)


def invoke(client: httpx.Client, server: Server, name: str, forwarded: str | None) -> int:
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    response = client.post(
        f"{server.url}/2015-03-31/functions/{name}/invocations", headers=headers, content=b"{}"
    )
    return response.status_code


def test_rate_limit_callers_are_addresses_and_trusted_proxies_only(spawn_server: Spawn) -> None:
    proxy = "127.0.0.3"
    server = spawn_server(None, "--auth", "none", "--trusted-proxy", f"{proxy}/32")
    name = "per-caller"
    lambda_client(server).create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": APP})},
    )
    limit = {"scope": "caller", "algorithm": "fixed-window", "rate": "2/h"}
    response = server.http.put(f"/_ember/functions/{name}/limits", json=limit, timeout=10)
    assert response.status_code == 200, response.text
    with from_address("127.0.0.1") as direct, from_address("127.0.0.2") as other:
        # Not from a trusted proxy: X-Forwarded-For is the client's own claim, ignored.
        calls = [invoke(direct, server, name, f"10.0.0.{i}") for i in range(3)]
        assert calls == [200, 200, 429]
        # Another address is another caller (not everyone the default root).
        assert invoke(other, server, name, None) == 200
    with from_address(proxy) as trusted:
        # Through the trusted proxy, the client it names is the caller.
        assert [invoke(trusted, server, name, "10.0.0.7") for _ in range(2)] == [200, 200]
        assert invoke(trusted, server, name, "10.0.0.8") == 200
        assert invoke(trusted, server, name, "10.0.0.7") == 429
        # The hop the trusted proxy saw (the rightmost untrusted one) is the caller: a
        # client prepending made-up addresses does not escape its limit.
        assert invoke(trusted, server, name, "10.0.0.9, 10.0.0.8") == 200
        assert invoke(trusted, server, name, "10.0.0.10, 10.0.0.8") == 429

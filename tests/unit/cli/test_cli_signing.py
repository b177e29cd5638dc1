"""The CLI's requests are signed so that ember's own verifier accepts them.

A `httpx.MockTransport` hands each request, as it would leave the machine, to
`ember.auth.sigv4.Verifier` (the server's check): a signature it accepts is
one the server accepts. The verifier's clock is the request's own X-Amz-Date.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ember.auth.principals import Principal
from ember.auth.sigv4 import HttpRequest, Verifier
from ember.cli.client import EmberClient, SigV4
from ember.cli.credentials import Credentials
from ember.cli.main import CliState, main
from ember.errors import AuthError, InvalidSignature

ROOT = Principal("000000000000")
KEYS = Credentials("AKIAEXAMPLEROOT00000", "s3cr3t/with+odd=chars", None, "us-east-1", "test")


def as_received(request: httpx.Request) -> HttpRequest:
    """The request as the server's ASGI scope would show it."""
    return HttpRequest(
        method=request.method,
        path=request.url.raw_path.split(b"?", 1)[0].decode("latin-1"),
        query=request.url.query.decode("latin-1"),
        headers=[(name.lower(), value) for name, value in request.headers.raw],
        body=request.read(),
    )


def verify(request: httpx.Request, region: str = "us-east-1") -> Principal:
    stamp = request.headers["x-amz-date"]
    signed_at = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    lookup = {KEYS.access_key: (KEYS.secret_key, ROOT)}.get
    verifier = Verifier(lookup, region=region, clock=lambda: float(signed_at))
    return verifier.verify(as_received(request))


Tamper = Callable[[httpx.Request], httpx.Request]


def checking_client(seen: list[Principal], tamper: Tamper = lambda r: r) -> EmberClient:
    """A signing client whose "server" verifies, then answers an empty JSON object."""

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            seen.append(verify(tamper(request)))
        except AuthError as exc:
            return httpx.Response(403, headers={"x-amzn-ErrorType": exc.code}, json={})
        return httpx.Response(200, json={"Functions": [], "Keys": []})

    return EmberClient(
        "http://127.0.0.1:9900", auth=SigV4(KEYS), transport=httpx.MockTransport(handler)
    )


def test_every_kind_of_request_is_signed_as_the_server_expects() -> None:
    seen: list[Principal] = []
    with checking_client(seen) as client:
        client.invoke("hello", b'{"a": "b \\u00e9"}')  # a body: its hash is signed
        client.get_function("arn:aws:lambda:us-east-1:000000000000:function:hello:live")
        client.list_functions()  # a query string
        client.keys("123456789012")
        client.delete_key("AKIA/odd key")
    assert seen == [ROOT] * 5


def test_a_body_changed_on_the_way_is_refused() -> None:
    def swap_body(request: httpx.Request) -> httpx.Request:
        return httpx.Request(
            request.method, request.url, headers=request.headers, content=b'{"a": "evil"}'
        )

    with checking_client([], swap_body) as client, pytest.raises(Exception) as caught:
        client.invoke("hello", b'{"a": "good"}')
    assert "InvalidSignatureException" in str(caught.value)


def test_a_signature_for_another_region_is_refused() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:9900/2015-03-31/functions")
    flow = SigV4(Credentials("AKIAEXAMPLEROOT00000", KEYS.secret_key, None, "eu-west-1", "t"))
    signed = next(flow.auth_flow(request))
    with pytest.raises(InvalidSignature):
        verify(signed, region="us-east-1")


def test_accounts_and_keys_commands_send_what_the_routes_take(tmp_path: Path) -> None:
    sent: list[tuple[str, str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        verify(request)
        body = json.loads(request.content) if request.content else None
        sent.append((request.method, str(request.url), body))
        if request.url.path == "/_ember/accounts" and request.method == "POST":
            created = {"AccountId": "123456789012", "Name": "team", "Created": "now"}
            return httpx.Response(201, json={**created, **KEY_ANSWER})
        if request.method == "POST":
            return httpx.Response(201, json={**KEY_ANSWER, "AccountId": "1", "UserName": "bob"})
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"Keys": [LISTED], "Accounts": []})

    policy = tmp_path / "policy.json"
    policy.write_text('{"Version": "2012-10-17", "Statement": []}')
    transport = httpx.MockTransport(handler)
    state = CliState(
        client_factory=lambda url: EmberClient(url, auth=SigV4(KEYS), transport=transport)
    )
    runner = CliRunner()
    created = runner.invoke(main, ["accounts", "create", "team"], obj=state)
    assert created.exit_code == 0, created.output
    assert "123456789012" in created.output and KEY_ANSWER["SecretAccessKey"] in created.output
    args = ["keys", "create", "--account", "1", "--user", "bob", "--policy", str(policy)]
    assert runner.invoke(main, args, obj=state).exit_code == 0
    listed = runner.invoke(main, ["keys", "ls", "--account", "1"], obj=state)
    assert "AKIALISTED" in listed.output and "(root)" in listed.output
    assert runner.invoke(main, ["keys", "rm", "AKIALISTED"], obj=state).exit_code == 0
    assert runner.invoke(main, ["accounts", "ls"], obj=state).output == "No accounts.\n"
    assert sent == [
        ("POST", "http://127.0.0.1:9900/_ember/accounts", {"Name": "team"}),
        (
            "POST",
            "http://127.0.0.1:9900/_ember/keys",
            {"AccountId": "1", "UserName": "bob", "Policy": policy.read_text()},
        ),
        ("GET", "http://127.0.0.1:9900/_ember/keys?AccountId=1", None),
        ("DELETE", "http://127.0.0.1:9900/_ember/keys/AKIALISTED", None),
        ("GET", "http://127.0.0.1:9900/_ember/accounts", None),
    ]


KEY_ANSWER = {"AccessKeyId": "AKIANEW", "SecretAccessKey": "shown-once"}
LISTED = {"AccessKeyId": "AKIALISTED", "AccountId": "1", "UserName": None, "Created": "now"}


def test_keys_create_refuses_a_policy_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text("{nope")
    result = CliRunner().invoke(main, ["keys", "create", "--policy", str(bad)], obj=CliState())
    assert result.exit_code == 2
    assert "--policy" in result.output and "not valid JSON" in result.output


def test_a_command_without_credentials_names_where_it_looked(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_PROFILE": "",
        "EMBER_CREDENTIALS": "",
        "EMBER_DATA_DIR": str(tmp_path / "data"),
    }
    result = CliRunner().invoke(main, ["ls"], obj=CliState(), env=env)
    assert result.exit_code == 1
    assert "error: NoCredentials: no credentials found" in result.output
    assert str(tmp_path / "data" / "credentials") in result.output

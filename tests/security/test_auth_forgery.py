"""Forged, replayed, tampered and cross-account requests: each refused, none reaches a sandbox.

A real ``ember serve`` with authentication on (the default). Account A (the
default account, whose root key the server wrote to ``<data-dir>/credentials``)
owns one function; account B and a restricted user of A are made through the
API. Every case below is one request built by hand: signed by botocore's own
signer, then damaged in one way (or signed by someone who may not do it). Each
must get Lambda's status and error code, and after all of them A's function
has never run: no sandbox was ever made for it and its log is empty.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import datetime
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ROLE, Server, make_zip

REGION = "us-east-1"
FUNCTION = "forgery-target"
OTHER_FUNCTION = "forgery-other"
NEVER_CREATED = "forgery-never"
SOURCE = "def handler(event, context):\n    return {'ran': True}\n"


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str


@dataclass(frozen=True)
class Wire:
    """One request as it goes on the wire."""

    method: str
    path: str  # raw, percent-encoded, with the query if any
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Case:
    build: Callable[[Server, World], Wire]
    code: str
    status: int = 403
    message: str | None = None  # a substring of Lambda's message, when it is specific


@dataclass
class World:
    root: Key  # account A's root (the default account)
    other: Key = field(default_factory=lambda: Key("", ""))  # account B's root
    other_account: str = ""
    reader: Key = field(default_factory=lambda: Key("", ""))  # A's user allowed GetFunction only
    denied: Key = field(default_factory=lambda: Key("", ""))  # A's user: Allow *, Deny Invoke
    revoked: Key = field(default_factory=lambda: Key("", ""))  # a key of A, deleted


# --- signing ------------------------------------------------------------------------------------


def sign(
    server: Server,
    key: Key,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    region: str = REGION,
    service: str = "lambda",
    at: datetime.datetime | None = None,
) -> Wire:
    """``method path`` signed in the header form by botocore, at ``at`` (default: now)."""
    request = AWSRequest(method=method, url=server.url + path, data=body, headers=headers or {})
    signer = SigV4Auth(Credentials(key.access_key_id, key.secret), service, region)
    with _clock(at):
        signer.add_auth(request)
    return Wire(method, path, dict(request.headers.items()), body)


def presign(server: Server, key: Key, method: str, path: str, expires: int = 60) -> Wire:
    """``method path`` signed in the query form (a presigned URL)."""
    request = AWSRequest(method=method, url=server.url + path)
    SigV4QueryAuth(Credentials(key.access_key_id, key.secret), "lambda", REGION, expires).add_auth(
        request
    )
    signed_path = request.url[len(server.url) :]
    return Wire(method, signed_path, {})


def _clock(at: datetime.datetime | None) -> Any:
    if at is None:
        return contextlib.nullcontext()
    return mock.patch("botocore.auth.get_current_datetime", return_value=at)


def send(server: Server, wire: Wire) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        request = client.build_request(
            wire.method, wire.path, headers=wire.headers, content=wire.body
        )
        # httpx re-encodes the URL it is given; the signed raw path must go out as signed.
        request.url = request.url.copy_with(raw_path=wire.path.encode())
        return client.send(request)


def edit(wire: Wire, **changes: Any) -> Wire:
    return Wire(**{**wire.__dict__, **changes})


def with_header(wire: Wire, name: str, value: str) -> Wire:
    headers = {k: v for k, v in wire.headers.items() if k.lower() != name.lower()}
    return edit(wire, headers={**headers, name: value})


def without_header(wire: Wire, name: str) -> Wire:
    return edit(wire, headers={k: v for k, v in wire.headers.items() if k.lower() != name.lower()})


def edit_authorization(wire: Wire, old: str, new: str) -> Wire:
    authorization = wire.headers["Authorization"]
    assert old in authorization, authorization
    return with_header(wire, "Authorization", authorization.replace(old, new, 1))


# --- the requests being forged --------------------------------------------------------------------

INVOKE = f"/2015-03-31/functions/{FUNCTION}/invocations"
CONFIGURATION = f"/2015-03-31/functions/{FUNCTION}/configuration"
PAYLOAD = b'{"forged": true}'


def invoke(server: Server, world: World, key: Key | None = None, **kwargs: Any) -> Wire:
    return sign(
        server,
        key or world.root,
        "POST",
        INVOKE,
        PAYLOAD,
        {"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"},
        **kwargs,
    )


def arn(account: str, name: str = FUNCTION) -> str:
    return f"arn:aws:lambda:{REGION}:{account}:function:{name}"


def as_other(server: Server, world: World, method: str, path: str, body: bytes = b"") -> Wire:
    return sign(server, world.other, method, path, body)


def a_arn_path(suffix: str) -> str:
    return f"/2015-03-31/functions/{quote(arn('000000000000'), safe='')}{suffix}"


MINUTES = datetime.timedelta(minutes=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _create_body(name: str) -> bytes:
    code = base64.b64encode(make_zip({"app.py": SOURCE})).decode()
    return json.dumps(
        {
            "FunctionName": name,
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "Role": ROLE,
            "Code": {"ZipFile": code},
        }
    ).encode()


def _unsigned_host(server: Server, world: World) -> Wire:
    """Signed by hand with SignedHeaders lacking host: the request's own signature is right."""
    request = AWSRequest(method="GET", url=server.url + CONFIGURATION)
    signer = SigV4Auth(Credentials(world.root.access_key_id, world.root.secret), "lambda", REGION)
    real_headers_to_sign = signer.headers_to_sign

    def without_host(request: Any) -> Any:
        headers = real_headers_to_sign(request)
        del headers["host"]
        return headers

    with mock.patch.object(signer, "headers_to_sign", side_effect=without_host):
        signer.add_auth(request)
    return Wire("GET", CONFIGURATION, dict(request.headers.items()))


def _presigned_at(server: Server, world: World, at: datetime.datetime) -> str:
    with _clock(at):
        return presign(server, world.root, "GET", CONFIGURATION, expires=60).path


CASES: dict[str, Case] = {
    # No signature at all, or a signature that does not parse.
    "no Authorization header": Case(
        lambda s, w: without_header(invoke(s, w), "Authorization"),
        "MissingAuthenticationTokenException",
    ),
    "Authorization without Signature=": Case(
        lambda s, w: with_header(
            invoke(s, w),
            "Authorization",
            invoke(s, w).headers["Authorization"].split(", Signature=")[0],
        ),
        "IncompleteSignatureException",
    ),
    "unsupported algorithm": Case(
        lambda s, w: edit_authorization(invoke(s, w), "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
        "IncompleteSignatureException",
    ),
    "garbage Authorization": Case(
        lambda s, w: with_header(invoke(s, w), "Authorization", "Bearer let-me-in"),
        "IncompleteSignatureException",
    ),
    # Keys nobody issued, or secrets nobody holds.
    "unknown access key": Case(
        lambda s, w: invoke(s, w, Key("AKIAUNKNOWNUNKNOWN00", w.root.secret)),
        "UnrecognizedClientException",
        message="The security token included in the request is invalid.",
    ),
    "deleted access key": Case(
        lambda s, w: invoke(s, w, w.revoked),
        "UnrecognizedClientException",
    ),
    "right key id, wrong secret": Case(
        lambda s, w: invoke(s, w, Key(w.root.access_key_id, "x" * 40)),
        "InvalidSignatureException",
        message="The request signature we calculated does not match",
    ),
    "a session token with a long-term key": Case(
        lambda s, w: with_header(invoke(s, w), "X-Amz-Security-Token", "forged-session"),
        "UnrecognizedClientException",
    ),
    # Replayed outside the skew window, or dated in the future.
    "replayed six minutes later": Case(
        lambda s, w: invoke(s, w, at=_now() - 6 * MINUTES),
        "InvalidSignatureException",
        message="Signature expired",
    ),
    "replayed an hour later": Case(
        lambda s, w: invoke(s, w, at=_now() - 60 * MINUTES),
        "InvalidSignatureException",
        message="Signature expired",
    ),
    "signed six minutes in the future": Case(
        lambda s, w: invoke(s, w, at=_now() + 6 * MINUTES),
        "InvalidSignatureException",
        message="Signature not yet current",
    ),
    "expired presigned URL": Case(
        lambda s, w: edit(
            presign(s, w.root, "GET", CONFIGURATION, expires=1),
            path=_presigned_at(s, w, _now() - 10 * MINUTES),
        ),
        "InvalidSignatureException",
        message="Signature expired",
    ),
    # Tampered after signing: body, path, query, headers, method.
    "body tampered": Case(
        lambda s, w: edit(invoke(s, w), body=b'{"forged": false}'),
        "InvalidSignatureException",
    ),
    "body extended": Case(
        lambda s, w: edit(invoke(s, w), body=PAYLOAD + b" "),
        "InvalidSignatureException",
    ),
    "body hash header lies": Case(
        lambda s, w: edit(
            sign(
                s,
                w.root,
                "POST",
                INVOKE,
                PAYLOAD,
                {"X-Amz-Content-Sha256": "0" * 64, "Content-Type": "application/json"},
            ),
            body=b'{"other": 1}',
        ),
        "InvalidSignatureException",
    ),
    "path tampered (another function)": Case(
        lambda s, w: edit(invoke(s, w), path=f"/2015-03-31/functions/{OTHER_FUNCTION}/invocations"),
        "InvalidSignatureException",
    ),
    "path tampered (encoding)": Case(
        lambda s, w: edit(invoke(s, w), path=INVOKE.replace("forgery", "forgery%2D", 1)),
        "InvalidSignatureException",
    ),
    "query added": Case(
        lambda s, w: edit(invoke(s, w), path=INVOKE + "?Qualifier=%24LATEST"),
        "InvalidSignatureException",
    ),
    "query changed": Case(
        lambda s, w: edit(
            sign(s, w.root, "GET", CONFIGURATION + "?Qualifier=1"),
            path=CONFIGURATION + "?Qualifier=2",
        ),
        "InvalidSignatureException",
    ),
    "presigned URL with its query tampered": Case(
        lambda s, w: edit(
            presign(s, w.root, "GET", CONFIGURATION),
            path=presign(s, w.root, "GET", CONFIGURATION).path + "&Qualifier=1",
        ),
        "InvalidSignatureException",
    ),
    "signed header changed (invocation type)": Case(
        lambda s, w: with_header(invoke(s, w), "X-Amz-Invocation-Type", "Event"),
        "InvalidSignatureException",
    ),
    "signed header changed (content type)": Case(
        lambda s, w: with_header(invoke(s, w), "Content-Type", "text/plain"),
        "InvalidSignatureException",
    ),
    "signed header removed": Case(
        lambda s, w: without_header(invoke(s, w), "X-Amz-Invocation-Type"),
        "InvalidSignatureException",
    ),
    "host changed": Case(  # to another name of this server: the signature fails
        lambda s, w: with_header(invoke(s, w), "Host", f"localhost:{s.port}"),
        "InvalidSignatureException",
    ),
    "host foreign": Case(  # not this server's name: refused before any signature is read
        lambda s, w: with_header(invoke(s, w), "Host", "evil.example:80"),
        "MisdirectedRequestException",
        status=421,
    ),
    "host not among the signed headers": Case(
        _unsigned_host,
        "InvalidSignatureException",
        message="'Host' or ':authority' must be a 'SignedHeader'",
    ),
    "method changed": Case(
        lambda s, w: edit(
            sign(s, w.root, "GET", f"/2015-03-31/functions/{FUNCTION}"), method="DELETE"
        ),
        "InvalidSignatureException",
    ),
    "signature truncated": Case(
        lambda s, w: with_header(
            invoke(s, w), "Authorization", invoke(s, w).headers["Authorization"][:-8]
        ),
        "InvalidSignatureException",
    ),
    "scoped to another region": Case(
        lambda s, w: invoke(s, w, region="eu-west-1"),
        "InvalidSignatureException",
        message="Credential should be scoped to a valid region",
    ),
    "scoped to another service": Case(
        lambda s, w: invoke(s, w, service="s3"),
        "InvalidSignatureException",
        message="Credential should be scoped to correct service",
    ),
    "control plane: CreateFunction with its body swapped": Case(
        lambda s, w: edit(
            sign(s, w.root, "POST", "/2015-03-31/functions", _create_body(OTHER_FUNCTION)),
            body=_create_body(NEVER_CREATED),
        ),
        "InvalidSignatureException",
    ),
    # Another account, by ARN: nothing of A is reachable without a resource policy.
    "cross-account Invoke by ARN": Case(
        lambda s, w: as_other(s, w, "POST", a_arn_path("/invocations"), PAYLOAD),
        "AccessDeniedException",
        message="is not authorized to perform: lambda:InvokeFunction",
    ),
    "cross-account GetFunction by ARN": Case(
        lambda s, w: as_other(s, w, "GET", a_arn_path("")),
        "AccessDeniedException",
        message="is not authorized to perform: lambda:GetFunction",
    ),
    "cross-account DeleteFunction by ARN": Case(
        lambda s, w: as_other(s, w, "DELETE", a_arn_path("")),
        "AccessDeniedException",
    ),
    "cross-account UpdateFunctionCode by ARN": Case(
        lambda s, w: as_other(
            s,
            w,
            "PUT",
            a_arn_path("/code"),
            json.dumps({"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}).encode(),
        ),
        "AccessDeniedException",
    ),
    "cross-account AddPermission by ARN": Case(
        lambda s, w: as_other(
            s,
            w,
            "POST",
            a_arn_path("/policy"),
            json.dumps(
                {"StatementId": "mine", "Action": "lambda:InvokeFunction", "Principal": "*"}
            ).encode(),
        ),
        "AccessDeniedException",
    ),
    "cross-account by bare name reaches only its own account": Case(
        lambda s, w: as_other(s, w, "POST", INVOKE, PAYLOAD),
        "ResourceNotFoundException",
        status=404,
    ),
    # Users of A whose policies do not allow it.
    "user without InvokeFunction": Case(
        lambda s, w: invoke(s, w, w.reader),
        "AccessDeniedException",
        message="is not authorized to perform: lambda:InvokeFunction",
    ),
    "user whose explicit deny wins over Allow *": Case(
        lambda s, w: invoke(s, w, w.denied),
        "AccessDeniedException",
        message="with an explicit deny",
    ),
    "user without DeleteFunction": Case(
        lambda s, w: sign(s, w.reader, "DELETE", f"/2015-03-31/functions/{FUNCTION}"),
        "AccessDeniedException",
    ),
    "user creating an account": Case(
        lambda s, w: sign(s, w.denied, "POST", "/_ember/accounts", b'{"Name": "mine"}'),
        "AccessDeniedException",
    ),
    "another account creating an account": Case(
        lambda s, w: as_other(s, w, "POST", "/_ember/accounts", b'{"Name": "mine"}'),
        "AccessDeniedException",
    ),
}


# --- the world ------------------------------------------------------------------------------------


def credentials_of(data_dir: Path) -> Key:
    parser = configparser.ConfigParser()
    parser.read(data_dir / "credentials")
    profile = parser["ember"]
    return Key(profile["aws_access_key_id"], profile["aws_secret_access_key"])


def call(server: Server, key: Key, method: str, path: str, body: Any = None) -> dict[str, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    response = send(server, sign(server, key, method, path, raw))
    assert response.status_code < 300, (method, path, response.status_code, response.text)
    return dict(response.json()) if response.content else {}


def make_key(server: Server, root: Key, user: str, policy: dict[str, Any]) -> Key:
    body = {"UserName": user, "Policy": json.dumps(policy)}
    created = call(server, root, "POST", "/_ember/keys", body)
    return Key(created["AccessKeyId"], created["SecretAccessKey"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, World]]:
    data_dir = tmp_path_factory.mktemp("forgery") / "data"
    server = Server(data_dir, extra_args=["--auth", "sigv4"]).start()
    try:
        root = credentials_of(data_dir)
        for name in (FUNCTION, OTHER_FUNCTION):
            call_raw = send(
                server, sign(server, root, "POST", "/2015-03-31/functions", _create_body(name))
            )
            assert call_raw.status_code == 201, call_raw.text
        other = call(server, root, "POST", "/_ember/accounts", {"Name": "forgery-b"})
        reader = make_key(
            server,
            root,
            "reader",
            {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "lambda:GetFunction*", "Resource": "*"}
            ]},
        )  # fmt: skip
        denied = make_key(
            server,
            root,
            "denied",
            {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "lambda:InvokeFunction", "Resource": "*"},
            ]},
        )  # fmt: skip
        revoked = make_key(
            server,
            root,
            "revoked",
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            },
        )
        send(server, sign(server, root, "DELETE", f"/_ember/keys/{revoked.access_key_id}"))
        yield (
            server,
            World(
                root=root,
                other=Key(other["AccessKeyId"], other["SecretAccessKey"]),
                other_account=other["AccountId"],
                reader=reader,
                denied=denied,
                revoked=revoked,
            ),
        )
    finally:
        server.stop()


def test_the_suite_forges_at_least_thirty_requests() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_a_forged_request_is_refused_with_lambdas_error(
    world: tuple[Server, World], name: str
) -> None:
    server, keys = world
    case = CASES[name]
    response = send(server, case.build(server, keys))
    assert response.status_code == case.status, response.text
    assert response.headers["x-amzn-errortype"].split(":")[0] == case.code, response.text
    body = response.json()
    message = body.get("message", body.get("Message", ""))
    assert message, body
    if case.message is not None:
        assert case.message in message, message


def test_the_genuine_requests_pass_where_the_forged_ones_failed(
    world: tuple[Server, World],
) -> None:
    server, keys = world
    # The reader may read what it may not invoke; the signer and the server agree.
    response = send(server, sign(server, keys.reader, "GET", f"/2015-03-31/functions/{FUNCTION}"))
    assert response.status_code == 200, response.text
    presigned = send(server, presign(server, keys.root, "GET", CONFIGURATION))
    assert presigned.status_code == 200, presigned.text


def test_no_forged_request_reached_a_sandbox_or_changed_anything(
    world: tuple[Server, World],
) -> None:
    server, keys = world
    for name in CASES:  # every case first, whatever order pytest ran them in
        send(server, CASES[name].build(server, keys))
    sandboxes = call(server, keys.root, "GET", "/_ember/sandboxes")["sandboxes"]
    assert [s for s in sandboxes if s["function"] in (FUNCTION, OTHER_FUNCTION)] == []
    logs = call(server, keys.root, "GET", f"/_ember/functions/{FUNCTION}/logs")
    assert "START" not in logs["logs"]
    # Nothing was created, deleted or replaced by a forged control-plane call.
    missing = send(server, sign(server, keys.root, "GET", f"/2015-03-31/functions/{NEVER_CREATED}"))
    assert missing.status_code == 404
    listed = call(server, keys.root, "GET", "/2015-03-31/functions")
    assert {FUNCTION, OTHER_FUNCTION} <= {f["FunctionName"] for f in listed["Functions"]}
    policy = send(
        server, sign(server, keys.root, "GET", f"/2015-03-31/functions/{FUNCTION}/policy")
    )
    assert policy.status_code == 404, policy.text

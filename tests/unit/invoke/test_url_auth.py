"""Function URLs of AuthType AWS_IAM: botocore-signed requests (header and presigned),
the real SigV4 verifier and authorizer, identity and resource policies; NONE stays public."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ember.auth.authorizer import Authorizer
from ember.auth.policy import Policy
from ember.auth.principals import Principal
from ember.auth.sigv4 import Verifier
from ember.control.arns import Arns
from ember.control.policies import ResourcePolicies
from ember.control.registry import FunctionRegistry
from ember.control.urls import FunctionUrls
from ember.invoke.service import InvokeCommand, InvokeResult
from ember.invoke.urls import UrlInvoker, UrlRequest, UrlResponse
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

OWNER = "000000000000"
OTHER = "123456789012"
REGION = "us-east-1"
ARNS = Arns(REGION, OWNER)
HOST = "127.0.0.1:9000"
ROOT = Credentials("AKIAROOT", "root-secret")
ALICE = Credentials("AKIAALICE", "alice-secret")  # allowed by her identity policy
BOB = Credentials("AKIABOB", "bob-secret")  # no policy of his own
STRANGER = Credentials("AKIAOTHER", "other-secret")  # another account's root
KEYS = {
    ROOT.access_key: (ROOT.secret_key, Principal(OWNER)),
    ALICE.access_key: (ALICE.secret_key, Principal(OWNER, "alice")),
    BOB.access_key: (BOB.secret_key, Principal(OWNER, "bob")),
    STRANGER.access_key: (STRANGER.secret_key, Principal(OTHER)),
}
USERS = {
    Principal(OWNER, "alice"): Policy.parse(
        {"Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl", "Resource": "*"}]}
    )
}


def code() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(e, c): return e")
    return base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Setup:
    invoker: UrlInvoker
    policies: ResourcePolicies
    urls: FunctionUrls
    calls: list[InvokeCommand] = field(default_factory=list)


async def setup(wired: bool = True, auth_type: str = "AWS_IAM") -> Setup:
    registry = FunctionRegistry(MemoryMetadataStore(), MemoryPackageStore(), ARNS)
    await registry.create(
        {
            "FunctionName": "f",
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "Role": f"arn:aws:iam::{OWNER}:role/r",
            "Code": {"ZipFile": code()},
        }
    )
    urls = FunctionUrls(MemoryMetadataStore(), registry, ARNS, f"http://{HOST}")
    await urls.create("f", {"AuthType": auth_type})
    policies = ResourcePolicies(MemoryMetadataStore(), registry, ARNS)
    calls: list[InvokeCommand] = []

    async def invoke(command: InvokeCommand) -> InvokeResult:
        calls.append(command)
        return InvokeResult(200, command.payload, command.request_id or "", "$LATEST")

    authorizer = Authorizer(
        region=REGION,
        default_account=OWNER,
        policies_of=lambda p: [USERS[p]] if p in USERS else [],
        resource_policy_of=policies.policy_of,
    )
    verifier = Verifier(KEYS.get, region=REGION)
    invoker = UrlInvoker(
        urls,
        invoke,
        verify=verifier.verify if wired else None,
        authorizer=authorizer if wired else None,
    )
    return Setup(invoker, policies, urls, calls)


def header_signed(credentials: Credentials, service: str = "lambda") -> SigV4Auth:
    return SigV4Auth(credentials, service, REGION)


def presigned(credentials: Credentials) -> SigV4Auth:
    return SigV4QueryAuth(credentials, "lambda", REGION, expires=300)


def url_request(sign: SigV4Auth | None, body: bytes = b'{"n": 1}') -> UrlRequest:
    """A request to /url/f/some/path?x=1 as botocore would send it, signed by ``sign``:
    a POST of ``body``, or a GET when presigned (a presigned URL carries no body)."""
    method = "GET" if isinstance(sign, SigV4QueryAuth) else "POST"
    body = b"" if method == "GET" else body
    raw = AWSRequest(
        method=method,
        url=f"http://{HOST}/url/f/some/path?x=1",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    if sign is not None:
        sign.add_auth(raw)
    prepared = raw.prepare()
    parts = urlsplit(prepared.url)
    headers = [(b"host", HOST.encode())] + [
        (name.lower().encode(), value.encode() if isinstance(value, str) else value)
        for name, value in prepared.headers.items()
    ]
    return UrlRequest(
        key="f",
        method=method,
        path="/some/path",
        query=parts.query,
        headers=headers,
        body=body,
        source_ip="127.0.0.1",
        raw_path=parts.path,
    )


def forbidden(response: UrlResponse) -> bool:
    return response.status == 403 and orjson.loads(response.body) == {"Message": "Forbidden"}


def run(scenario: Callable[[Setup], Any], **options: Any) -> None:
    async def main() -> None:
        setup_ = await setup(**options)
        await scenario(setup_)

    asyncio.run(main())


def test_unsigned_requests_are_forbidden_and_never_invoke() -> None:
    async def scenario(s: Setup) -> None:
        response = await s.invoker.handle(url_request(None))
        assert forbidden(response) and s.calls == []

    run(scenario)


def test_the_owners_root_signs_in_the_header_or_the_query() -> None:
    async def scenario(s: Setup) -> None:
        for sign in (header_signed(ROOT), presigned(ROOT)):
            response = await s.invoker.handle(url_request(sign))
            assert response.status == 200, response
            event = orjson.loads(response.body)
            assert event["requestContext"]["authorizer"]["iam"]["userArn"] == (
                f"arn:aws:iam::{OWNER}:root"
            )
            assert event.get("body") == (
                '{"n": 1}' if event["requestContext"]["http"]["method"] == "POST" else None
            )
        assert len(s.calls) == 2

    run(scenario)


def test_a_bad_signature_or_another_service_is_forbidden() -> None:
    async def scenario(s: Setup) -> None:
        wrong = Credentials(ROOT.access_key, "not-the-secret")
        for sign in (header_signed(wrong), header_signed(ROOT, service="s3")):
            assert forbidden(await s.invoker.handle(url_request(sign)))
        signed = url_request(header_signed(ROOT))
        tampered = signed._replace(body=b'{"n": 2}')
        assert forbidden(await s.invoker.handle(tampered))
        assert s.calls == []

    run(scenario)


def test_a_user_needs_an_identity_or_a_resource_policy() -> None:
    async def scenario(s: Setup) -> None:
        assert (await s.invoker.handle(url_request(header_signed(ALICE)))).status == 200
        assert forbidden(await s.invoker.handle(url_request(header_signed(BOB))))
        await s.policies.add(
            "f",
            {
                "StatementId": "bob",
                "Action": "lambda:InvokeFunctionUrl",
                "Principal": f"arn:aws:iam::{OWNER}:user/bob",
                "FunctionUrlAuthType": "AWS_IAM",
            },
        )
        assert (await s.invoker.handle(url_request(header_signed(BOB)))).status == 200

    run(scenario)


def test_another_account_needs_a_permission_for_the_iam_auth_type() -> None:
    async def scenario(s: Setup) -> None:
        stranger = url_request(presigned(STRANGER))
        assert forbidden(await s.invoker.handle(stranger))
        body = {"Action": "lambda:InvokeFunctionUrl", "Principal": OTHER}
        await s.policies.add("f", {**body, "StatementId": "none", "FunctionUrlAuthType": "NONE"})
        assert forbidden(await s.invoker.handle(url_request(presigned(STRANGER))))
        await s.policies.add("f", {**body, "StatementId": "iam", "FunctionUrlAuthType": "AWS_IAM"})
        assert (await s.invoker.handle(url_request(presigned(STRANGER)))).status == 200

    run(scenario)


def test_without_a_verifier_an_iam_url_refuses_everyone() -> None:
    async def scenario(s: Setup) -> None:
        assert forbidden(await s.invoker.handle(url_request(header_signed(ROOT))))

    run(scenario, wired=False)


def test_a_none_url_stays_public() -> None:
    async def scenario(s: Setup) -> None:
        assert (await s.invoker.handle(url_request(None))).status == 200
        event = orjson.loads((await s.invoker.handle(url_request(None))).body)
        assert "authorizer" not in event["requestContext"]

    run(scenario, auth_type="NONE")

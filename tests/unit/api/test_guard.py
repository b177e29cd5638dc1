"""The guard over raw ASGI: botocore-signed requests, a real key store and verifier.

An audit sink that keeps entries in a list stands in for the audit log; the
application behind the guard is a few lines of ASGI that records what it got.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ember.api.guard import Guard
from ember.auth.authorizer import Authorizer
from ember.auth.base import PRINCIPAL_SCOPE_KEY, AuditEntry
from ember.auth.keys import KeyStore
from ember.auth.policy import Policy
from ember.auth.principals import Principal
from ember.auth.sigv4 import Verifier
from ember.errors import RequestTooLarge
from ember.storage.memory import MemoryMetadataStore

ROOT = Principal("000000000000")
ALICE = Principal("123456789012", "alice")
LIMIT = 1024


class Entries:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


class Recorder:
    """The app behind the guard: answers ``status``, remembers the principal and body."""

    def __init__(self, status: int = 200, error: bytes | None = None) -> None:
        self.status, self.error = status, error
        self.principal: Any = None
        self.body: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.principal = scope.get(PRINCIPAL_SCOPE_KEY)
        self.body = (await receive())["body"]
        headers = [(b"x-amzn-requestid", b"req-1")]
        if self.error:
            headers.append((b"x-amzn-errortype", self.error))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


def own_account() -> Authorizer:
    """The real authorizer, every user allowed everything: each acts in its own account."""
    allow_all = Policy.parse({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    return Authorizer(
        region="us-east-1",
        default_account=ROOT.account_id,
        policies_of=lambda principal: (allow_all,),
        resource_policy_of=lambda arn: None,
    )


def _scope(method: str, path: str, body: bytes, creds: Credentials | None) -> dict[str, Any]:
    url = "http://127.0.0.1:9900" + path
    request = AWSRequest(method=method, url=url, data=body)
    if creds is not None:
        SigV4Auth(creds, "lambda", "us-east-1").add_auth(request)
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    headers.append((b"host", b"127.0.0.1:9900"))
    return {
        "type": "http",
        "method": method,
        "path": urlsplit(url).path,
        "raw_path": urlsplit(url).path.encode(),
        "query_string": b"",
        "headers": headers,
    }


async def _run(
    guard: Guard, scope: dict[str, Any], body: bytes, app: Recorder
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [body[:3], body[3:]]

    async def receive() -> dict[str, Any]:
        if not chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def too_large() -> RequestTooLarge:
        return RequestTooLarge("too large")

    await guard(scope, receive, send, app, LIMIT, too_large)
    return sent


async def _guard(audit: Entries) -> tuple[Guard, Credentials]:
    keys = KeyStore(MemoryMetadataStore(), bytes(range(32)))
    await keys.open()
    key, secret = await keys.create(ALICE)
    verifier = Verifier(keys.lookup, region="us-east-1")
    return Guard(verifier, ROOT, own_account(), audit), Credentials(key.access_key_id, secret)


def _header(message: dict[str, Any], name: bytes) -> bytes | None:
    return dict(message["headers"]).get(name)


def test_a_signed_change_runs_with_its_principal_and_is_audited() -> None:
    async def scenario() -> None:
        audit = Entries()
        guard, creds = await _guard(audit)
        app = Recorder(status=201)
        body = b'{"FunctionName": "f"}'
        sent = await _run(guard, _scope("POST", "/2015-03-31/functions", body, creds), body, app)
        assert sent[0]["status"] == 201
        assert app.principal == ALICE and app.body == body  # the body, replayed whole
        [entry] = audit.entries
        assert (entry.principal, entry.account, entry.status, entry.allowed) == (
            ALICE.arn,
            ALICE.account_id,
            201,
            True,
        )
        assert entry.request_id == "req-1" and entry.error is None

        reads = Recorder()
        await _run(guard, _scope("GET", "/2015-03-31/functions/", b"", creds), b"", reads)
        assert reads.principal == ALICE
        assert len(audit.entries) == 1  # a read is no change

    asyncio.run(scenario())


def test_refusals_answer_in_lambdas_shape_and_refused_changes_are_audited() -> None:
    async def scenario() -> None:
        audit = Entries()
        guard, creds = await _guard(audit)
        app = Recorder()
        body = b'{"a": 1}'
        sent = await _run(guard, _scope("POST", "/2015-03-31/functions", body, None), body, app)
        assert sent[0]["status"] == 403
        assert _header(sent[0], b"x-amzn-errortype") == b"MissingAuthenticationTokenException"
        assert app.principal is None  # the app never ran
        [entry] = audit.entries
        assert (entry.principal, entry.account, entry.allowed, entry.status) == (
            "anonymous",
            "",
            False,
            403,
        )
        assert entry.error == "MissingAuthenticationTokenException"

        tampered = _scope("POST", "/2015-03-31/functions", body, creds)
        sent = await _run(guard, tampered, b'{"a": 2}', app)
        assert _header(sent[0], b"x-amzn-errortype") == b"InvalidSignatureException"
        assert len(audit.entries) == 2

        big = b"x" * (LIMIT + 1)
        sent = await _run(guard, _scope("POST", "/2015-03-31/functions", big, creds), big, app)
        assert sent[0]["status"] == 413
        assert app.principal is None

    asyncio.run(scenario())


def test_an_application_refusal_is_audited_as_denied() -> None:
    async def scenario() -> None:
        audit = Entries()
        guard, creds = await _guard(audit)
        app = Recorder(status=403, error=b"AccessDeniedException")
        await _run(guard, _scope("DELETE", "/_ember/keys/AKIAX", b"", creds), b"", app)
        [entry] = audit.entries
        assert (entry.allowed, entry.status, entry.error) == (False, 403, "AccessDeniedException")

    asyncio.run(scenario())


def test_without_a_verifier_the_default_root_calls_with_the_body_read_bounded() -> None:
    async def scenario() -> None:
        guard = Guard(None, ROOT, own_account(), Entries())
        app = Recorder()
        body = b'{"x": 1}'
        await _run(guard, _scope("POST", "/2015-03-31/functions", body, None), body, app)
        assert app.principal == ROOT
        assert app.body == body  # read ahead through the bounded reader, replayed whole

    asyncio.run(scenario())


def test_without_a_verifier_a_body_over_the_limit_is_refused() -> None:
    # --auth none once left the body to Starlette, which reads any size whole.
    async def scenario() -> None:
        guard = Guard(None, ROOT, own_account(), Entries())
        app = Recorder()
        big = b"x" * (LIMIT + 1)
        scope = _scope("POST", "/2015-03-31/functions", big, None)
        scope["headers"] = [h for h in scope["headers"] if h[0] != b"content-length"]
        sent = await _run(guard, scope, big, app)
        assert sent[0]["status"] == 413
        assert (b"connection", b"close") in sent[0]["headers"]
        assert app.body is None

    asyncio.run(scenario())

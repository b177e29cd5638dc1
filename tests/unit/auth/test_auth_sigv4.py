"""SigV4 verification against requests signed by botocore itself.

Header-form requests are the exact bytes boto3 would send: a real Lambda
client builds and signs them, and a ``before-send`` hook takes them off the
wire instead of sending. Presigned URLs come from botocore's ``SigV4QueryAuth``.
The verifier's clock is set from the request's own X-Amz-Date, so nothing
depends on when the test runs.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.api.errors import render
from ember.auth.principals import Principal
from ember.auth.sigv4 import HttpRequest, Verifier
from ember.errors import AuthError, InvalidSignature

REGION = "us-east-1"
ENDPOINT = "http://127.0.0.1:9000"
ALICE = Principal("123456789012", "alice")
BOB = Principal("210987654321")
KEYS = {
    "AKIAALICEALICEALICE1": ("a" * 20 + "ALICEsecret/+0123456", ALICE),
    "AKIABOBBOBBOBBOBBOB2": ("b" * 20 + "BOBsecret/+012345678", BOB),
}
ALICE_ID = "AKIAALICEALICEALICE1"
BOB_ID = "AKIABOBBOBBOBBOBBOB2"
MISMATCH = InvalidSignature.MISMATCH


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _lookup(key_id: str) -> tuple[str, Principal] | None:
    return KEYS.get(key_id)


def _client(key_id: str = ALICE_ID, *, secret: str | None = None, region: str = REGION) -> Any:
    client = boto3.client(
        "lambda",
        region_name=region,
        endpoint_url=ENDPOINT,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret or KEYS[key_id][0],
        config=Config(retries={"max_attempts": 0}),
    )

    def capture(request: Any, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send.lambda", capture)
    return client


def wire(call: Callable[[Any], Any], **client_args: Any) -> HttpRequest:
    """What boto3 puts on the wire for ``call(client)``, as the server's ASGI scope sees it."""
    with pytest.raises(_Captured) as caught:
        call(_client(**client_args))
    prepared = caught.value.request
    return _as_received(prepared.method, prepared.url, prepared.headers, prepared.body)


def _as_received(method: str, url: str, headers: Any, body: Any) -> HttpRequest:
    parts = urlsplit(url)
    raw = [(b"host", parts.netloc.encode())]
    for name, value in headers.items():
        raw.append((name.lower().encode(), value if isinstance(value, bytes) else value.encode()))
    if isinstance(body, str):
        body = body.encode()
    return HttpRequest(method, parts.path, parts.query, raw, body or b"")


def presigned(
    method: str = "GET",
    url: str = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws/hello?x=1",
    *,
    expires: int = 60,
    key_id: str = ALICE_ID,
    signer: type[SigV4QueryAuth] = SigV4QueryAuth,
) -> HttpRequest:
    request = AWSRequest(method, url)
    signer(Credentials(key_id, KEYS[key_id][0]), "lambda", REGION, expires=expires).add_auth(
        request
    )
    return _as_received(method, request.url, {}, b"")


def signed_at(request: HttpRequest) -> float:
    """The request's signing time; 0 when it carries no readable date (those refusals
    come before the verifier reads its clock)."""
    found = re.search(r"X-Amz-Date=(\w+)", request.query)
    value = _header(request, "x-amz-date") or (found[1] if found else "")
    try:
        moment = datetime.strptime(value, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return 0.0
    return float(calendar.timegm(moment.timetuple()))


def verifier(request: HttpRequest, offset: float = 0.0, **kwargs: Any) -> Verifier:
    """A verifier whose clock reads the request's signing time plus ``offset`` seconds."""
    return Verifier(
        kwargs.pop("lookup", _lookup),
        region=REGION,
        clock=FakeClock(signed_at(request) + offset),
        **kwargs,
    )


def verify(request: HttpRequest, offset: float = 0.0) -> Principal:
    return verifier(request, offset).verify(request)


def _header(request: HttpRequest, name: str) -> str | None:
    for key, value in request.headers:
        if key == name.encode():
            return value.decode()
    return None


def with_header(request: HttpRequest, name: str, value: str | None) -> HttpRequest:
    """``request`` with header ``name`` replaced (or dropped when ``value`` is None)."""
    kept = [(k, v) for k, v in request.headers if k != name.encode()]
    if value is not None:
        kept.append((name.encode(), value.encode()))
    return replace(request, headers=kept)


def edit_authorization(request: HttpRequest, old: str, new: str) -> HttpRequest:
    authorization = _header(request, "authorization")
    assert authorization is not None and old in authorization
    return with_header(request, "authorization", authorization.replace(old, new))


def invoke(client: Any, kind: str = "RequestResponse", **extra: Any) -> Any:
    return client.invoke(
        FunctionName="f", Payload=b'{"hello": "world"}', InvocationType=kind, **extra
    )


def list_functions(client: Any) -> Any:
    return client.list_functions(MaxItems=10, Marker="abc")


# --- What boto3 and botocore sign is accepted -------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(invoke, id="Invoke with a body"),
        pytest.param(lambda c: c.invoke(FunctionName="f"), id="Invoke without a body"),
        pytest.param(
            lambda c: invoke(c, "Event", Qualifier="$LATEST"),
            id="async Invoke with a qualifier",
        ),
        pytest.param(
            lambda c: c.invoke(
                FunctionName="arn:aws:lambda:us-east-1:123456789012:function:f:prod",
                Payload=b"{}",
            ),
            id="Invoke by ARN (an encoded path)",
        ),
        pytest.param(lambda c: c.list_functions(), id="ListFunctions"),
        pytest.param(list_functions, id="ListFunctions with a query"),
        pytest.param(
            lambda c: c.get_function(FunctionName="my-function", Qualifier="1"),
            id="GetFunction",
        ),
        pytest.param(
            lambda c: c.delete_function(FunctionName="f"),
            id="DeleteFunction",
        ),
        pytest.param(
            lambda c: c.create_function(
                FunctionName="f",
                Role="arn:aws:iam::123456789012:role/r",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
                Runtime="python3.12",
                Handler="app.handler",
            ),
            id="CreateFunction",
        ),
    ],
)
def test_boto3_requests_verify_to_the_keys_principal(call: Callable[[Any], Any]) -> None:
    assert verify(wire(call)) == ALICE
    assert verify(wire(call, key_id=BOB_ID)) == BOB


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_any_clock_skew_up_to_five_minutes_is_accepted(offset: float) -> None:
    assert verify(wire(invoke), offset) == ALICE


def test_reordering_query_parameters_keeps_the_signature_valid() -> None:
    request = wire(list_functions)
    reordered = "&".join(reversed(request.query.split("&")))
    assert reordered != request.query
    assert verify(replace(request, query=reordered)) == ALICE


def test_a_rotated_secret_invalidates_the_cached_signing_key() -> None:
    request = wire(invoke)
    secrets = {ALICE_ID: KEYS[ALICE_ID]}
    check = verifier(request, lookup=secrets.get)
    assert check.verify(request) == ALICE  # derives and caches the signing key
    secrets[ALICE_ID] = ("another secret entirely 0123456789abcdef", ALICE)
    with pytest.raises(InvalidSignature):
        check.verify(request)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_presigned_urls_verify(method: str) -> None:
    # botocore's SigV4QueryAuth moves a body into the query and signs the empty body's hash.
    assert verify(presigned(method)) == ALICE


def test_a_presigned_url_with_an_unsigned_payload_verifies() -> None:
    # S3-style presigners sign UNSIGNED-PAYLOAD instead of the body's hash.
    request = presigned("POST", "https://u.lambda-url.us-east-1.on.aws/", signer=S3SigV4QueryAuth)
    assert verify(replace(request, body=b"any body")) == ALICE


def _signed_directly(headers: dict[str, str], body: bytes = b"{}") -> HttpRequest:
    """A request botocore's SigV4Auth signs with extra headers boto3 itself never sets."""
    url = ENDPOINT + "/2015-03-31/functions/f/invocations"
    request = AWSRequest("POST", url, data=body, headers=headers)
    SigV4Auth(Credentials(ALICE_ID, KEYS[ALICE_ID][0]), "lambda", REGION).add_auth(request)
    return _as_received("POST", request.url, request.headers, body)


def test_a_signed_content_hash_header_verifies_and_binds_the_body() -> None:
    body = b'{"a": 1}'
    request = _signed_directly({"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}, body)
    assert verify(request) == ALICE
    with pytest.raises(InvalidSignature) as refused:
        verify(replace(request, body=b'{"a": 2}'))
    assert refused.value.message == MISMATCH


def test_a_date_header_may_replace_x_amz_date() -> None:
    # botocore signs with the Date header (and sends no X-Amz-Date) when one is set.
    request = _signed_directly({"Date": "Thu, 01 Jan 2026 00:00:00 GMT"})
    assert _header(request, "x-amz-date") is None
    now = parsedate_to_datetime(_header(request, "date") or "").timestamp()
    assert Verifier(_lookup, region=REGION, clock=FakeClock(now)).verify(request) == ALICE


def test_a_presigned_url_is_valid_until_it_expires() -> None:
    assert verify(presigned(expires=900), 900) == ALICE


_segment = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
_params = st.dictionaries(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(segments=st.lists(_segment, min_size=1, max_size=4), params=_params, body=st.binary())
def test_canonicalisation_agrees_with_botocore(
    segments: list[str], params: dict[str, str], body: bytes
) -> None:
    """Any path and query botocore can sign, the verifier rebuilds identically."""
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    query = percent_encode_sequence(params)
    url = ENDPOINT + path + (f"?{query}" if query else "")
    request = AWSRequest("POST", url, data=body, headers={"X-Amz-Target": "t"})
    SigV4Auth(Credentials(ALICE_ID, KEYS[ALICE_ID][0]), "lambda", REGION).add_auth(request)
    received = _as_received("POST", request.url, request.headers, body)
    assert verify(received) == ALICE


# --- The negative suite: each refusal with Lambda's code and message ---------------------


def _expired(request: HttpRequest, now_offset: int, window: str) -> str:
    signed = datetime.fromtimestamp(signed_at(request), UTC)
    now = signed + timedelta(seconds=now_offset)
    edge = now - timedelta(seconds=int(window.split()[0]) * (60 if "min" in window else 1))
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        f"Signature expired: {signed.strftime(stamp)} is now earlier than "
        f"{edge.strftime(stamp)} ({now.strftime(stamp)} - {window}.)"
    )


def _not_yet(request: HttpRequest, now_offset: int) -> str:
    signed = datetime.fromtimestamp(signed_at(request), UTC)
    now = signed + timedelta(seconds=now_offset)
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        f"Signature not yet current: {signed.strftime(stamp)} is still later than "
        f"{(now + timedelta(minutes=5)).strftime(stamp)} ({now.strftime(stamp)} + 5 min.)"
    )


@dataclass(frozen=True)
class Refusal:
    """A request built from a genuine one, and what the verifier must answer."""

    build: Callable[[], tuple[HttpRequest, float]]
    code: str
    message: str | Callable[[HttpRequest, float], str]


def _case(build: Callable[[], HttpRequest], code: str, message: Any, offset: float = 0) -> Refusal:
    return Refusal(lambda: (build(), offset), code, message)


def _flip_signature(request: HttpRequest) -> HttpRequest:
    authorization = _header(request, "authorization") or ""
    signature = authorization.rsplit("=", 1)[1]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return edit_authorization(request, signature, flipped)


def _flip_query_signature(request: HttpRequest) -> HttpRequest:
    signature = re.search(r"X-Amz-Signature=(\w+)", request.query)[1]  # type: ignore[index]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return replace(request, query=request.query.replace(signature, flipped))


def _drop_query_param(request: HttpRequest, name: str) -> HttpRequest:
    kept = [p for p in request.query.split("&") if not p.startswith(name + "=")]
    return replace(request, query="&".join(kept))


def _date_scope_minus_one_day(request: HttpRequest) -> HttpRequest:
    stamp = (_header(request, "x-amz-date") or "")[:8]
    earlier = (datetime.strptime(stamp, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    return edit_authorization(request, f"/{stamp}/", f"/{earlier}/")


def _unknown_key() -> HttpRequest:
    return wire(invoke, key_id="AKIAUNKNOWNUNKNOWN00", secret="x" * 40)


def _alice_id_bobs_secret() -> HttpRequest:
    return wire(invoke, key_id=ALICE_ID, secret=KEYS[BOB_ID][0])


def _scope_date_message(request: HttpRequest) -> str:
    amz_date = _header(request, "x-amz-date") or ""
    earlier = (datetime.strptime(amz_date[:8], "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    return (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        f"HTTP: '{earlier}' != '{amz_date[:8]}', from '{amz_date}'."
    )


def _invoke() -> HttpRequest:
    return wire(invoke)


def _list() -> HttpRequest:
    return wire(list_functions)


HOST_UNSIGNED = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
MISSING_ALL = (
    "Authorization header requires 'Credential' parameter. Authorization header requires "
    "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter."
)

NEGATIVE: dict[str, Refusal] = {
    "forged signature": _case(
        lambda: _flip_signature(_invoke()), "InvalidSignatureException", MISMATCH
    ),
    "signature of the wrong length": _case(
        lambda: edit_authorization(_invoke(), "Signature=", "Signature=00"),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "unknown access key": _case(
        _unknown_key,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    "another account's secret under this key id": _case(
        _alice_id_bobs_secret, "InvalidSignatureException", MISMATCH
    ),
    "replayed after the skew window": Refusal(
        lambda: (_invoke(), 301),
        "InvalidSignatureException",
        lambda r, o: _expired(r, int(o), "5 min"),
    ),
    "replayed long after": Refusal(
        lambda: (_invoke(), 86400),
        "InvalidSignatureException",
        lambda r, o: _expired(r, int(o), "5 min"),
    ),
    "signed in the future beyond the skew": Refusal(
        lambda: (_invoke(), -301),
        "InvalidSignatureException",
        lambda r, o: _not_yet(r, int(o)),
    ),
    "tampered body": _case(
        lambda: replace(_invoke(), body=b'{"hello": "world!"}'),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "body removed": _case(
        lambda: replace(_invoke(), body=b""), "InvalidSignatureException", MISMATCH
    ),
    "tampered path (another function)": _case(
        lambda: replace(_invoke(), path=_invoke().path.replace("/f/", "/g/")),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "path decoded on the way": _case(
        lambda: replace(
            wire(lambda c: c.get_function(FunctionName="arn:aws:lambda:us-east-1:1:function:f")),
            path="/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:f",
        ),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "query parameter added": _case(
        lambda: replace(_invoke(), query="Qualifier=2"), "InvalidSignatureException", MISMATCH
    ),
    "query parameter removed": _case(
        lambda: _drop_query_param(_list(), "Marker"), "InvalidSignatureException", MISMATCH
    ),
    "query value changed": _case(
        lambda: replace(_list(), query=_list().query.replace("MaxItems=10", "MaxItems=50")),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "query values swapped between keys": _case(
        lambda: replace(_list(), query="Marker=10&MaxItems=abc"),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "signed header changed": _case(
        lambda: with_header(_invoke(), "x-amz-invocation-type", "Event"),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "signed header dropped": _case(
        lambda: with_header(_invoke(), "x-amz-invocation-type", None),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "host changed": _case(
        lambda: with_header(_invoke(), "host", "evil.example:9000"),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "x-amz-date moved by a second": _case(
        lambda: with_header(
            _invoke(),
            "x-amz-date",
            datetime.fromtimestamp(signed_at(_invoke()) + 1, UTC).strftime("%Y%m%dT%H%M%SZ"),
        ),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "method changed": _case(
        lambda: replace(_invoke(), method="PUT"), "InvalidSignatureException", MISMATCH
    ),
    "host not signed": _case(
        lambda: edit_authorization(_invoke(), "SignedHeaders=host;", "SignedHeaders="),
        "InvalidSignatureException",
        HOST_UNSIGNED,
    ),
    "x-amz-date not signed": _case(
        lambda: edit_authorization(_list(), "host;x-amz-date", "host"),
        "InvalidSignatureException",
        "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.",
    ),
    "content hash header that lies about the body": _case(
        lambda: replace(with_header(_invoke(), "x-amz-content-sha256", "0" * 64), body=b"other"),
        "InvalidSignatureException",
        "'X-Amz-Content-SHA256' must be a 'SignedHeader' in the AWS Authorization.",
    ),
    "wrong region": _case(
        lambda: wire(invoke, region="us-west-2"),
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'us-west-2'.",
    ),
    "wrong service": _case(
        lambda: edit_authorization(_invoke(), "/lambda/", "/execute-api/"),
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'lambda'.",
    ),
    "wrong terminator": _case(
        lambda: edit_authorization(_invoke(), "aws4_request", "aws5_request"),
        "InvalidSignatureException",
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'.",
    ),
    "wrong date scope": Refusal(
        lambda: (_date_scope_minus_one_day(_invoke()), 0),
        "InvalidSignatureException",
        lambda r, _: _scope_date_message(r),
    ),
    "no Authorization header": _case(
        lambda: with_header(_invoke(), "authorization", None),
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    ),
    "a token without a scheme": _case(
        lambda: with_header(_invoke(), "authorization", "eyJhbGciOi.eyJzdWIiOi.c2ln"),
        "IncompleteSignatureException",
        f"{MISSING_ALL} Authorization=eyJhbGciOi.eyJzdWIiOi.c2ln",
    ),
    "a bearer token instead of a signature": _case(
        lambda: with_header(_invoke(), "authorization", "Bearer abc.def"),
        "IncompleteSignatureException",
        "'abc.def' not a valid key=value pair (missing equal-sign) in Authorization header: "
        "'Bearer abc.def'.",
    ),
    "Signature missing": Refusal(
        lambda: (edit_authorization(_invoke(), ", Signature=", ", Sig="), 0),
        "IncompleteSignatureException",
        lambda r, _: (
            "Authorization header requires 'Signature' parameter. Authorization="
            + (_header(r, "authorization") or "")
        ),
    ),
    "a field without an equal sign": Refusal(
        lambda: (edit_authorization(_invoke(), "SignedHeaders=", "SignedHeaders "), 0),
        "IncompleteSignatureException",
        lambda r, _: (
            "'SignedHeaders' not a valid key=value pair (missing equal-sign) in "
            "Authorization header: "
            f"'{_header(r, 'authorization')}'."
        ),
    ),
    "unsupported algorithm": _case(
        lambda: edit_authorization(_invoke(), "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        "IncompleteSignatureException",
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'",
    ),
    "credential with four parts": Refusal(
        lambda: (edit_authorization(_invoke(), "/aws4_request", ""), 0),
        "IncompleteSignatureException",
        lambda r, _: (
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/term, got '"
            + re.search(r"Credential=([^,]+),", _header(r, "authorization") or "")[1]  # type: ignore[index]
            + "'"
        ),
    ),
    "malformed X-Amz-Date": _case(
        lambda: with_header(_invoke(), "x-amz-date", "2026-12-05T00:00:00Z"),
        "IncompleteSignatureException",
        "Date must be in ISO-8601 'basic format'. Got '2026-12-05T00:00:00Z'. "
        "See http://en.wikipedia.org/wiki/ISO_8601",
    ),
    "no date at all": Refusal(
        lambda: (with_header(_invoke(), "x-amz-date", None), 0),
        "IncompleteSignatureException",
        lambda r, _: (
            "Authorization header requires existence of either a 'X-Amz-Date' or a "
            "'Date' header. Authorization=" + (_header(r, "authorization") or "")
        ),
    ),
    "a session token (none can be valid here)": _case(
        lambda: with_header(_invoke(), "x-amz-security-token", "FwoGZXIvYXdzE"),
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    "presigned URL expired": Refusal(
        lambda: (presigned(expires=60), 61),
        "InvalidSignatureException",
        lambda r, o: _expired(r, int(o), "1 min"),
    ),
    "presigned URL used before its date": Refusal(
        lambda: (presigned(), -301),
        "InvalidSignatureException",
        lambda r, o: _not_yet(r, int(o)),
    ),
    "presigned URL with a tampered path": _case(
        lambda: replace(presigned(), path="/other"), "InvalidSignatureException", MISMATCH
    ),
    "presigned URL with a tampered query": _case(
        lambda: replace(presigned(), query=presigned().query.replace("x=1", "x=2")),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "presigned URL with an added parameter": _case(
        lambda: replace(presigned(), query=presigned().query + "&admin=true"),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "presigned URL with a forged signature": _case(
        lambda: _flip_query_signature(presigned()), "InvalidSignatureException", MISMATCH
    ),
    "presigned URL with its expiry extended": _case(
        lambda: replace(
            presigned(), query=presigned().query.replace("X-Amz-Expires=60", "X-Amz-Expires=600")
        ),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "presigned URL with a tampered body": _case(
        lambda: replace(presigned("POST"), body=b'{"a": 2}'),
        "InvalidSignatureException",
        MISMATCH,
    ),
    "presigned URL without a credential": _case(
        lambda: _drop_query_param(presigned(), "X-Amz-Credential"),
        "IncompleteSignatureException",
        "AWS query-string parameters must include 'X-Amz-Credential'. "
        "Re-examine the query-string parameters.",
    ),
    "presigned URL valid for more than a week": _case(
        lambda: replace(
            presigned(), query=presigned().query.replace("X-Amz-Expires=60", "X-Amz-Expires=604801")
        ),
        "IncompleteSignatureException",
        "X-Amz-Expires must be a number of seconds from 1 to 604800, got '604801'. "
        "Re-examine the query-string parameters.",
    ),
    "presigned URL without host signed": _case(
        lambda: replace(
            presigned(),
            query=presigned().query.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x"),
        ),
        "InvalidSignatureException",
        HOST_UNSIGNED,
    ),
    "presigned URL of an unknown key": _case(
        lambda: replace(
            presigned(), query=presigned().query.replace(ALICE_ID, "AKIAUNKNOWNUNKNOWN00")
        ),
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
}


def test_the_negative_suite_has_at_least_thirty_cases() -> None:
    assert len(NEGATIVE) >= 30


@pytest.mark.parametrize("case", NEGATIVE.values(), ids=NEGATIVE.keys())
def test_refused_with_lambdas_code_and_message(case: Refusal) -> None:
    request, offset = case.build()
    with pytest.raises(AuthError) as refused:
        verify(request, offset)
    expected = case.message if isinstance(case.message, str) else case.message(request, offset)
    assert (refused.value.code, refused.value.message) == (case.code, expected)


def test_refusals_render_as_403_with_the_error_type_header() -> None:
    request, offset = NEGATIVE["forged signature"].build()
    with pytest.raises(AuthError) as refused:
        verify(request, offset)
    status, headers, body = render(refused.value, "req-1")
    assert status == 403
    assert (b"x-amzn-errortype", b"InvalidSignatureException") in headers
    assert b'"message":"The request signature we calculated' in body

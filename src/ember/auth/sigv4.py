"""AWS Signature Version 4 verification, as Lambda does it, in the header and query forms.

The canonical request is rebuilt exactly as botocore's ``SigV4Auth`` builds it
(``botocore/auth.py``): the path goes through botocore's own
``normalize_url_path`` and is percent-encoded once more (Lambda, like every
service but S3, signs the already-encoded path encoded twice); query keys and
values are decoded and re-encoded with the RFC 3986 unreserved set, then
sorted; header values are trimmed and inner runs of spaces folded. The unit
tests check this against ``SigV4Auth.canonical_request`` itself.

Order of the checks follows AWS's: the shape of the signature
(IncompleteSignatureException), the time window and credential scope
(InvalidSignatureException), the access key (UnrecognizedClientException),
then the signature (InvalidSignatureException). Every refusal is an
``ember.errors.AuthError`` carrying Lambda's code and message.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, unquote_to_bytes

from botocore.utils import normalize_url_path

from ember.auth.principals import Principal
from ember.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Lambda accepts a signature up to five minutes off the server's clock either way.
SKEW_SECONDS = 300
# SigV4 caps a presigned URL's life at seven days.
MAX_EXPIRES = 604800
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_FIELD_SEPARATORS = re.compile(r"[\s,]+")
# The derived-key cache is bounded; a burst of distinct keys only costs recomputation.
_CACHE_LIMIT = 4096

# access key id -> (secret access key, the principal it belongs to), or None: unknown.
KeyLookup = Callable[[str], "tuple[str, Principal] | None"]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as it arrived, before any decoding (the ASGI scope's view).

    ``path`` is the raw path as sent (``raw_path``: still percent-encoded, no
    query); ``query`` the raw query string without ``?``; ``headers`` ASGI's
    list of (lower-case name, value) byte pairs, repeats allowed.
    """

    method: str
    path: str
    query: str
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class _Claim:
    """What the client says it signed: parsed from the Authorization header or the query."""

    access_key: str
    scope: list[str]  # date, region, service, terminator
    signed_headers: str
    signature: str
    amz_date: str
    expires: int | None  # None: the header form (the skew window applies)
    query: list[tuple[str, str]]  # raw pairs that enter the canonical query


class Verifier:
    """Checks SigV4 signatures of one region and service against a key lookup.

    ``lookup`` maps an access key id to (secret, principal); ``clock`` returns
    Unix seconds. ``verify`` returns the principal or raises an ``AuthError``.
    Thread-safe for reads; the signing-key cache tolerates concurrent fills.
    """

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        region: str,
        service: str = "lambda",
        clock: Clock = time.time,
    ) -> None:
        self._lookup = lookup
        self._region = region
        self._service = service
        self._clock = clock
        # (key id, date, region, service) -> (secret it was derived from, signing key)
        self._keys: dict[tuple[str, str, str, str], tuple[str, bytes]] = {}

    def verify(self, request: HttpRequest) -> Principal:
        """The principal whose key signed ``request``; raises ``MissingAuthenticationToken``,
        ``IncompleteSignature``, ``UnrecognizedClient`` or ``InvalidSignature``."""
        headers = _header_map(request.headers)
        claim = _claim_of(request, headers)
        if "x-amz-security-token" in headers or _has_param(claim.query, "X-Amz-Security-Token"):
            # Only long-term keys exist here: no session token can be valid.
            raise UnrecognizedClient()
        self._check_time(claim)
        self._check_scope(claim)
        found = self._lookup(claim.access_key)
        if found is None:
            raise UnrecognizedClient()
        secret, principal = found
        key = self._signing_key(claim, secret)
        for payload in _payload_hashes(request, headers, claim):
            canonical = _canonical_request(request, headers, claim, payload)
            if _matches(key, claim, canonical):
                return principal
        raise InvalidSignature()

    def _check_time(self, claim: _Claim) -> None:
        now = int(self._clock())
        signed_at = _epoch(claim.amz_date)
        if claim.expires is None:
            earliest, window = now - SKEW_SECONDS, f"- {_span(SKEW_SECONDS)}"
        else:
            earliest, window = now - claim.expires, f"- {_span(claim.expires)}"
        if signed_at < earliest:
            raise InvalidSignature(
                f"Signature expired: {claim.amz_date} is now earlier than "
                f"{_stamp(earliest)} ({_stamp(now)} {window}.)"
            )
        latest = now + SKEW_SECONDS
        if signed_at > latest:
            raise InvalidSignature(
                f"Signature not yet current: {claim.amz_date} is still later than "
                f"{_stamp(latest)} ({_stamp(now)} + {_span(SKEW_SECONDS)}.)"
            )

    def _check_scope(self, claim: _Claim) -> None:
        date, region, service, terminator = claim.scope
        problems = []
        if region != self._region:
            problems.append(f"Credential should be scoped to a valid region, not '{region}'.")
        if service != self._service:
            problems.append(f"Credential should be scoped to correct service: '{self._service}'.")
        if terminator != "aws4_request":
            problems.append(
                "Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{terminator}'."
            )
        if date != claim.amz_date[:8]:
            problems.append(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{date}' != '{claim.amz_date[:8]}', from '{claim.amz_date}'."
            )
        if problems:
            raise InvalidSignature(" ".join(problems))

    def _signing_key(self, claim: _Claim, secret: str) -> bytes:
        date, region, service, _ = claim.scope
        slot = (claim.access_key, date, region, service)
        cached = self._keys.get(slot)
        # The secret is part of the check: a key id whose secret changed gets a new key.
        if cached is not None and hmac.compare_digest(cached[0], secret):
            return cached[1]
        key = _derive(secret, date, region, service)
        if len(self._keys) >= _CACHE_LIMIT:
            self._keys.clear()
        self._keys[slot] = (secret, key)
        return key


def _derive(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _matches(key: bytes, claim: _Claim, canonical: str) -> bool:
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            claim.amz_date,
            "/".join(claim.scope),
            hashlib.sha256(canonical.encode()).hexdigest(),
        )
    )
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    # Bytes on both sides: compare_digest refuses non-ASCII str, and a client may send any.
    return hmac.compare_digest(expected.encode(), claim.signature.encode("latin-1"))


# --- What the client claims ---------------------------------------------------------------


def _header_map(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case name -> value; repeated headers joined with ',' as SigV4 canonicalises them."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


def _claim_of(request: HttpRequest, headers: dict[str, str]) -> _Claim:
    authorization = headers.get("authorization")
    if authorization is not None:
        return _header_claim(authorization, headers, request.query)
    query = _query_pairs(request.query)
    if _has_param(query, "X-Amz-Algorithm") or _has_param(query, "X-Amz-Signature"):
        return _query_claim(query)
    raise MissingAuthenticationToken()


def _header_claim(authorization: str, headers: dict[str, str], query: str) -> _Claim:
    algorithm, _, rest = authorization.strip().partition(" ")
    fields = _auth_fields(rest, authorization)
    amz_date = headers.get("x-amz-date")
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if name not in fields
    ]
    if amz_date is None and "date" not in headers:
        missing.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if missing:
        raise IncompleteSignature(" ".join(missing) + f" Authorization={authorization}")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{algorithm}'")
    signed = fields["SignedHeaders"]
    _require_signed(signed, headers, dated_by_header=amz_date is not None)
    access_key, scope = _credential(fields["Credential"])
    return _Claim(
        access_key=access_key,
        scope=scope,
        signed_headers=signed,
        signature=fields["Signature"],
        amz_date=_amz_date(amz_date) if amz_date is not None else _http_date(headers["date"]),
        expires=None,
        query=_query_pairs(query),
    )


def _auth_fields(rest: str, authorization: str) -> dict[str, str]:
    # AWS separates the fields by commas and/or spaces, so a stray space inside one
    # ("Credential= AKIA...") leaves a token without "=": refused as AWS refuses it.
    fields: dict[str, str] = {}
    for part in _FIELD_SEPARATORS.split(rest):
        if not part:
            continue
        name, equal, value = part.partition("=")
        if not equal:
            raise IncompleteSignature(
                f"'{part}' not a valid key=value pair (missing equal-sign) in Authorization "
                f"header: '{authorization}'."
            )
        fields[name] = value
    return fields


def _query_claim(query: list[tuple[str, str]]) -> _Claim:
    params = {unquote(key): unquote(value) for key, value in query}
    for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"):
        _require_param(params, name)
    _require_param(params, "X-Amz-SignedHeaders")
    _require_param(params, "X-Amz-Date")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{params['X-Amz-Algorithm']}'")
    signed = params["X-Amz-SignedHeaders"]
    if "host" not in signed.split(";"):
        raise InvalidSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    access_key, scope = _credential(params["X-Amz-Credential"])
    return _Claim(
        access_key=access_key,
        scope=scope,
        signed_headers=signed,
        signature=params["X-Amz-Signature"],
        amz_date=_amz_date(params["X-Amz-Date"]),
        expires=_expires(params.get("X-Amz-Expires")),
        query=[(key, value) for key, value in query if unquote(key) != "X-Amz-Signature"],
    )


def _require_param(params: dict[str, str], name: str) -> None:
    if not params.get(name):
        raise IncompleteSignature(
            f"AWS query-string parameters must include '{name}'. "
            "Re-examine the query-string parameters."
        )


def _require_signed(signed: str, headers: dict[str, str], *, dated_by_header: bool) -> None:
    """The headers whose change must break the signature are among the signed ones."""
    names = signed.split(";")
    if "host" not in names:
        raise InvalidSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    if dated_by_header and "x-amz-date" not in names:
        raise InvalidSignature("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-content-sha256" in headers and "x-amz-content-sha256" not in names:
        raise InvalidSignature(
            "'X-Amz-Content-SHA256' must be a 'SignedHeader' in the AWS Authorization."
        )


def _credential(credential: str) -> tuple[str, list[str]]:
    parts = credential.split("/")
    if len(parts) != 5 or not parts[0]:
        raise IncompleteSignature(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{credential}'"
        )
    return parts[0], parts[1:]


def _amz_date(value: str) -> str:
    if not _AMZ_DATE.match(value):
        raise IncompleteSignature(
            f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        )
    _epoch(value)
    return value


def _http_date(value: str) -> str:
    """A ``Date`` header (RFC 7231), which SigV4 allows instead of X-Amz-Date."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise IncompleteSignature(
            f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _expires(value: str | None) -> int:
    if value is None or not value.isdigit() or not 1 <= int(value) <= MAX_EXPIRES:
        raise IncompleteSignature(
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES}, "
            f"got '{value}'. Re-examine the query-string parameters."
        )
    return int(value)


def _epoch(amz_date: str) -> int:
    try:
        return calendar.timegm(
            (
                int(amz_date[0:4]),
                int(amz_date[4:6]),
                int(amz_date[6:8]),
                int(amz_date[9:11]),
                int(amz_date[11:13]),
                int(amz_date[13:15]),
            )
        )
    except ValueError:
        raise IncompleteSignature(
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")


def _span(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} sec"


# --- The canonical request ----------------------------------------------------------------


def _payload_hashes(
    request: HttpRequest, headers: dict[str, str], claim: _Claim
) -> tuple[str, ...]:
    """The body hashes the signer may have used, most likely first.

    Header form: ``X-Amz-Content-SHA256`` when sent (and then it must be the
    body's real hash: an unsigned body would let a replayed request carry
    another payload), else the body's SHA-256. Query form (presigned URLs):
    botocore signs the body's hash, S3-style presigners ``UNSIGNED-PAYLOAD``.
    """
    declared = headers.get("x-amz-content-sha256")
    actual = hashlib.sha256(request.body).hexdigest()
    if declared is not None and claim.expires is None:
        if declared != actual:
            raise InvalidSignature()
        return (declared,)
    if claim.expires is None:
        return (actual,)
    if declared is not None:
        return (declared,) if declared in (actual, UNSIGNED_PAYLOAD) else ()
    return (actual, UNSIGNED_PAYLOAD)


def _canonical_request(
    request: HttpRequest, headers: dict[str, str], claim: _Claim, payload: str
) -> str:
    lines = [request.method.upper(), _canonical_path(request.path), _canonical_query(claim.query)]
    for name in claim.signed_headers.split(";"):
        value = headers.get(name)
        if value is None:
            # A signed header the request no longer carries: it was dropped on the way.
            raise InvalidSignature()
        lines.append(f"{name}:{' '.join(value.split())}")
    lines.append("")
    lines.append(claim.signed_headers)
    lines.append(payload)
    return "\n".join(lines)


def _canonical_path(path: str) -> str:
    # What botocore's SigV4Auth._normalize_url_path does to the path it sent.
    return quote(normalize_url_path(path), safe="/~")


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    encoded = sorted((_reencode(key), _reencode(value)) for key, value in pairs)
    return "&".join(f"{key}={value}" for key, value in encoded)


def _reencode(text: str) -> str:
    return quote(unquote_to_bytes(text), safe="-_.~")


def _query_pairs(query: str) -> list[tuple[str, str]]:
    if not query:
        return []
    pairs = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def _has_param(pairs: list[tuple[str, str]], name: str) -> bool:
    return any(unquote(key) == name for key, _ in pairs)

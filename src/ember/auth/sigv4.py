"""AWS Signature Version 4 verification, as Lambda does it, in the header and query forms.

Order of the checks follows AWS's: the shape of the signature
(IncompleteSignatureException, ``claims``), the time window and credential
scope (InvalidSignatureException), the access key
(UnrecognizedClientException), then the signature over the canonical request
(``canonical``; InvalidSignatureException). Every refusal is an
``ember.errors.AuthError`` carrying Lambda's code and message.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from ember.auth.canonical import canonical_request, payload_hashes
from ember.auth.claims import (
    ALGORITHM,
    Claim,
    HttpRequest,
    claim_of,
    epoch,
    has_param,
    header_map,
    span,
    stamp,
)
from ember.auth.principals import Principal
from ember.errors import InvalidSignature, UnrecognizedClient

__all__ = ["SKEW_SECONDS", "Clock", "HttpRequest", "KeyLookup", "Verifier"]

# Lambda accepts a signature up to five minutes off the server's clock either way.
SKEW_SECONDS = 300
# The derived-key cache is bounded; a burst of distinct keys only costs recomputation.
_CACHE_LIMIT = 4096

# access key id -> (secret access key, the principal it belongs to), or None: unknown.
KeyLookup = Callable[[str], "tuple[str, Principal] | None"]
Clock = Callable[[], float]


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
        headers = header_map(request.headers)
        claim = claim_of(request, headers)
        if "x-amz-security-token" in headers or has_param(claim.query, "X-Amz-Security-Token"):
            # Only long-term keys exist here: no session token can be valid.
            raise UnrecognizedClient()
        self._check_time(claim)
        self._check_scope(claim)
        found = self._lookup(claim.access_key)
        if found is None:
            raise UnrecognizedClient()
        secret, principal = found
        key = self._signing_key(claim, secret)
        for payload in payload_hashes(request, headers, claim):
            canonical = canonical_request(request, headers, claim, payload)
            if _matches(key, claim, canonical):
                return principal
        raise InvalidSignature()

    def _check_time(self, claim: Claim) -> None:
        now = int(self._clock())
        signed_at = epoch(claim.amz_date)
        window = SKEW_SECONDS if claim.expires is None else claim.expires
        if signed_at < now - window:
            raise InvalidSignature(
                f"Signature expired: {claim.amz_date} is now earlier than "
                f"{stamp(now - window)} ({stamp(now)} - {span(window)}.)"
            )
        latest = now + SKEW_SECONDS
        if signed_at > latest:
            raise InvalidSignature(
                f"Signature not yet current: {claim.amz_date} is still later than "
                f"{stamp(latest)} ({stamp(now)} + {span(SKEW_SECONDS)}.)"
            )

    def _check_scope(self, claim: Claim) -> None:
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

    def _signing_key(self, claim: Claim, secret: str) -> bytes:
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
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def _matches(key: bytes, claim: Claim, canonical: str) -> bool:
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            claim.amz_date,
            "/".join(claim.scope),
            hashlib.sha256(canonical.encode()).hexdigest(),
        )
    )
    expected = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
    # Bytes on both sides: compare_digest refuses non-ASCII str, and a client may send any.
    return hmac.compare_digest(expected.encode(), claim.signature.encode("latin-1"))

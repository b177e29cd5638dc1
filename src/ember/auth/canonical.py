"""The canonical request of SigV4, rebuilt exactly as botocore's ``SigV4Auth`` builds it.

botocore (``botocore/auth.py``) signs the path as it sent it, after its own
``normalize_url_path``, percent-encoded once more (Lambda, like every service
but S3, signs the already-encoded path encoded twice); query keys and values
encoded with the RFC 3986 unreserved set and sorted (decoding first makes any
client's encoding agree); header values trimmed with inner runs of spaces
folded. The unit tests check the result against botocore's own signatures.
"""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import quote, unquote_to_bytes

from botocore.utils import normalize_url_path

from ember.auth.claims import Claim, HttpRequest
from ember.errors import InvalidSignature

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def payload_hashes(request: HttpRequest, headers: dict[str, str], claim: Claim) -> tuple[str, ...]:
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


def canonical_request(
    request: HttpRequest, headers: dict[str, str], claim: Claim, payload: str
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


# The same few paths are signed again and again (a function's Invoke path): their
# canonical form is a pure function of the path, remembered in a bounded cache.
@functools.lru_cache(maxsize=4096)
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

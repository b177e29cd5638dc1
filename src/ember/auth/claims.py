"""What a SigV4-signed request claims: who signed it, when, over what scope and headers.

Parsing only: ``claim_of`` turns the Authorization header (or the presigned
URL's ``X-Amz-*`` parameters) into a ``Claim`` and refuses a garbled one with
AWS's IncompleteSignatureException wording; whether the claim is true is
``ember.auth.sigv4``'s business.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from ember.errors import IncompleteSignature, InvalidSignature, MissingAuthenticationToken
from ember.text import is_decimal

ALGORITHM = "AWS4-HMAC-SHA256"
# SigV4 caps a presigned URL's life at seven days.
MAX_EXPIRES = 604800
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_QUERY_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
)
_HOST_UNSIGNED = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
_FIELD_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as it arrived, before any decoding (the ASGI scope's view).

    ``path`` is the raw path as sent (``raw_path``: still percent-encoded, no
    query); ``query`` the raw query string without ``?`` (both ASCII on the
    wire, as every SDK percent-encodes; decode them as latin-1); ``headers``
    ASGI's list of (lower-case name, value) byte pairs, repeats allowed.
    """

    method: str
    path: str
    query: str
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Claim:
    """What the client says it signed: parsed from the Authorization header or the query."""

    access_key: str
    scope: list[str]  # date, region, service, terminator
    signed_headers: str
    signature: str
    amz_date: str
    expires: int | None  # None: the header form (the skew window applies)
    query: list[tuple[str, str]]  # raw pairs that enter the canonical query


def header_map(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case name -> value; repeated headers joined with ',' as SigV4 canonicalises them."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        if key in headers:
            headers[key] += "," + value.decode("latin-1")
        else:
            headers[key] = value.decode("latin-1")
    return headers


def claim_of(request: HttpRequest, headers: dict[str, str]) -> Claim:
    """The signature ``request`` carries (``headers`` is its ``header_map``): the
    Authorization header, else the presigned query; raises
    ``MissingAuthenticationToken`` when it has neither, ``IncompleteSignature``
    (or ``InvalidSignature`` for unsigned host/date/body-hash headers) when garbled."""
    authorization = headers.get("authorization")
    if authorization is not None:
        return _header_claim(authorization, headers, request.query)
    query = query_pairs(request.query)
    if has_param(query, "X-Amz-Algorithm") or has_param(query, "X-Amz-Signature"):
        return _query_claim(query)
    raise MissingAuthenticationToken()


def _header_claim(authorization: str, headers: dict[str, str], query: str) -> Claim:
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
    return Claim(
        access_key=access_key,
        scope=scope,
        signed_headers=signed,
        signature=fields["Signature"],
        amz_date=_amz_date(amz_date) if amz_date is not None else _http_date(headers["date"]),
        expires=None,
        query=query_pairs(query),
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


def _query_claim(query: list[tuple[str, str]]) -> Claim:
    params = {unquote(key): unquote(value) for key, value in query}
    for name in _QUERY_PARAMS:
        _require_param(params, name)
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{params['X-Amz-Algorithm']}'")
    signed = params["X-Amz-SignedHeaders"]
    if "host" not in signed.split(";"):
        raise InvalidSignature(_HOST_UNSIGNED)
    access_key, scope = _credential(params["X-Amz-Credential"])
    return Claim(
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
        raise InvalidSignature(_HOST_UNSIGNED)
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
        raise _bad_date(value)
    epoch(value)
    return value


def _http_date(value: str) -> str:
    """A ``Date`` header (RFC 7231), which SigV4 allows instead of X-Amz-Date."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise _bad_date(value) from None
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _expires(value: str | None) -> int:
    if value is None or not is_decimal(value) or not 1 <= int(value) <= MAX_EXPIRES:
        raise IncompleteSignature(
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES}, "
            f"got '{value}'. Re-examine the query-string parameters."
        )
    return int(value)


# Every request of the same second carries the same date: parsed once.
@functools.lru_cache(maxsize=1024)
def epoch(amz_date: str) -> int:
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
        raise _bad_date(amz_date) from None


def _bad_date(value: str) -> IncompleteSignature:
    return IncompleteSignature(
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%SZ")


def span(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} sec"


def query_pairs(query: str) -> list[tuple[str, str]]:
    if not query:
        return []
    pairs = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def has_param(pairs: list[tuple[str, str]], name: str) -> bool:
    return any(unquote(key) == name for key, _ in pairs)

"""OAuth 2.1 access tokens of /mcp: JWTs verified against a real (local) issuer's JWKS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import jwt
import pytest

from ember.auth.oauth import ACCOUNT_CLAIM, OAuthVerifier
from ember.errors import UnrecognizedClient
from oauth_issuer import AUTHORIZATION_SERVER, OPENID_CONFIGURATION, Issuer, new_key, running

RESOURCE = "http://127.0.0.1:9900/mcp"
DEFAULT = "000000000000"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with running() as served:
        yield served


def verify(verifier: OAuthVerifier, token: str) -> tuple[str | None, str]:
    claims = asyncio.run(verifier.verify(token))
    return claims.subject, claims.account_id


def refused(verifier: OAuthVerifier, token: str) -> str:
    with pytest.raises(UnrecognizedClient) as caught:
        asyncio.run(verifier.verify(token))
    return caught.value.message.lower()


def test_a_valid_token_acts_for_its_account_claim_or_the_default(issuer: Issuer) -> None:
    verifier = OAuthVerifier(issuer.url, RESOURCE, DEFAULT)
    assert verify(verifier, issuer.token(RESOURCE)) == ("user-1", DEFAULT)
    token = issuer.token(RESOURCE, ember_account="123456789012")
    assert verify(verifier, token) == ("user-1", "123456789012")
    # An audience list naming this resource among others is fine (RFC 7519).
    assert verify(verifier, issuer.token(["other", RESOURCE]))[1] == DEFAULT
    # The metadata and the key set were fetched once for all of them.
    assert issuer.hits[AUTHORIZATION_SERVER] == 1
    assert issuer.hits["/jwks"] == 1


def test_openid_configuration_is_the_fallback() -> None:
    with running(Issuer(paths=(OPENID_CONFIGURATION,))) as issuer:
        verifier = OAuthVerifier(issuer.url, RESOURCE, DEFAULT)
        assert verify(verifier, issuer.token(RESOURCE))[1] == DEFAULT
        assert issuer.hits[AUTHORIZATION_SERVER] == 1  # tried first, 404
        assert issuer.hits[OPENID_CONFIGURATION] == 1


def test_wrong_audience_issuer_or_time_is_refused(issuer: Issuer) -> None:
    verifier = OAuthVerifier(issuer.url, RESOURCE, DEFAULT)
    assert "audience" in refused(verifier, issuer.token("http://elsewhere/mcp"))
    assert "issuer" in refused(verifier, issuer.token(RESOURCE, iss="http://evil.example"))
    assert "expired" in refused(verifier, issuer.token(RESOURCE, lifetime=-120))
    future = issuer.token(RESOURCE, nbf=int(time.time()) + 600)
    assert "not yet valid" in refused(verifier, future)
    without_exp = jwt.encode(
        {"iss": issuer.url, "aud": RESOURCE}, issuer.keys["k1"], "RS256", headers={"kid": "k1"}
    )
    assert "exp" in refused(verifier, without_exp)


def test_bad_signatures_and_unknown_keys_are_refused(issuer: Issuer) -> None:
    verifier = OAuthVerifier(issuer.url, RESOURCE, DEFAULT)
    # Signed by a key that is not the one its kid names.
    assert "signature" in refused(verifier, issuer.token(RESOURCE, key=new_key()))
    # A kid the issuer never published: the set is refetched once, then refused.
    assert "signing key" in refused(verifier, issuer.token(RESOURCE, kid="k9", key=new_key()))
    # Symmetric and unsigned tokens never pass, whatever the key set holds.
    hs = jwt.encode({"iss": issuer.url, "aud": RESOURCE, "exp": 2**40}, "k" * 32, "HS256")
    assert refused(verifier, hs)
    tampered = issuer.token(RESOURCE).split(".")
    tampered[1] = tampered[1][:-2] + ("AA" if tampered[1][-2:] != "AA" else "BB")
    assert refused(verifier, ".".join(tampered))


def test_a_rotated_key_is_found_by_refetching(issuer: Issuer) -> None:
    verifier = OAuthVerifier(issuer.url, RESOURCE, DEFAULT, refetch_cooldown=0)
    assert verify(verifier, issuer.token(RESOURCE))[1] == DEFAULT
    issuer.keys["k2"] = new_key()
    assert verify(verifier, issuer.token(RESOURCE, kid="k2"))[1] == DEFAULT
    assert issuer.hits["/jwks"] == 2
    # Within the cooldown, a kid nobody published costs the issuer nothing more.
    cooling = OAuthVerifier(issuer.url, RESOURCE, DEFAULT)
    assert verify(cooling, issuer.token(RESOURCE))[1] == DEFAULT
    for _ in range(3):
        assert "signing key" in refused(cooling, issuer.token(RESOURCE, kid="k9", key=new_key()))
    assert issuer.hits["/jwks"] == 3


def test_an_account_claim_that_is_no_account_is_refused(issuer: Issuer) -> None:
    verifier = OAuthVerifier(issuer.url, RESOURCE, DEFAULT)
    assert ACCOUNT_CLAIM in refused(verifier, issuer.token(RESOURCE, ember_account="root"))


def test_an_issuer_without_metadata_refuses_and_is_asked_again_later() -> None:
    with running(Issuer(paths=())) as issuer:
        verifier = OAuthVerifier(issuer.url, RESOURCE, DEFAULT)
        token = issuer.token(RESOURCE)
        assert "metadata" in refused(verifier, token)
        issuer.paths = (AUTHORIZATION_SERVER,)
        assert verify(verifier, token)[1] == DEFAULT
    unreachable = OAuthVerifier("http://127.0.0.1:1", RESOURCE, DEFAULT)
    assert "metadata" in refused(unreachable, token)

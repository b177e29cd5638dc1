"""OAuth 2.1 access tokens for ``/mcp``: JWTs of an external authorization server.

ember is only the resource server (MCP authorization spec): an operator names
the issuer (``--mcp-oauth-issuer``); its JWKS is found through its metadata
(RFC 8414 ``/.well-known/oauth-authorization-server``, else OpenID Connect's
``/.well-known/openid-configuration``) on the first token, and its keys are
cached by PyJWT's ``PyJWKClient`` (an unknown ``kid`` refetches the set, at
most once per cooldown, so forged kids cannot make ember hammer the issuer).

A token is accepted when its signature verifies under an asymmetric key of
the set, ``iss`` is the issuer, ``aud`` names this server's MCP resource URL
(RFC 8707: a token minted for another service is refused) and ``exp``/``nbf``
hold. The account it acts for is its ``ember_account`` claim, else the
default account.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx
import jwt

from ember.errors import UnrecognizedClient
from ember.text import is_decimal

log = logging.getLogger("ember.auth")

ACCOUNT_CLAIM = "ember_account"
METADATA_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")
# Asymmetric only: an HS* token would be "signed" with the public key (key confusion).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
LEEWAY_SECONDS = 30  # clock skew between the issuer and this node
FETCH_TIMEOUT_SECONDS = 10.0
# An unknown kid refetches the key set at most this often (a rotated key is found;
# a flood of forged kids costs the issuer one fetch per period).
REFETCH_COOLDOWN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class OAuthClaims:
    """What ember takes from a verified access token."""

    subject: str | None
    account_id: str


class OAuthVerifier:
    """Verifies access tokens of one issuer for one resource (this server's /mcp URL)."""

    def __init__(
        self,
        issuer: str,
        resource: str,
        default_account: str,
        *,
        refetch_cooldown: float = REFETCH_COOLDOWN_SECONDS,
    ) -> None:
        self.issuer = issuer  # as given: ``iss`` must equal it exactly
        self._base = issuer.rstrip("/")
        self.resource = resource
        self._default_account = default_account
        self._cooldown = refetch_cooldown
        self._keys: jwt.PyJWKClient | None = None
        self._discovery = asyncio.Lock()

    async def verify(self, token: str) -> OAuthClaims:
        """The token's claims; raises ``UnrecognizedClient`` saying why it is refused."""
        keys = await self._jwks()
        # PyJWKClient fetches synchronously (on a cold cache or an unknown kid).
        claims = await asyncio.to_thread(self._decode, keys, token)
        account = claims.get(ACCOUNT_CLAIM, self._default_account)
        if not isinstance(account, str) or not (len(account) == 12 and is_decimal(account)):
            raise UnrecognizedClient(f"The token's {ACCOUNT_CLAIM} claim is not an account id.")
        subject = claims.get("sub")
        return OAuthClaims(subject if isinstance(subject, str) else None, account)

    def _decode(self, keys: jwt.PyJWKClient, token: str) -> dict[str, object]:
        try:
            key = keys.get_signing_key_from_jwt(token)
            claims: dict[str, object] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.resource,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as error:
            log.warning("cannot fetch the keys of %s: %s", self.issuer, error)
            raise UnrecognizedClient("The token's issuer cannot be reached.") from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as error:
            raise UnrecognizedClient(f"The access token is invalid: {error}") from None
        return claims

    async def _jwks(self) -> jwt.PyJWKClient:
        """The issuer's key set client, discovered once (retried until it succeeds)."""
        async with self._discovery:
            if self._keys is None:
                self._keys = jwt.PyJWKClient(
                    await self._jwks_uri(), cache_keys=True, cooldown_duration=self._cooldown
                )
            return self._keys

    async def _jwks_uri(self) -> str:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as http:
            for path in METADATA_PATHS:
                try:
                    response = await http.get(self._base + path)
                except httpx.HTTPError as error:
                    log.warning("cannot reach %s%s: %s", self.issuer, path, error)
                    continue
                if response.status_code != 200:
                    continue
                return self._checked_metadata(response)
        raise UnrecognizedClient("The token's issuer publishes no usable metadata.")

    def _checked_metadata(self, response: httpx.Response) -> str:
        try:
            metadata = response.json()
        except ValueError:
            metadata = None
        # RFC 8414 section 3.3: metadata naming another issuer must not be used.
        if (
            not isinstance(metadata, dict)
            or str(metadata.get("issuer", "")).rstrip("/") != self._base
            or not isinstance(metadata.get("jwks_uri"), str)
        ):
            raise UnrecognizedClient("The token's issuer metadata is not usable.")
        return str(metadata["jwks_uri"])

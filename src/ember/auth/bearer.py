"""Who an ``/mcp`` request acts for: its ``Authorization: Bearer`` credential.

Three kinds are accepted, tried in this order: an MCP token of an account
(``ember_mcp_...``, from ``TokenStore``: its account, its tool allow-list),
the operator's static ``--mcp-token`` (the default account, every tool), and,
when an issuer is configured, an OAuth 2.1 access token (``OAuthVerifier``).
Without any credential the request is refused unless authentication is off
(``--auth none`` and no ``--mcp-token``), when it acts for the default account.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ember.auth.oauth import OAuthVerifier
from ember.auth.tokens import TokenStore
from ember.errors import MissingAuthenticationToken, UnrecognizedClient


@dataclass(frozen=True, slots=True)
class Grant:
    """What one MCP request may see and call: one account's tools, maybe fewer."""

    account_id: str
    tools: frozenset[str] | None = None  # an allow-list of tool names; None: all

    def allows(self, tool_name: str) -> bool:
        return self.tools is None or tool_name in self.tools


class BearerAuth:
    def __init__(
        self,
        default_account: str,
        *,
        required: bool,
        tokens: TokenStore | None = None,
        static_token: str | None = None,
        oauth: OAuthVerifier | None = None,
    ) -> None:
        self._default = Grant(default_account)
        self._tokens = tokens
        self._static = static_token.encode() if static_token else None
        self._oauth = oauth
        self.required = required or self._static is not None

    @property
    def anonymous(self) -> Grant | None:
        """The grant of a request without credentials: None when one is required."""
        return None if self.required else self._default

    async def authenticate(self, authorization: bytes | None) -> Grant:
        """The grant of an ``Authorization`` header's value (None: no header).

        Raises ``MissingAuthenticationToken`` when a credential is required and
        none was given, ``UnrecognizedClient`` when the one given is not valid.
        """
        if authorization is None:
            if self.required:
                raise MissingAuthenticationToken()
            return self._default
        scheme, _, credential = authorization.partition(b" ")
        token = credential.strip()
        if scheme.lower() != b"bearer" or not token:
            raise UnrecognizedClient("Only 'Authorization: Bearer <token>' is accepted on /mcp.")
        return await self._grant_of(token)

    async def _grant_of(self, token: bytes) -> Grant:
        text = token.decode("ascii", errors="replace")
        if self._tokens is not None:
            entry = self._tokens.lookup(text)
            if entry is not None:
                tools = frozenset(entry.tools) if entry.tools is not None else None
                return Grant(entry.account_id, tools)
        # Compared in constant time: the static token itself is the secret here.
        if self._static is not None and hmac.compare_digest(token, self._static):
            return self._default
        if self._oauth is not None and text.count(".") == 2:
            claims = await self._oauth.verify(text)
            return Grant(claims.account_id)
        raise UnrecognizedClient()

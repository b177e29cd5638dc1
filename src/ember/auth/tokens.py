"""MCP access tokens: bearer tokens for ``/mcp``, one account each, stored only as hashes.

A token is ``ember_mcp_`` + 43 url-safe characters (32 random bytes); the
store keeps its SHA-256, never the token, so a leaked database grants
nothing. Lookup is by that hash in a dict, not by comparing secrets: the
hash of a guess reveals nothing about the stored hashes near it, so a
timing difference in the dict lookup leaks nothing usable (a constant-time
compare only matters when the secret itself is compared byte by byte).

Documents live in a ``MetadataStore`` (namespace ``tokens``), one per token
id; every node keeps them all in memory and follows other nodes' writes
through the feed (``apply_remote``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from ember.auth.principals import Principal
from ember.errors import AccessDenied, InvalidParameterValue, ResourceNotFound
from ember.storage.base import MetadataStore
from ember.text import is_decimal

PREFIX = "ember_mcp_"
TOKEN_BYTES = 32  # 43 url-safe characters
ID_PREFIX = "mcpt-"
TOOL_NAME_LIMIT = 128


@dataclass(frozen=True, slots=True)
class McpToken:
    """A token's public half: what ``ember tokens ls`` shows. Never holds the token."""

    token_id: str
    account_id: str
    tools: tuple[str, ...] | None  # the allow-list of tool names; None: every tool
    created: str  # ISO 8601, UTC
    digest: str  # hex SHA-256 of the token

    def document(self) -> dict[str, object]:
        """The API's shape (no digest: it is only the store's)."""
        return {
            "TokenId": self.token_id,
            "AccountId": self.account_id,
            "Tools": list(self.tools) if self.tools is not None else None,
            "Created": self.created,
        }

    def record(self) -> str:
        return orjson.dumps({**self.document(), "Sha256": self.digest}).decode()

    @classmethod
    def from_record(cls, record: str) -> McpToken:
        body = orjson.loads(record)
        tools = body.get("Tools")
        return cls(
            body["TokenId"],
            body["AccountId"],
            tuple(tools) if tools is not None else None,
            body["Created"],
            body["Sha256"],
        )


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def tool_list(tools: object) -> tuple[str, ...] | None:
    """A validated ``Tools`` allow-list (None: every tool of the account)."""
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(
        isinstance(name, str) and 0 < len(name) <= TOOL_NAME_LIMIT for name in tools
    ):
        raise InvalidParameterValue("Tools must be a list of tool names.")
    return tuple(dict.fromkeys(tools))


def managed_account(caller: Principal, requested: object, default_account: str) -> str:
    """The account whose tokens ``caller`` manages when asking for ``requested`` (None:
    its own). An account's root manages its own; the default account's root, any."""
    account = caller.account_id if requested is None else requested
    if not isinstance(account, str) or not (len(account) == 12 and is_decimal(account)):
        raise InvalidParameterValue("AccountId must be a 12-digit account id.")
    if not caller.is_root:
        raise AccessDenied(f"{caller.arn} is not authorized to manage MCP tokens: only roots are.")
    if account != caller.account_id and caller.account_id != default_account:
        raise AccessDenied(
            f"{caller.arn} is not authorized to manage the MCP tokens of account {account}."
        )
    return account


def visible_tokens(caller: Principal, default_account: str) -> str | None:
    """Whose tokens ``caller`` may list: None (every account's) for the default root."""
    if caller.is_root and caller.account_id == default_account:
        return None
    return managed_account(caller, None, default_account)


class TokenStore:
    """Every MCP token of the deployment, by id and by hash. ``open`` before use."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        # Invariant: _by_digest holds the same tokens as _tokens, keyed by digest.
        self._tokens: dict[str, McpToken] = {}
        self._by_digest: dict[str, McpToken] = {}

    async def open(self) -> None:
        for record in (await self._store.load_all()).values():
            self._remember(McpToken.from_record(record))

    async def create(
        self, account_id: str, tools: tuple[str, ...] | None = None
    ) -> tuple[McpToken, str]:
        """A new token of ``account_id``: (its public half, the token to show once)."""
        token = new_token()
        entry = McpToken(
            ID_PREFIX + secrets.token_hex(8),
            account_id,
            tools,
            datetime.now(UTC).isoformat(),
            digest_of(token),
        )
        await self._store.put(entry.token_id, entry.record())
        self._remember(entry)
        return entry, token

    def get(self, token_id: str, account_id: str | None = None) -> McpToken:
        """The token ``token_id`` (of ``account_id`` if given: another account's token
        is not there, as far as its caller can tell); else ``ResourceNotFound``."""
        entry = self._tokens.get(token_id)
        if entry is None or account_id not in (None, entry.account_id):
            raise ResourceNotFound(f"The MCP token with id {token_id} cannot be found.")
        return entry

    async def delete(self, token_id: str, account_id: str | None = None) -> None:
        """Revoke a token (of ``account_id`` if given); ``ResourceNotFound`` if none."""
        self.get(token_id, account_id)
        await self._store.delete(token_id)
        self._forget(token_id)

    def tokens(self, account_id: str | None = None) -> list[McpToken]:
        """Every token (of ``account_id`` if given), oldest first."""
        return sorted(
            (t for t in self._tokens.values() if account_id in (None, t.account_id)),
            key=lambda t: (t.created, t.token_id),
        )

    def lookup(self, token: str) -> McpToken | None:
        """The token presented on a request, or None (see the module note on timing)."""
        if not token.startswith(PREFIX):
            return None
        return self._by_digest.get(digest_of(token))

    async def apply_remote(self, token_id: str, record: str | None) -> None:
        """The feed's callback (namespace ``tokens``): another node created or revoked
        ``token_id``. Nothing is written; idempotent."""
        self._forget(token_id)
        if record is not None:
            self._remember(McpToken.from_record(record))

    def _remember(self, entry: McpToken) -> None:
        self._tokens[entry.token_id] = entry
        self._by_digest[entry.digest] = entry

    def _forget(self, token_id: str) -> None:
        entry = self._tokens.pop(token_id, None)
        if entry is not None:
            del self._by_digest[entry.digest]

"""MCP tokens: the store (hashes only, feed replay), who may manage them, and the
bearer authentication of /mcp that reads them."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from ember.auth.bearer import BearerAuth, Grant
from ember.auth.principals import Principal
from ember.auth.tokens import TokenStore, managed_account, tool_list, visible_tokens
from ember.errors import (
    AccessDenied,
    InvalidParameterValue,
    MissingAuthenticationToken,
    ResourceNotFound,
    UnrecognizedClient,
)
from ember.storage.sqlite import SqliteMetadataStore

DEFAULT = "000000000000"
OTHER = "123456789012"


def test_tokens_are_stored_only_as_hashes_and_survive_a_reopen(tmp_path: Path) -> None:
    async def body() -> None:
        first = TokenStore(SqliteMetadataStore(tmp_path / "tokens.sqlite3"))
        await first.open()
        entry, token = await first.create(OTHER, ("add", "mul"))
        assert re.fullmatch(r"ember_mcp_[A-Za-z0-9_-]{43}", token)
        assert first.lookup(token) == entry
        # The stored bytes: across the database and its WAL, the hash, never the token.
        raw = b"".join(path.read_bytes() for path in tmp_path.glob("tokens.sqlite3*"))
        assert token.encode() not in raw
        assert token.removeprefix("ember_mcp_").encode() not in raw
        assert hashlib.sha256(token.encode()).hexdigest().encode() in raw

        again = TokenStore(SqliteMetadataStore(tmp_path / "tokens.sqlite3"))
        await again.open()
        assert again.lookup(token) == entry
        assert again.tokens() == [entry]
        assert entry.document() == {
            "TokenId": entry.token_id,
            "AccountId": OTHER,
            "Tools": ["add", "mul"],
            "Created": entry.created,
        }

        with pytest.raises(ResourceNotFound):  # another account's: not there for it
            await again.delete(entry.token_id, DEFAULT)
        assert again.lookup(token) == entry
        await again.delete(entry.token_id, OTHER)
        assert again.lookup(token) is None
        with pytest.raises(ResourceNotFound):
            await again.delete(entry.token_id)

    asyncio.run(body())


def test_lookup_refuses_near_misses(tmp_path: Path) -> None:
    async def body() -> None:
        store = TokenStore(SqliteMetadataStore(tmp_path / "t.sqlite3"))
        await store.open()
        _, token = await store.create(DEFAULT)
        assert store.lookup(token[:-1]) is None
        assert store.lookup(token + "x") is None
        assert store.lookup(token.removeprefix("ember_mcp_")) is None
        assert store.lookup("") is None

    asyncio.run(body())


def test_other_nodes_writes_arrive_through_the_feed(tmp_path: Path) -> None:
    async def body() -> None:
        writer = TokenStore(SqliteMetadataStore(tmp_path / "a.sqlite3"))
        reader = TokenStore(SqliteMetadataStore(tmp_path / "b.sqlite3"))
        await writer.open()
        await reader.open()
        entry, token = await writer.create(OTHER)
        await reader.apply_remote(entry.token_id, entry.record())
        await reader.apply_remote(entry.token_id, entry.record())  # replayed: idempotent
        assert reader.lookup(token) == entry
        assert reader.tokens(OTHER) == [entry]
        await reader.apply_remote(entry.token_id, None)
        assert reader.lookup(token) is None
        assert reader.tokens() == []

    asyncio.run(body())


def test_roots_manage_their_own_tokens_and_the_default_root_any() -> None:
    assert managed_account(Principal(OTHER), None, DEFAULT) == OTHER
    assert managed_account(Principal(OTHER), OTHER, DEFAULT) == OTHER
    assert managed_account(Principal(DEFAULT), OTHER, DEFAULT) == OTHER
    with pytest.raises(AccessDenied):
        managed_account(Principal(OTHER), DEFAULT, DEFAULT)
    with pytest.raises(AccessDenied):
        managed_account(Principal(OTHER, "alice"), None, DEFAULT)
    with pytest.raises(InvalidParameterValue):
        managed_account(Principal(DEFAULT), "12", DEFAULT)
    assert visible_tokens(Principal(DEFAULT), DEFAULT) is None
    assert visible_tokens(Principal(OTHER), DEFAULT) == OTHER
    with pytest.raises(AccessDenied):
        visible_tokens(Principal(DEFAULT, "bob"), DEFAULT)


def test_tool_lists_are_validated() -> None:
    assert tool_list(None) is None
    assert tool_list(["a", "b", "a"]) == ("a", "b")
    for bad in ("a", [1], [""], ["x" * 129], {"a": 1}):
        with pytest.raises(InvalidParameterValue):
            tool_list(bad)


def test_bearer_auth_accepts_account_tokens_and_the_static_token(tmp_path: Path) -> None:
    async def body() -> None:
        store = TokenStore(SqliteMetadataStore(tmp_path / "t.sqlite3"))
        await store.open()
        _, narrow = await store.create(OTHER, ("add",))
        _, wide = await store.create(DEFAULT)
        auth = BearerAuth(DEFAULT, required=True, tokens=store, static_token="s3cret")
        assert await auth.authenticate(f"Bearer {narrow}".encode()) == Grant(
            OTHER, frozenset({"add"})
        )
        assert await auth.authenticate(f"bearer  {wide}".encode()) == Grant(DEFAULT)
        assert await auth.authenticate(b"Bearer s3cret") == Grant(DEFAULT)
        assert auth.anonymous is None
        with pytest.raises(MissingAuthenticationToken):
            await auth.authenticate(None)
        for bad in (b"Bearer nope", b"Basic czNjcmV0", b"Bearer ", b"s3cret"):
            with pytest.raises(UnrecognizedClient):
                await auth.authenticate(bad)

    asyncio.run(body())


def test_bearer_auth_is_open_only_without_auth_and_static_token(tmp_path: Path) -> None:
    async def body() -> None:
        store = TokenStore(SqliteMetadataStore(tmp_path / "t.sqlite3"))
        await store.open()
        _, token = await store.create(OTHER)
        open_ = BearerAuth(DEFAULT, required=False, tokens=store)
        assert await open_.authenticate(None) == Grant(DEFAULT)
        assert open_.anonymous == Grant(DEFAULT)
        # A token given anyway is still checked, and still narrows.
        assert await open_.authenticate(f"Bearer {token}".encode()) == Grant(OTHER)
        with pytest.raises(UnrecognizedClient):
            await open_.authenticate(b"Bearer wrong")
        static = BearerAuth(DEFAULT, required=False, static_token="s3cret")
        with pytest.raises(MissingAuthenticationToken):
            await static.authenticate(None)

    asyncio.run(body())


def test_grants_allow_their_tools() -> None:
    assert Grant(DEFAULT).allows("anything")
    assert Grant(DEFAULT, frozenset({"a"})).allows("a")
    assert not Grant(DEFAULT, frozenset({"a"})).allows("b")

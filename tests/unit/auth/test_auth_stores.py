"""Accounts, users and keys over a real metadata store: what a restart and another node see."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from ember.auth.accounts import AccountStore
from ember.auth.admin import Admin
from ember.auth.keys import KeyStore
from ember.auth.principals import Principal
from ember.auth.users import UserStore
from ember.errors import AccessDenied, InvalidParameterValue, ResourceNotFound, ValidationError
from ember.storage.memory import MemoryMetadataStore
from ember.storage.sqlite import SqliteMetadataStore

MASTER = bytes(range(32))
DEFAULT = "000000000000"
READ_ONLY = json.dumps(
    {"Statement": [{"Effect": "Allow", "Action": "lambda:Get*", "Resource": "*"}]}
)


def test_accounts_get_unique_twelve_digit_ids_that_survive_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteMetadataStore(tmp_path / "accounts.sqlite3")
        accounts = AccountStore(store)
        await accounts.load()
        made = [await accounts.create(f"team-{i}") for i in range(50)]
        assert len({a.account_id for a in made}) == 50
        assert all(re.fullmatch(r"[1-9]\d{11}", a.account_id) for a in made)
        await accounts.ensure(DEFAULT, "default")
        await store.close()

        reopened = SqliteMetadataStore(tmp_path / "accounts.sqlite3")
        again = AccountStore(reopened)
        await again.load()
        assert again.accounts() == sorted([*made, again.get(DEFAULT)], key=lambda a: a.account_id)
        assert again.get(made[0].account_id).name == "team-0"
        with pytest.raises(ResourceNotFound):
            again.get("999999999999")
        await reopened.close()

    asyncio.run(scenario())


def test_ensure_keeps_an_existing_account() -> None:
    async def scenario() -> None:
        accounts = AccountStore(MemoryMetadataStore())
        first = await accounts.ensure(DEFAULT, "default")
        second = await accounts.ensure(DEFAULT, "another name")
        assert second == first

    asyncio.run(scenario())


def test_another_nodes_accounts_users_and_keys_arrive_through_apply_remote() -> None:
    async def scenario() -> None:
        shared = {ns: MemoryMetadataStore() for ns in ("accounts", "users", "keys")}
        writer = await _admin(shared)
        reader = await _admin(shared)
        account, root = await writer.create_account(Principal(DEFAULT), "team")
        assert root is not None
        alice = await writer.create_key(
            Principal(account.account_id), user="alice", policy=READ_ONLY
        )
        for namespace, store in shared.items():
            for key, document in (await store.load_all()).items():
                await _apply(reader, namespace, key, document)
        assert reader.accounts.get(account.account_id) == account
        assert reader.keys.lookup(root.key.access_key_id) == (
            root.secret,
            Principal(account.account_id),
        )
        alice_principal = Principal(account.account_id, "alice")
        assert reader.keys.lookup(alice.key.access_key_id) == (alice.secret, alice_principal)
        assert len(reader.users.policies(alice_principal)) == 1

        await writer.delete_key(Principal(DEFAULT), alice.key.access_key_id)
        await _apply(reader, "keys", alice.key.access_key_id, None)
        assert reader.keys.lookup(alice.key.access_key_id) is None

    asyncio.run(scenario())


def test_a_remote_key_sealed_under_another_master_key_is_ignored() -> None:
    async def scenario() -> None:
        store = MemoryMetadataStore()
        other_store = MemoryMetadataStore()
        other = KeyStore(other_store, bytes(range(1, 33)))
        await other.open()
        key, _ = await other.create(Principal(DEFAULT))
        foreign = await other_store.load_all()
        keys = KeyStore(store, MASTER)
        await keys.open()
        await keys.apply_remote(key.access_key_id, foreign[key.access_key_id])
        assert keys.lookup(key.access_key_id) is None

    asyncio.run(scenario())


def test_user_policies_are_parsed_once_and_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteMetadataStore(tmp_path / "users.sqlite3")
        users = UserStore(store)
        await users.load()
        bob = Principal("123456789012", "bob")
        await users.attach(bob, READ_ONLY)
        await users.attach(bob, READ_ONLY.replace("Get*", "List*"))
        assert users.policies(bob) is users.policies(bob)  # cached, not parsed per call
        assert len(users.policies(bob)) == 2
        assert users.policies(Principal("123456789012")) == ()
        with pytest.raises(InvalidParameterValue):
            await users.attach(bob, '{"Statement": []}')
        await store.close()

        reopened = SqliteMetadataStore(tmp_path / "users.sqlite3")
        again = UserStore(reopened)
        await again.load()
        assert len(again.policies(bob)) == 2
        await reopened.close()

    asyncio.run(scenario())


def test_who_may_administer_what() -> None:
    async def scenario() -> None:
        admin = await _admin({ns: MemoryMetadataStore() for ns in ("accounts", "users", "keys")})
        default_root = Principal(DEFAULT)
        team, _ = await admin.create_account(default_root, "team")
        other, _ = await admin.create_account(default_root, "other")
        team_root = Principal(team.account_id)

        with pytest.raises(AccessDenied):
            await admin.create_account(team_root, "mine")
        made = await admin.create_key(team_root, user="ci")
        assert made.key.principal == Principal(team.account_id, "ci")
        with pytest.raises(AccessDenied):
            await admin.create_key(team_root, account_id=other.account_id)
        with pytest.raises(AccessDenied):
            await admin.create_key(Principal(team.account_id, "ci"), user="more")
        for_other = await admin.create_key(default_root, account_id=other.account_id)
        with pytest.raises(ResourceNotFound):
            await admin.delete_key(team_root, for_other.key.access_key_id)
        with pytest.raises(ResourceNotFound):
            await admin.create_key(default_root, account_id="123123123123")
        with pytest.raises(ValidationError):
            await admin.create_key(team_root, policy=READ_ONLY)  # the root needs none
        with pytest.raises(ValidationError):
            await admin.create_key(team_root, user="no/slash")

        assert [a.account_id for a in admin.list_accounts(team_root)] == [team.account_id]
        assert len(admin.list_accounts(default_root)) == 3
        assert {k.principal.account_id for k in admin.list_keys(team_root)} == {team.account_id}
        with pytest.raises(AccessDenied):
            admin.list_keys(team_root, other.account_id)
        assert len(admin.list_keys(default_root)) == 4
        await admin.delete_key(team_root, made.key.access_key_id)
        assert admin.keys.lookup(made.key.access_key_id) is None

    asyncio.run(scenario())


async def _admin(stores: dict[str, MemoryMetadataStore]) -> Admin:
    accounts = AccountStore(stores["accounts"])
    users = UserStore(stores["users"])
    keys = KeyStore(stores["keys"], MASTER)
    await keys.open()
    await accounts.load()
    await users.load()
    await accounts.ensure(DEFAULT, "default")
    return Admin(accounts, keys, users, DEFAULT)


async def _apply(admin: Admin, namespace: str, key: str, document: str | None) -> None:
    appliers = {
        "accounts": admin.accounts.apply_remote,
        "users": admin.users.apply_remote,
        "keys": admin.keys.apply_remote,
    }
    await appliers[namespace](key, document)

"""Accounts: the owners of every function, layer and key, in the metadata store.

An account is a 12-digit id (random and unique for a new one; the default
account is ``settings.account_id``), a name and its creation time. The
documents live in namespace ``accounts`` of any ``MetadataStore``; every
node keeps them all in memory and hears of other nodes' changes through the
feed (``apply_remote``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from ember.errors import ResourceNotFound
from ember.storage.base import MetadataStore

# Account ids never start with 0 when ember makes them: the default account's
# "000000000000" and other hand-picked ids stay apart from generated ones.
_FIRST_DIGITS = "123456789"


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str
    created: str  # ISO 8601, UTC

    def describe(self) -> dict[str, str]:
        """Lambda-style JSON: what GET /_ember/accounts lists."""
        return {"AccountId": self.account_id, "Name": self.name, "Created": self.created}


def new_account_id() -> str:
    return secrets.choice(_FIRST_DIGITS) + "".join(secrets.choice("0123456789") for _ in range(11))


class AccountStore:
    """Every account, in memory, written through to namespace ``accounts``. ``load`` first."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._accounts: dict[str, Account] = {}

    async def load(self) -> None:
        for document in (await self._store.load_all()).values():
            self._remember(document)

    async def create(self, name: str) -> Account:
        """A new account with a fresh random id."""
        account_id = new_account_id()
        while account_id in self._accounts:
            account_id = new_account_id()
        return await self._put(Account(account_id, name, _now()))

    async def ensure(self, account_id: str, name: str) -> Account:
        """The account ``account_id``, created with ``name`` if it does not exist yet."""
        found = self._accounts.get(account_id)
        return found if found is not None else await self._put(Account(account_id, name, _now()))

    def get(self, account_id: str) -> Account:
        """The account; raises ``ResourceNotFound``."""
        found = self._accounts.get(account_id)
        if found is None:
            raise ResourceNotFound(f"Account not found: {account_id}")
        return found

    def exists(self, account_id: str) -> bool:
        return account_id in self._accounts

    def accounts(self) -> list[Account]:
        """Every account, ordered by id."""
        return sorted(self._accounts.values(), key=lambda a: a.account_id)

    async def apply_remote(self, account_id: str, document: str | None) -> None:
        """The feed's callback (namespace ``accounts``): memory follows another node."""
        if document is None:
            self._accounts.pop(account_id, None)
        else:
            self._remember(document)

    async def _put(self, account: Account) -> Account:
        document = orjson.dumps(account.describe()).decode()
        await self._store.put(account.account_id, document)
        self._accounts[account.account_id] = account
        return account

    def _remember(self, document: str) -> None:
        record = orjson.loads(document)
        account = Account(record["AccountId"], record["Name"], record["Created"])
        self._accounts[account.account_id] = account


def _now() -> str:
    return datetime.now(UTC).isoformat()

"""Who may create and see accounts and access keys: ember's own admin operations.

The default account's root administers every account; any other account's
root manages its own account's keys and users; users manage nothing. With
``--auth none`` there are no keys (no master key is read): accounts only. The
HTTP routes (``ember.api.auth_routes``) only parse and call these. A
secret leaves only through ``create_account`` and ``create_key``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.auth.accounts import Account, AccountStore
from ember.auth.keys import AccessKey, KeyStore
from ember.auth.principals import Principal
from ember.auth.users import UserStore, check_user_name
from ember.errors import AccessDenied, ResourceNotFound, ValidationError

MAX_ACCOUNT_NAME = 64


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: the only object that carries a secret."""

    key: AccessKey
    secret: str


@dataclass
class Admin:
    accounts: AccountStore
    keys_store: KeyStore | None  # None with --auth none
    users: UserStore
    default_account: str

    @property
    def keys(self) -> KeyStore:
        if self.keys_store is None:
            raise ValidationError(
                "Access keys need --auth sigv4; this server runs with --auth none."
            )
        return self.keys_store

    async def create_account(self, caller: Principal, name: str) -> tuple[Account, NewKey | None]:
        """A new account and its root's first key (only the default root may; no key
        with --auth none)."""
        self._require_default_root(caller, "ember:CreateAccount")
        if not 1 <= len(name) <= MAX_ACCOUNT_NAME:
            raise ValidationError.constraint(
                name, "name", f"Member must have length between 1 and {MAX_ACCOUNT_NAME}"
            )
        account = await self.accounts.create(name)
        if self.keys_store is None:
            return account, None
        key, secret = await self.keys_store.create(Principal(account.account_id))
        return account, NewKey(key, secret)

    def list_accounts(self, caller: Principal) -> list[Account]:
        """Every account for the default root; the caller's own for anyone else."""
        if self._is_default_root(caller):
            return self.accounts.accounts()
        return [a for a in self.accounts.accounts() if a.account_id == caller.account_id]

    async def create_key(
        self,
        caller: Principal,
        account_id: str | None = None,
        user: str | None = None,
        policy: str | None = None,
    ) -> NewKey:
        """A key for the root or a user of ``account_id`` (the caller's by default),
        ``policy`` (IAM JSON) attached to that user first."""
        account = self._manageable(caller, account_id or caller.account_id, "ember:CreateKey")
        owner = Principal(account, check_user_name(user) if user is not None else None)
        if policy is not None:
            if owner.user is None:
                raise ValidationError("A Policy needs a UserName: the root needs no policy.")
            await self.users.attach(owner, policy)
        else:
            await self.users.ensure(owner)
        key, secret = await self.keys.create(owner)
        return NewKey(key, secret)

    def list_keys(self, caller: Principal, account_id: str | None = None) -> list[AccessKey]:
        """The keys of ``account_id``; without one, every key the caller manages."""
        if account_id is not None:
            return self.keys.keys(self._manageable(caller, account_id, "ember:ListKeys"))
        if self._is_default_root(caller):
            return self.keys.keys()
        return self.keys.keys(self._manageable(caller, caller.account_id, "ember:ListKeys"))

    async def delete_key(self, caller: Principal, access_key_id: str) -> None:
        """Remove a key of an account the caller manages (others' keys are not found)."""
        self._require_root(caller, "ember:DeleteKey")
        key = self.keys.get(access_key_id)
        if key is None or not self._may_manage(caller, key.principal.account_id):
            raise ResourceNotFound(f"The access key with id {access_key_id} cannot be found.")
        await self.keys.delete(access_key_id)

    def _manageable(self, caller: Principal, account_id: str, action: str) -> str:
        self._require_root(caller, action)
        if not self._may_manage(caller, account_id):
            raise _denied(caller, action, f"arn:aws:iam::{account_id}:root")
        self.require_account(account_id)
        return account_id

    def require_account(self, account_id: str) -> None:
        """Raise ``ResourceNotFound`` unless ``account_id`` exists."""
        if not self.accounts.exists(account_id):
            raise ResourceNotFound(f"Account not found: {account_id}")

    def _may_manage(self, caller: Principal, account_id: str) -> bool:
        return caller.is_root and (
            caller.account_id == account_id or caller.account_id == self.default_account
        )

    def _is_default_root(self, caller: Principal) -> bool:
        return caller.is_root and caller.account_id == self.default_account

    def _require_root(self, caller: Principal, action: str) -> None:
        if not caller.is_root:
            raise _denied(caller, action, f"arn:aws:iam::{caller.account_id}:root")

    def _require_default_root(self, caller: Principal, action: str) -> None:
        if not self._is_default_root(caller):
            raise _denied(caller, action, "*")


def _denied(caller: Principal, action: str, resource: str) -> AccessDenied:
    return AccessDenied(
        f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource}"
    )

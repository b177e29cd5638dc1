"""Users of an account and the identity policies attached to them.

One document per (account, user) in namespace ``users``, keyed
``ACCOUNT/USER`` (a user name never holds a slash): the policies as the
JSON strings they were attached as. Each is parsed once (``Policy.parse``),
when attached or loaded, so the authorizer's ``policies`` is a dict read.
An account's root has no document: it needs no policy in its own account.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

from ember.auth.policy import Policy
from ember.auth.principals import Principal
from ember.errors import ValidationError
from ember.storage.base import MetadataStore

# IAM's user names: 1-64 of letters, digits and +=,.@_-
USER_NAME = re.compile(r"^[\w+=,.@-]{1,64}$", re.ASCII)


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise ValidationError.constraint(
            name, "userName", "Member must satisfy regular expression pattern: [\\w+=,.@-]{1,64}"
        )
    return name


class UserStore:
    """Every user's policies, in memory, written through. ``load`` first."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._documents: dict[str, tuple[str, ...]] = {}
        # Invariant: the same keys as _documents, each policy parsed.
        self._policies: dict[str, tuple[Policy, ...]] = {}

    async def load(self) -> None:
        for key, document in (await self._store.load_all()).items():
            self._remember(key, document)

    def policies(self, principal: Principal) -> Sequence[Policy]:
        """The identity policies of ``principal`` (none for a root or an unknown user)."""
        if principal.user is None:
            return ()
        return self._policies.get(_key(principal), ())

    def exists(self, principal: Principal) -> bool:
        return principal.user is not None and _key(principal) in self._documents

    async def ensure(self, principal: Principal) -> None:
        """Record the user (with no policy) if it is not known yet."""
        if principal.user is not None and _key(principal) not in self._documents:
            await self._write(principal, ())

    async def attach(self, principal: Principal, policy: str) -> Policy:
        """Parse ``policy`` (raises ``InvalidParameterValue`` naming what is wrong) and
        attach it to the user ``principal``."""
        if principal.user is None:
            raise ValidationError("An identity policy is attached to a user, not to the root.")
        parsed = Policy.parse(policy)
        await self._write(principal, (*self._documents.get(_key(principal), ()), policy))
        return parsed

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``users``): memory follows another node."""
        if document is None:
            self._documents.pop(key, None)
            self._policies.pop(key, None)
        else:
            self._remember(key, document)

    async def _write(self, principal: Principal, policies: tuple[str, ...]) -> None:
        key = _key(principal)
        record = {
            "AccountId": principal.account_id,
            "UserName": principal.user,
            "Policies": list(policies),
        }
        document = orjson.dumps(record).decode()
        await self._store.put(key, document)
        self._remember(key, document)

    def _remember(self, key: str, document: str) -> None:
        texts = tuple(orjson.loads(document)["Policies"])
        self._policies[key] = tuple(Policy.parse(text) for text in texts)
        self._documents[key] = texts


def _key(principal: Principal) -> str:
    return f"{principal.account_id}/{principal.user}"

"""Resource policies: who else may act on a function (or one version or alias of it).

Lambda's AddPermission / GetPolicy / RemovePermission. Each function, and
each qualifier of it, has at most one policy: a list of statements AddPermission
wrote in Lambda's exact shape, with a RevisionId that changes on every write.
Policies are kept in memory (the authorizer reads one per cross-account or
service call) and written through to the ``policies`` MetadataStore, keyed
``KEY`` or ``KEY:QUALIFIER`` (``KEY`` the function's storage key, see
``Arns.key``). A function's policies go when it does, an alias's or a
version's when that does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from ember.auth.policy import Policy
from ember.control.arns import Arns
from ember.control.registry import FunctionRegistry
from ember.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.storage.base import MetadataStore

log = logging.getLogger("ember.control")

_NO_POLICY = "No policy is associated with the given resource."
_SID = re.compile(r"^[a-zA-Z0-9-_.]{1,100}$")
_ACTION = re.compile(r"^(lambda:[*]|lambda:[a-zA-Z]+|[*])$")
_ACTION_PATTERN = "(lambda:[*]|lambda:[a-zA-Z]+|[*])"
_ACCOUNT = re.compile(r"^\d{12}$")
_FUNCTION_ARN = re.compile(
    r"^arn:[^:]*:lambda:[^:]*:(?P<account>\d{12}):function:(?P<name>[^:]+)(?::(?P<q>[^:]+))?$"
)
_URL_AUTH_TYPES = ("NONE", "AWS_IAM")


@dataclass(frozen=True)
class ResourcePolicy:
    """The statements of one function's (or qualifier's) policy, as Lambda renders them."""

    function: str  # the function's storage key
    qualifier: str | None
    revision_id: str
    statements: tuple[dict[str, Any], ...]

    @property
    def key(self) -> str:
        return f"{self.function}:{self.qualifier}" if self.qualifier else self.function

    def document(self) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Id": "default", "Statement": list(self.statements)}

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "function": self.function,
                "qualifier": self.qualifier,
                "revision_id": self.revision_id,
                "statements": self.statements,
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> ResourcePolicy:
        raw = orjson.loads(text)
        return cls(raw["function"], raw["qualifier"], raw["revision_id"], tuple(raw["statements"]))


class ResourcePolicies:
    """Add, read and remove permissions; hand the authorizer a function ARN's policy."""

    # As FunctionUrls: rows of vanished functions are dropped at load, embedded only.
    prune_orphans = True

    def __init__(self, store: MetadataStore, registry: FunctionRegistry, arns: Arns) -> None:
        self._store = store
        self._registry = registry
        self._arns = arns
        self._policies: dict[str, ResourcePolicy] = {}
        self._parsed: dict[str, Policy] = {}
        self._lock = asyncio.Lock()
        self._forgetting: set[asyncio.Task[None]] = set()  # strong refs until done
        registry.subscribe(self._function_changed)

    async def load(self) -> None:
        for key, document in (await self._store.load_all()).items():
            policy = ResourcePolicy.from_json(document)
            if not self._exists(policy.function, policy.qualifier):
                if self.prune_orphans:
                    await self._store.delete(key)
                continue
            self._remember(policy)
        log.info("resource policies loaded: %d", len(self._policies))

    async def apply_remote(self, key: str, document: str | None) -> None:
        """The feed's callback (namespace ``policies``): memory follows another node's
        write; nothing is written. Idempotent."""
        async with self._lock:
            if document is None:
                self._forget_memory(key)
            else:
                self._remember(ResourcePolicy.from_json(document))

    # --- reads ---------------------------------------------------------------

    def policy_of(self, arn: str) -> Policy | None:
        """The parsed policy of a function ARN (with its qualifier, if any): the
        authorizer's lookup, no I/O."""
        match = _FUNCTION_ARN.match(arn)
        if match is None:
            return None
        key = self._arns.key(match["account"], match["name"])
        return self._parsed.get(f"{key}:{match['q']}" if match["q"] else key)

    def get(self, function: str, qualifier: str | None = None) -> ResourcePolicy:
        """GetPolicy: the policy of the function stored under key ``function`` (or of
        its ``qualifier``); callers resolve names to keys (``Arns.key``)."""
        name, qualifier = self._target(function, qualifier)
        found = self._policies.get(_key(name, qualifier))
        if found is None or not found.statements:
            raise ResourceNotFound(_NO_POLICY)
        return found

    # --- writes --------------------------------------------------------------

    async def add(
        self, function: str, body: dict[str, Any], qualifier: str | None = None
    ) -> dict[str, Any]:
        """AddPermission: the statement added, in Lambda's shape."""
        name, qualifier = self._target(function, qualifier)
        statement = self._statement(name, qualifier, body)
        async with self._lock:
            old = self._policies.get(_key(name, qualifier))
            _check_revision(old, body.get("RevisionId"))
            statements = old.statements if old else ()
            if any(s["Sid"] == statement["Sid"] for s in statements):
                raise ResourceConflict(
                    f"The statement id ({statement['Sid']}) provided already exists. "
                    "Please provide a new statement id, or remove the existing statement."
                )
            await self._save(
                ResourcePolicy(name, qualifier, str(uuid.uuid4()), (*statements, statement))
            )
        return statement

    async def remove(
        self,
        function: str,
        sid: str,
        qualifier: str | None = None,
        revision_id: str | None = None,
    ) -> None:
        """RemovePermission: drop statement ``sid``; the policy goes with its last one."""
        name, qualifier = self._target(function, qualifier)
        async with self._lock:
            old = self._policies.get(_key(name, qualifier))
            if old is None:
                raise ResourceNotFound(_NO_POLICY)
            if not any(s["Sid"] == sid for s in old.statements):
                raise ResourceNotFound(f"Statement {sid} is not found in resource policy.")
            _check_revision(old, revision_id)
            kept = tuple(s for s in old.statements if s["Sid"] != sid)
            if kept:
                await self._save(ResourcePolicy(name, qualifier, str(uuid.uuid4()), kept))
            else:
                await self._store.delete(old.key)
                self._forget_memory(old.key)

    async def _save(self, policy: ResourcePolicy) -> None:
        await self._store.put(policy.key, policy.to_json())
        self._remember(policy)

    def _remember(self, policy: ResourcePolicy) -> None:
        self._policies[policy.key] = policy
        if policy.statements:
            self._parsed[policy.key] = Policy.parse(policy.document(), resource_based=True)
        else:
            self._parsed.pop(policy.key, None)

    def _forget_memory(self, key: str) -> None:
        self._policies.pop(key, None)
        self._parsed.pop(key, None)

    # --- the function's life -------------------------------------------------

    def _function_changed(self, name: str, local: bool) -> None:
        """A deleted function, version or alias loses its policy at once; its rows go
        right after (the deleting node's job: the others hear of it by the feed)."""
        gone = [
            key
            for key, policy in self._policies.items()
            if policy.function == name and not self._exists(name, policy.qualifier)
        ]
        for key in gone:
            self._forget_memory(key)
        if gone and local:
            task = asyncio.get_running_loop().create_task(self._forget(gone))
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)

    async def _forget(self, keys: list[str]) -> None:
        async with self._lock:
            for key in keys:
                if key not in self._policies:  # not written again meanwhile
                    await self._store.delete(key)

    def _exists(self, name: str, qualifier: str | None) -> bool:
        try:
            self._registry.get(name, qualifier)
        except ResourceNotFound:
            return False
        return True

    # --- helpers -------------------------------------------------------------

    def _target(self, key: str, qualifier: str | None) -> tuple[str, str | None]:
        """(key, qualifier) of an existing function or qualifier, else Lambda's 404."""
        if not self._exists(key, qualifier):
            raise ResourceNotFound(f"Function not found: {self._arns.function(key, qualifier)}")
        return key, qualifier

    def _statement(self, name: str, qualifier: str | None, body: dict[str, Any]) -> dict[str, Any]:
        sid, action, principal = _required(body)
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": _principal(principal),
            "Action": action,
            "Resource": self._arns.function(name, qualifier),
        }
        condition = _condition(body)
        if condition:
            statement["Condition"] = condition
        # Refuse here anything the evaluator could not read later.
        Policy.parse({"Statement": [statement]}, resource_based=True)
        return statement


def _key(name: str, qualifier: str | None) -> str:
    return f"{name}:{qualifier}" if qualifier else name


def _check_revision(policy: ResourcePolicy | None, wanted: object) -> None:
    if wanted is not None and (policy is None or policy.revision_id != wanted):
        raise PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetPolicy API to retrieve the latest Revision Id"
        )


def _required(body: dict[str, Any]) -> tuple[str, str, str]:
    values = []
    for field, member in (
        ("StatementId", "statementId"),
        ("Action", "action"),
        ("Principal", "principal"),
    ):
        value = body.get(field)
        if value is None:
            raise ValidationError.constraint(None, member, "Member must not be null")
        if not isinstance(value, str):
            raise InvalidParameterValue(f"{field} must be a string.")
        values.append(value)
    sid, action, principal = values
    if not _SID.match(sid):
        raise ValidationError.constraint(
            sid, "statementId", "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)"
        )
    if not _ACTION.match(action):
        raise ValidationError.constraint(
            action, "action", f"Member must satisfy regular expression pattern: {_ACTION_PATTERN}"
        )
    return sid, action, principal


def _principal(principal: str) -> str | dict[str, str]:
    """Lambda's rendering: an account id becomes its root ARN; a service name stays one."""
    if principal == "*":
        return "*"
    if _ACCOUNT.match(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:"):
        return {"AWS": principal}
    if "." in principal:
        return {"Service": principal}
    raise InvalidParameterValue(
        f"The provided principal was invalid. Please check the principal and try again: {principal}"
    )


def _condition(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    equals: dict[str, str] = {}
    if body.get("SourceAccount"):
        equals["AWS:SourceAccount"] = str(body["SourceAccount"])
    if body.get("PrincipalOrgID"):
        equals["aws:PrincipalOrgID"] = str(body["PrincipalOrgID"])
    auth_type = body.get("FunctionUrlAuthType")
    if auth_type is not None:
        if auth_type not in _URL_AUTH_TYPES:
            raise ValidationError.constraint(
                auth_type,
                "functionUrlAuthType",
                "Member must satisfy enum value set: [NONE, AWS_IAM]",
            )
        equals["lambda:FunctionUrlAuthType"] = auth_type
    condition: dict[str, dict[str, str]] = {}
    if equals:
        condition["StringEquals"] = equals
    if body.get("SourceArn"):
        condition["ArnLike"] = {"AWS:SourceArn": str(body["SourceArn"])}
    return condition


__all__ = ["ResourcePolicies", "ResourcePolicy"]

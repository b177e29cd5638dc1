"""Function identifiers: names, full and partial ARNs, ``name:qualifier``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ember.errors import InvalidParameterValue, ResourceNotFound, ValidationError

# Lambda's own pattern for FunctionName (botocore service model).
_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
_FUNCTION = re.compile(
    r"^(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d{1}):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?:(?P<owner>\d{12})\.)?(?P<name>[a-zA-Z0-9-_]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$"
)
# Lambda's pattern and limit for a Qualifier parameter (botocore service model).
_QUALIFIER_PATTERN = "(|[a-zA-Z0-9$_-]+)"
_QUALIFIER = re.compile(r"^[a-zA-Z0-9$_-]{1,128}$")
LATEST = "$LATEST"
KEY_SEPARATOR = "."


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None
    # The account an ARN (or a storage key, ``ACCOUNT.name``) names; None for a
    # bare or partial name, which belongs to whoever calls.
    account: str | None = None
    # The region an ARN names; None when it names none.
    region: str | None = None


@dataclass(frozen=True)
class Arns:
    """Builds the ARNs of this deployment's account and region."""

    region: str
    account_id: str

    def function(self, key: str, qualifier: str | None = None) -> str:
        """The ARN of the function stored under ``key`` (see ``key``)."""
        account, name = self.owner(key)
        base = f"arn:aws:lambda:{self.region}:{account}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def key(self, account: str, name: str) -> str:
        """The key a function (or layer) ``name`` of ``account`` is stored and known under.

        The default account's (``account_id``) keys are the bare names, as they
        were before accounts existed, so older data dirs need no migration;
        another account's are ``ACCOUNT.name`` (a dot is never part of a name).
        """
        return name if account == self.account_id else f"{account}{KEY_SEPARATOR}{name}"

    def resolve(self, ref: FunctionRef, account: str | None = None) -> str:
        """The key ``ref`` names when ``account`` calls (default: the default account).

        An ARN's own account wins: whether the caller may reach it is the
        authorizer's decision, not the resolver's. An ARN of another region
        names nothing here (Lambda's 404, word for word), so no call acts on a
        local function of the same name.
        """
        if ref.region is not None and ref.region != self.region:
            raise ResourceNotFound(
                f"Functions from '{ref.region}' are not reachable in this region ('{self.region}')"
            )
        return self.key(ref.account or account or self.account_id, ref.name)

    def owner(self, key: str) -> tuple[str, str]:
        """(account, name) of a key made by ``key``."""
        account, separator, name = key.partition(KEY_SEPARATOR)
        return (account, name) if separator else (self.account_id, key)


def bare(key: str) -> str:
    """The name clients see for a function (or layer) stored under ``key``."""
    return key.rpartition(KEY_SEPARATOR)[2]


_CACHE: dict[tuple[str, str | None], FunctionRef] = {}
_CACHE_SIZE = 4096


def parse(identifier: str, qualifier: str | None = None) -> FunctionRef:
    """Resolve any accepted spelling of a function (URL-encoded or not).

    Besides Lambda's spellings, a storage key (``ACCOUNT.name``, see
    ``Arns.key``) parses to its account and name, so keys can travel where
    names did (event targets, commands); ``parse_client`` refuses them.

    Invoke parses on every call, so valid spellings are remembered (a small
    bounded cache: the same few names arrive again and again).
    """
    key = (identifier, qualifier)
    ref = _CACHE.get(key)
    if ref is None:
        ref = _parse(identifier, qualifier)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = ref
    return ref


def _parse(identifier: str, qualifier: str | None) -> FunctionRef:
    raw = unquote(identifier)
    match = _FUNCTION.match(raw) if len(raw) <= 170 else None
    if match is None:
        raise ValidationError.constraint(
            raw, "functionName", f"Member must satisfy regular expression pattern: {_PATTERN}"
        )
    if qualifier:
        _check_qualifier(qualifier)
    derived = match.group("qualifier")
    if derived and qualifier and derived != qualifier:
        raise InvalidParameterValue(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    if len(match.group("name")) > 64:
        raise ValidationError.constraint(
            match.group("name"), "functionName", "Member must have length less than or equal to 64"
        )
    account = match.group("account")
    owner = match.group("owner")
    if owner is not None and account is not None and owner != account:
        raise InvalidParameterValue(f"The function {raw} names two accounts.")
    return FunctionRef(
        match.group("name"), derived or qualifier or None, account or owner, match.group("region")
    )


def _check_qualifier(qualifier: str) -> None:
    """A Qualifier parameter as Lambda judges it: a bad one is a 400, never "not found"."""
    if len(qualifier) > 128:
        raise ValidationError.constraint(
            qualifier, "qualifier", "Member must have length less than or equal to 128"
        )
    if not _QUALIFIER.match(qualifier):
        raise ValidationError.constraint(
            qualifier,
            "qualifier",
            f"Member must satisfy regular expression pattern: {_QUALIFIER_PATTERN}",
        )


def parse_client(identifier: str, qualifier: str | None = None) -> FunctionRef:
    """``parse`` for what a client sent: Lambda's spellings only (no storage keys)."""
    if KEY_SEPARATOR in unquote(identifier):
        raise ValidationError.constraint(
            unquote(identifier),
            "functionName",
            f"Member must satisfy regular expression pattern: {_PATTERN}",
        )
    return parse(identifier, qualifier)


def split(function: str) -> tuple[str, str | None]:
    """``name`` or ``name:qualifier`` (an async event's target) into its two parts."""
    name, _, qualifier = function.partition(":")
    return name, qualifier or None

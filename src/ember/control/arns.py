"""Function identifiers: names, full and partial ARNs, ``name:qualifier``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ember.errors import InvalidParameterValue, ValidationError

# Lambda's own pattern for FunctionName (botocore service model).
_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
_FUNCTION = re.compile(
    r"^(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d{1}):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9-_]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$"
)
LATEST = "$LATEST"


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None


@dataclass(frozen=True)
class Arns:
    """Builds the ARNs of this deployment's account and region."""

    region: str
    account_id: str

    def function(self, name: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base


_CACHE: dict[tuple[str, str | None], FunctionRef] = {}
_CACHE_SIZE = 4096


def parse(identifier: str, qualifier: str | None = None) -> FunctionRef:
    """Resolve any accepted spelling of a function (URL-encoded or not).

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
    derived = match.group("qualifier")
    if derived and qualifier and derived != qualifier:
        raise InvalidParameterValue(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    if len(match.group("name")) > 64:
        raise ValidationError.constraint(
            match.group("name"), "functionName", "Member must have length less than or equal to 64"
        )
    return FunctionRef(match.group("name"), derived or qualifier or None)


def split(function: str) -> tuple[str, str | None]:
    """``name`` or ``name:qualifier`` (an async event's target) into its two parts."""
    name, _, qualifier = function.partition(":")
    return name, qualifier or None

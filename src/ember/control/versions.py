"""Published versions and aliases of one function: the data, its storage keys, its rules.

A published version is an immutable copy of ``$LATEST`` (its own code digest,
configuration and RevisionId) numbered "1", "2", ...; numbers are never reused
after a delete. An alias names a version and may send a share of its calls to
one more version (``RoutingConfig.AdditionalVersionWeights``).

Storage keys in the metadata store (one document each, next to the plain
``name`` key of ``$LATEST``): ``name:N`` a version, ``name:ALIAS`` an alias
(alias names are never all digits), ``name:$published`` the version counter.
Validation messages are Lambda's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ember.control.arns import LATEST, Arns
from ember.control.models import FunctionRecord
from ember.errors import InvalidParameterValue, ValidationError
from ember.text import is_decimal

COUNTER = "$published"
_ALIAS_PATTERN = "(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
_ALIAS = re.compile(r"^(?!^[0-9]+$)([a-zA-Z0-9-_]+)$")
_WEIGHT_RANGE = (
    "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
    "Member must have value greater than or equal to 0.0, Member must not be null]"
)
_WEIGHT_KEY = (
    "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, "
    "Member must have length greater than or equal to 1, Member must satisfy regular "
    "expression pattern: [0-9]+, Member must not be null]"
)

Random = Callable[[], float]


@dataclass(frozen=True)
class Alias:
    """A name for a version, with an optional weighted second version."""

    function: str
    name: str
    function_version: str  # "$LATEST" or "N"
    description: str
    revision_id: str  # Invariant: changes on every write
    # AdditionalVersionWeights: at most one entry (Lambda's limit), weight in [0, 1).
    weights: dict[str, float] = field(default_factory=dict)

    def pick(self, random: Random) -> str:
        """The version one call runs: the extra one with its weight's probability."""
        for version, weight in self.weights.items():
            if random() < weight:
                return version
        return self.function_version

    def uses(self, version: str) -> bool:
        return self.function_version == version or version in self.weights

    def configuration(self, arns: Arns) -> dict[str, Any]:
        """AliasConfiguration as Lambda returns it."""
        body: dict[str, Any] = {
            "AliasArn": arns.function(self.function, self.name),
            "Name": self.name,
            "FunctionVersion": self.function_version,
            "Description": self.description,
            "RevisionId": self.revision_id,
        }
        if self.weights:
            body["RoutingConfig"] = {"AdditionalVersionWeights": dict(self.weights)}
        return body

    def to_json(self) -> str:
        return orjson.dumps(self.__dict__).decode()

    @classmethod
    def from_json(cls, document: str) -> Alias:
        return cls(**orjson.loads(document))


@dataclass
class Published:
    """What a function has besides ``$LATEST``: its versions, aliases and counter."""

    versions: dict[str, FunctionRecord] = field(default_factory=dict)  # ascending
    aliases: dict[str, Alias] = field(default_factory=dict)
    # The highest number ever published (never reused) and the $LATEST revision
    # it was published from: publishing that revision again returns it.
    last: int = 0
    source: str = ""

    def counter_json(self) -> str:
        return orjson.dumps({"last": self.last, "source": self.source}).decode()

    def load_counter(self, document: str) -> None:
        raw = orjson.loads(document)
        self.last, self.source = int(raw["last"]), str(raw.get("source", ""))

    def unchanged(self, latest: FunctionRecord) -> FunctionRecord | None:
        """The version already published from ``latest``'s revision, if it still exists."""
        if self.source == latest.revision_id:
            return self.versions.get(str(self.last))
        return None

    def referencing(self, version: str) -> list[str]:
        return sorted(alias.name for alias in self.aliases.values() if alias.uses(version))


def key(name: str, qualifier: str) -> str:
    """The metadata-store key of a version, an alias or the counter of ``name``."""
    return f"{name}:{qualifier}"


def is_version(qualifier: str) -> bool:
    return is_decimal(qualifier)


# -- validation -----------------------------------------------------------------------


def alias_name(value: Any) -> str:
    if not isinstance(value, str) or not _ALIAS.match(value) or len(value) > 128:
        raise ValidationError.constraint(
            value, "name", f"Member must satisfy regular expression pattern: {_ALIAS_PATTERN}"
        )
    return value


def function_version(value: Any) -> str:
    if not isinstance(value, str) or not (value == LATEST or is_decimal(value)):
        raise ValidationError.constraint(
            value,
            "functionVersion",
            "Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)",
        )
    return value


def description(body: dict[str, Any]) -> str | None:
    value = body.get("Description")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise ValidationError.constraint(
            value, "description", "Member must have length less than or equal to 256"
        )
    return value


def routing(
    body: dict[str, Any], primary: str, exists: Callable[[str], None]
) -> dict[str, float] | None:
    """``RoutingConfig.AdditionalVersionWeights`` checked as Lambda does; None if absent.

    ``exists(version)`` raises ResourceNotFound for a version that is not published.
    """
    raw = body.get("RoutingConfig")
    if raw is None:
        return None
    weights = raw.get("AdditionalVersionWeights") if isinstance(raw, dict) else None
    if not weights:
        return {}
    if not isinstance(weights, dict):
        raise ValidationError.constraint(
            weights, "routingConfig.additionalVersionWeights", "Member must be a map"
        )
    if len(weights) > 1:
        raise InvalidParameterValue(
            "Number of items in AdditionalVersionWeights cannot be greater than 1"
        )
    ((version, weight),) = weights.items()
    member = "routingConfig.additionalVersionWeights"
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < 1:
        raise ValidationError.constraint(f"{{{version}={weight}}}", member, _WEIGHT_RANGE)
    if version == primary:
        raise InvalidParameterValue(
            f"Invalid function version {primary}. Function version {primary} is already "
            "included in routing configuration."
        )
    if primary == LATEST:
        raise InvalidParameterValue(
            "$LATEST is not supported for an alias pointing to more than 1 version"
        )
    if not isinstance(version, str) or not is_decimal(version):
        raise ValidationError.constraint(f"{{{version}={weight}}}", member, _WEIGHT_KEY)
    exists(version)
    return {version: float(weight)}

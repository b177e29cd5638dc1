"""IAM's JSON policy language: parsed (and refused) once when attached, evaluated per call.

What is supported: ``Statement`` as a list or a single object; ``Effect``
Allow/Deny; ``Action``/``NotAction`` and ``Resource``/``NotResource`` as a
string or a list, with ``*`` and ``?`` wildcards (actions compare without
case, resources with it); ``Principal`` in resource policies (``"*"``,
``{"AWS": account id | account root ARN | user ARN | "*"}``,
``{"Service": "s3.amazonaws.com"}``); ``Condition`` with the string, ARN and
Bool operators (and their ``...IfExists`` forms): enough for everything
Lambda's AddPermission writes (``AWS:SourceArn``, ``AWS:SourceAccount``,
``lambda:FunctionUrlAuthType``). Anything else (``NotPrincipal``, numeric or
date operators, ``ForAnyValue:``...) is refused at parse time with
``InvalidParameterValue`` naming it, never silently ignored.

Evaluation is IAM's: an explicit Deny anywhere wins; within one account an
Allow from the caller's identity policies or from the resource policy
suffices; across accounts both must allow; otherwise the default is deny.
An account's root needs no identity policy in its own account.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ember.auth.principals import Caller, Principal, ServicePrincipal
from ember.errors import AccessDenied, InvalidParameterValue

_STATEMENT_KEYS = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "Condition"}
)
_ACCOUNT = re.compile(r"^\d{12}$")
_ACCOUNT_ARN = re.compile(r"^arn:aws:iam::(\d{12}):root$")
_USER_ARN = re.compile(r"^arn:aws:iam::(\d{12}):user/([\w+=,.@-]+)$")


class Decision(enum.Enum):
    """The outcome of one evaluation, precise enough to word Lambda's refusal."""

    ALLOW = "allowed"
    IDENTITY_DENY = "with an explicit deny in an identity-based policy"
    RESOURCE_DENY = "with an explicit deny in a resource-based policy"
    NO_IDENTITY_ALLOW = "because no identity-based policy allows the {action} action"
    NO_RESOURCE_ALLOW = "because no resource-based policy allows the {action} action"


@dataclass(frozen=True, slots=True)
class Request:
    """One action a caller wants: ``lambda:InvokeFunction`` on a function ARN of
    ``resource_account``, with the request's condition keys (any case)."""

    caller: Caller
    action: str
    resource: str
    resource_account: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Condition:
    operator: str
    key: str  # lower case: IAM condition keys compare without case
    values: tuple[str, ...]
    test: Callable[[str, tuple[str, ...]], bool]
    negated: bool
    if_exists: bool

    def holds(self, context: Mapping[str, str]) -> bool:
        value = context.get(self.key)
        if value is None:
            # IAM: a missing key fails a positive test and passes a negated one.
            return self.if_exists or self.negated
        return self.test(value, self.values)


@dataclass(frozen=True, slots=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    principals: tuple[str, ...] | None  # None: an identity policy's statement
    conditions: tuple[_Condition, ...]
    sid: str | None = None

    def applies(self, request: Request, context: Mapping[str, str]) -> bool:
        if self.principals is not None and not _principal_matches(self.principals, request.caller):
            return False
        action = request.action.lower()
        if any(_glob(p, folded=True)(action) for p in self.actions) == self.not_action:
            return False
        if any(_glob(p)(request.resource) for p in self.resources) == self.not_resource:
            return False
        return all(condition.holds(context) for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy document; ``parse`` is the only way in."""

    statements: tuple[Statement, ...]
    resource_based: bool

    @classmethod
    def parse(cls, document: str | Mapping[str, Any], *, resource_based: bool = False) -> Policy:
        """Validate and parse ``document`` (JSON text or its object); raises
        ``InvalidParameterValue`` naming the first element ember cannot evaluate."""
        data = _load(document)
        raw = data.get("Statement")
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise _malformed("the policy needs a Statement (an object or a non-empty list)")
        version = data.get("Version", "2012-10-17")
        if version not in ("2012-10-17", "2008-10-17"):
            raise _malformed(f"unknown policy Version {version!r}")
        statements = tuple(_statement(s, resource_based) for s in raw)
        return cls(statements, resource_based)

    def matching(self, request: Request, context: Mapping[str, str]) -> tuple[bool, bool]:
        """(some Allow applies, some Deny applies) to ``request``."""
        allow = deny = False
        for statement in self.statements:
            if statement.applies(request, context):
                if statement.effect == "Deny":
                    deny = True
                else:
                    allow = True
        return allow, deny


def evaluate(
    request: Request, identity: Sequence[Policy], resource: Policy | None = None
) -> Decision:
    """IAM's decision for ``request`` given the caller's identity policies and the
    resource's policy (None: the resource has none)."""
    context = {key.lower(): value for key, value in request.context.items()}
    identity_allow, identity_deny = _identity(request, identity, context)
    resource_allow, resource_deny = (
        resource.matching(request, context) if resource is not None else (False, False)
    )
    if identity_deny:
        return Decision.IDENTITY_DENY
    if resource_deny:
        return Decision.RESOURCE_DENY
    caller = request.caller
    if isinstance(caller, ServicePrincipal):
        return Decision.ALLOW if resource_allow else Decision.NO_RESOURCE_ALLOW
    if caller.account_id == request.resource_account:
        return Decision.ALLOW if identity_allow or resource_allow else Decision.NO_IDENTITY_ALLOW
    if not identity_allow:
        return Decision.NO_IDENTITY_ALLOW
    return Decision.ALLOW if resource_allow else Decision.NO_RESOURCE_ALLOW


def authorize(request: Request, identity: Sequence[Policy], resource: Policy | None = None) -> None:
    """Return when ``request`` is allowed; else raise ``AccessDenied`` in Lambda's words."""
    decision = evaluate(request, identity, resource)
    if decision is not Decision.ALLOW:
        raise AccessDenied(denial_message(request, decision))


def denial_message(request: Request, decision: Decision) -> str:
    reason = decision.value.format(action=request.action)
    return (
        f"User: {request.caller.arn} is not authorized to perform: {request.action} "
        f"on resource: {request.resource} {reason}"
    )


def _identity(
    request: Request, policies: Sequence[Policy], context: Mapping[str, str]
) -> tuple[bool, bool]:
    caller = request.caller
    # An account's root may do anything in its own account (and nothing is attached to it).
    allow = isinstance(caller, Principal) and caller.is_root
    deny = False
    for policy in policies:
        a, d = policy.matching(request, context)
        allow, deny = allow or a, deny or d
    return allow, deny


# --- Matching ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, *, folded: bool = False) -> Callable[[str], bool]:
    """A matcher for IAM's wildcards: ``*`` any run of characters, ``?`` exactly one."""
    if pattern == "*":
        return lambda _: True
    text = pattern.lower() if folded else pattern
    if "*" not in text and "?" not in text:
        return lambda value: value == text
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(regex + r"\Z", re.DOTALL).match  # type: ignore[return-value]


def _principal_matches(principals: tuple[str, ...], caller: Caller) -> bool:
    """``principals`` are normalised: ``*``, ``account:ID``, ``user:ID:NAME``, ``service:NAME``."""
    for entry in principals:
        if entry == "*":
            return True
        kind, _, rest = entry.partition(":")
        if _entry_names(kind, rest, caller):
            return True
    return False


def _entry_names(kind: str, rest: str, caller: Caller) -> bool:
    if isinstance(caller, ServicePrincipal):
        return kind == "service" and rest == caller.service
    if kind == "account":
        return rest == caller.account_id
    return kind == "user" and rest == f"{caller.account_id}:{caller.user}"


def _equals(value: str, wanted: tuple[str, ...]) -> bool:
    return value in wanted


def _equals_folded(value: str, wanted: tuple[str, ...]) -> bool:
    return value.lower() in (w.lower() for w in wanted)


def _like(value: str, patterns: tuple[str, ...]) -> bool:
    return any(_glob(p)(value) for p in patterns)


def _arn_like(value: str, patterns: tuple[str, ...]) -> bool:
    """ARNs compare component by component, so a ``*`` never spans a ``:`` before the
    resource part (``arn:aws:s3:::b*`` does not match an ARN of another service)."""
    parts = value.split(":", 5)
    for pattern in patterns:
        wanted = pattern.split(":", 5)
        if len(wanted) == len(parts) == 6 and all(
            _glob(w)(p) for w, p in zip(wanted, parts, strict=True)
        ):
            return True
    return False


def _bool(value: str, wanted: tuple[str, ...]) -> bool:
    return value.lower() in (w.lower() for w in wanted)


# operator -> (test, negated)
_OPERATORS: dict[str, tuple[Callable[[str, tuple[str, ...]], bool], bool]] = {
    "StringEquals": (_equals, False),
    "StringNotEquals": (_equals, True),
    "StringEqualsIgnoreCase": (_equals_folded, False),
    "StringNotEqualsIgnoreCase": (_equals_folded, True),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
    "ArnEquals": (_equals, False),
    "ArnNotEquals": (_equals, True),
    "ArnLike": (_arn_like, False),
    "ArnNotLike": (_arn_like, True),
    "Bool": (_bool, False),
}
OPERATORS = tuple(_OPERATORS)


# --- Parsing ----------------------------------------------------------------------------


def _load(document: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise _malformed(f"the policy is not valid JSON ({exc})") from None
    if not isinstance(document, Mapping):
        raise _malformed("the policy must be a JSON object")
    return document


def _statement(raw: object, resource_based: bool) -> Statement:
    if not isinstance(raw, dict):
        raise _malformed("each Statement must be a JSON object")
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise _malformed(f"unsupported statement element {unknown[0]!r}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise _malformed(f"Effect must be Allow or Deny, not {effect!r}")
    actions, not_action = _either(raw, "Action", "NotAction")
    for action in actions:
        if action != "*" and ":" not in action:
            raise _malformed(f"action {action!r} must be SERVICE:ACTION or *")
    resources, not_resource = _either(raw, "Resource", "NotResource")
    return Statement(
        effect=effect,
        actions=tuple(a.lower() for a in actions),
        not_action=not_action,
        resources=resources,
        not_resource=not_resource,
        principals=_principals(raw.get("Principal"), resource_based),
        conditions=_conditions(raw.get("Condition", {})),
        sid=raw.get("Sid"),
    )


def _either(raw: dict[str, Any], positive: str, negative: str) -> tuple[tuple[str, ...], bool]:
    if (positive in raw) == (negative in raw):
        raise _malformed(f"a statement needs exactly one of {positive} and {negative}")
    name = positive if positive in raw else negative
    return _strings(raw[name], name), name == negative


def _strings(value: object, name: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise _malformed(f"{name} must be a string or a non-empty list of strings")
    return tuple(items)


def _principals(value: object, resource_based: bool) -> tuple[str, ...] | None:
    if not resource_based:
        if value is not None:
            raise _malformed("an identity-based policy must not name a Principal")
        return None
    if value is None:
        raise _malformed("each statement of a resource-based policy needs a Principal")
    if value == "*":
        return ("*",)
    if not isinstance(value, dict) or not value:
        raise _malformed('Principal must be "*" or an object of "AWS" / "Service" entries')
    normalised: list[str] = []
    for kind, entries in value.items():
        for entry in _strings(entries, f"Principal.{kind}"):
            normalised.append(_principal(kind, entry))
    return tuple(normalised)


def _principal(kind: str, entry: str) -> str:
    if kind == "Service":
        return f"service:{entry}"
    if kind != "AWS":
        raise _malformed(f"unsupported principal type {kind!r} (use AWS or Service)")
    if entry == "*":
        return "*"
    if _ACCOUNT.match(entry):
        return f"account:{entry}"
    if match := _ACCOUNT_ARN.match(entry):
        return f"account:{match[1]}"
    if match := _USER_ARN.match(entry):
        return f"user:{match[1]}:{match[2]}"
    raise _malformed(f"unsupported AWS principal {entry!r} (an account id, root or user ARN)")


def _conditions(raw: object) -> tuple[_Condition, ...]:
    if not isinstance(raw, dict):
        raise _malformed("Condition must be an object of operators")
    conditions = []
    for operator, tests in raw.items():
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS:
            raise _malformed(
                f"the condition operator {operator!r} is not supported; "
                f"supported: {', '.join(OPERATORS)} (each also as ...IfExists)"
            )
        if not isinstance(tests, dict) or not tests:
            raise _malformed(f"{operator} must map condition keys to values")
        test, negated = _OPERATORS[base]
        for key, values in tests.items():
            conditions.append(
                _Condition(
                    operator,
                    key.lower(),
                    _condition_values(values, f"{operator}.{key}"),
                    test,
                    negated,
                    operator != base,
                )
            )
    return tuple(conditions)


def _condition_values(value: object, name: str) -> tuple[str, ...]:
    # JSON booleans are written as "true"/"false" by IAM; accept both spellings.
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, list) and all(isinstance(v, bool) for v in value):
        return tuple("true" if v else "false" for v in value)
    return _strings(value, name)


def _malformed(reason: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"The policy is not valid: {reason}.")

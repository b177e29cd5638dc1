"""Who owns what a request names: the caller's account, or an ARN's own.

Every route turns a FunctionName (bare name, partial or full ARN) into the
storage key through here (see ``Arns.key``), so no handler decides ownership
on its own. Whether the caller may reach another account's function is the
authorizer's decision (it ran before the handler); this only resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ember.api.http import caller_of
from ember.auth.base import PRINCIPAL_SCOPE_KEY
from ember.auth.principals import Principal
from ember.control import arns
from ember.control.arns import Arns


@dataclass(frozen=True)
class Named:
    """A function as a request names it: its storage key and qualifier."""

    key: str
    qualifier: str | None


def account(scope: Any, names: Arns) -> str:
    """The calling principal's account (``request.scope`` or a raw ASGI scope)."""
    return caller_of(scope, names.account_id).account_id


def caller_account(scope: Any) -> str | None:
    """The calling principal's account; None where no guard ran (the default account).

    For the raw Invoke route, which has no ``Arns`` at hand: the invocation
    service resolves the name with it (``InvokeCommand.account``).
    """
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    return principal.account_id if isinstance(principal, Principal) else None


def function(scope: Any, names: Arns, identifier: str, qualifier: str | None = None) -> Named:
    """The function ``identifier`` names for this request's caller."""
    ref = arns.parse_client(identifier, qualifier)
    return Named(names.resolve(ref, account(scope, names)), ref.qualifier)


def of_route(request: Any, names: Arns) -> Named:
    """The function a ``/functions/{name}`` route names, with its ``Qualifier`` query."""
    return function(
        request.scope,
        names,
        request.path_params["name"],
        request.query_params.get("Qualifier"),
    )


def owned(scope: Any, names: Arns, key: str) -> bool:
    """Whether ``key`` belongs to the caller's account (listings show only those)."""
    return names.owner(key)[0] == account(scope, names)


__all__ = ["Named", "account", "caller_account", "function", "of_route", "owned"]

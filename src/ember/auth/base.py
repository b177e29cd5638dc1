"""The contracts between authentication, authorization and audit, and the HTTP layer.

The Frontend's guard (``ember.api.guard``) runs these in order for every
request of the Lambda API and of ember's own routes: authenticate (a
``Principal``, or an ``AuthError``), find the request's ``Access`` (its IAM
action and resource), authorize it, and hand control-plane changes, allowed
or denied, to the ``AuditSink``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ember.auth.principals import Principal

# Where the guard leaves the authenticated caller in the ASGI scope.
PRINCIPAL_SCOPE_KEY = "ember.principal"
# Set (True) when that caller proved who it is (a verified signature); with
# ``--auth none`` the principal is the default root by assumption, not proof.
VERIFIED_SCOPE_KEY = "ember.verified"


@dataclass(frozen=True, slots=True)
class Access:
    """What one request does, in IAM's terms.

    ``action`` is IAM's (``lambda:GetFunction``; ember's own routes use
    ``ember:*`` actions); ``resource`` the ARN acted on, ``*`` when the action
    has none; ``account`` the account that owns ``resource`` (the caller's
    unless the request names another account's ARN); ``change`` whether it is
    a control-plane change (audited).
    """

    action: str
    resource: str
    account: str
    change: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One control-plane change, allowed or denied: who, what, on which resource, when."""

    time: float  # Unix seconds
    request_id: str
    principal: str  # the caller's ARN ("anonymous" when authentication failed)
    account: str  # the caller's account ("" when authentication failed)
    action: str
    resource: str
    allowed: bool
    status: int  # the HTTP status answered
    error: str | None = None  # the error code answered, if any


class Authorizer(Protocol):
    """Decides whether a principal may do what a request asks."""

    def access_of(
        self, principal: Principal, method: str, path: str, query: str = "", body: bytes = b""
    ) -> Access:
        """The ``Access`` of a request: ``path`` decoded, ``query`` the raw query string
        without ``?`` (Lambda takes a function's ``Qualifier`` from either), ``body``
        the request's body when it was read (CreateFunction names its function there)."""
        ...

    async def authorize(
        self, principal: Principal, access: Access, context: Mapping[str, str] | None = None
    ) -> None:
        """Return if allowed; raise ``ember.errors.AccessDenied`` with Lambda's message if
        not. ``context``: the request's IAM condition keys (``lambda:FunctionUrlAuthType``)."""
        ...


class AuditSink(Protocol):
    """Where audit entries go. ``record`` never blocks the request: it enqueues."""

    def record(self, entry: AuditEntry) -> None: ...

"""Stand-ins for the authorizer and the audit sink, until the real ones are wired.

``OwnAccount`` lets every principal do anything in its own account and
nothing in another (no policies consulted); ``NullAudit`` drops entries.
"""

from __future__ import annotations

from ember.auth.base import Access, AuditEntry
from ember.auth.principals import Principal
from ember.errors import AccessDenied

_READS = frozenset({"GET", "HEAD"})
# Invoke is data plane, not a change to audit, though it is a POST.
_INVOKE_SUFFIX = "/invocations"


class OwnAccount:
    """See ``ember.auth.base.Authorizer``: a principal may do anything in its own account."""

    def access_of(self, principal: Principal, method: str, path: str) -> Access:
        change = method not in _READS and not path.endswith(_INVOKE_SUFFIX)
        return Access("", "*", principal.account_id, change)

    async def authorize(self, principal: Principal, access: Access) -> None:
        if access.account != principal.account_id:
            raise AccessDenied(
                f"User: {principal.arn} is not authorized to perform: {access.action or '*'} "
                f"on resource: {access.resource}"
            )


class NullAudit:
    """See ``ember.auth.base.AuditSink``: records nothing."""

    def record(self, entry: AuditEntry) -> None:
        return None

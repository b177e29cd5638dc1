"""``GET /_ember/audit``: the audit log of control-plane changes, newest first.

Parse the query (``since``/``until``: ISO 8601, Unix seconds, or an age such
as ``10m``, ``2h``, ``1d`` before now; ``limit`` 1..1000, default 100;
``next``: the previous page's ``NextMarker``), scope it to the caller, read,
render. The default account's root reads every account's entries; anyone
else reads their own account's.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api.http import caller_of, endpoint, json_response
from ember.api.services import Services
from ember.audit.base import DEFAULT_LIMIT, MAX_LIMIT, AuditQuery, BadMarker, Position
from ember.audit.log import AuditLog
from ember.auth.base import AuditEntry
from ember.errors import InvalidParameterValue
from ember.text import is_decimal

PATH = "/_ember/audit"
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_instant(name: str, text: str, now: float) -> float:
    """Unix seconds of ``text``: an age before ``now`` ("10m"), Unix seconds, or ISO 8601
    (UTC unless it names an offset). Raises InvalidParameterValue naming ``name``."""
    text = text.strip()
    if age := _AGE.fullmatch(text):
        return now - float(age[1]) * _UNIT_SECONDS[age[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameterValue(
            f"Invalid {name} {text!r}: give ISO 8601, Unix seconds, or an age like 10m, 2h, 1d."
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not is_decimal(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidParameterValue(f"Invalid limit {text!r}: an integer from 1 to {MAX_LIMIT}.")
    return int(text)


def parse_marker(text: str | None) -> Position | None:
    if text is None:
        return None
    try:
        return Position.parse(text)
    except BadMarker:
        raise InvalidParameterValue(f"Invalid next {text!r}: pass a NextMarker back.") from None


def query_of(request: Request, account: str | None, now: float) -> AuditQuery:
    """The typed query of ``request``'s parameters, scoped to ``account`` (None: all)."""
    params = request.query_params
    since, until = params.get("since"), params.get("until")
    return AuditQuery(
        account=account,
        since=None if since is None else parse_instant("since", since, now),
        until=None if until is None else parse_instant("until", until, now),
        limit=parse_limit(params.get("limit")),
        after=parse_marker(params.get("next")),
    )


def iso(seconds: float) -> str:
    """ISO 8601 in UTC to the millisecond, with a ``Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def document(entry: AuditEntry) -> dict[str, object]:
    return {
        "Time": iso(entry.time),
        "RequestId": entry.request_id,
        "Principal": entry.principal,
        "AccountId": entry.account,
        "Action": entry.action,
        "Resource": entry.resource,
        "Allowed": entry.allowed,
        "Status": entry.status,
        "Error": entry.error,
    }


def routes(services: Services) -> list[Route]:
    default_account = services.settings.account_id

    def audit_log() -> AuditLog:
        if services.audit is None:
            raise InvalidParameterValue("The audit log is not enabled on this server.")
        return services.audit

    @endpoint
    async def list_events(request: Request, request_id: str) -> Response:
        caller = caller_of(request.scope, default_account)
        everyone = caller.is_root and caller.account_id == default_account
        query = query_of(request, None if everyone else caller.account_id, time.time())
        page = await audit_log().query(query)
        body = {
            "Events": [document(entry) for entry in page.entries],
            "NextMarker": page.next.marker() if page.next else None,
        }
        return json_response(body, request_id)

    return [Route(PATH, list_events, methods=["GET"])]

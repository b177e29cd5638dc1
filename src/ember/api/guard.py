"""The guard in front of the Lambda API and ember's own routes: who calls, and may they.

For each HTTP request routed through it the guard reads the body (the SigV4
payload hash covers it; bounded by the route's size limit), verifies the
signature (``auth.sigv4.Verifier``), leaves the ``Principal`` at
``scope["ember.principal"]``, asks the authorizer for the request's
``Access`` and whether it is allowed, then runs the application with the
body replayed. Control-plane changes (``Access.change``), allowed or
refused, become ``AuditEntry`` records with the status finally answered.
With ``--auth none`` there is no verifier: the default account's root is
the caller, unverified; the body is still read ahead through the same
bounded reader, so no route behind the guard reads a body unbounded.

Refusals answer in Lambda's shape (``api.errors.render``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ember.api import errors as http_errors
from ember.api.bodies import TooLarge, read_body, replay, send_answer
from ember.auth.base import (
    PRINCIPAL_SCOPE_KEY,
    VERIFIED_SCOPE_KEY,
    Access,
    AuditEntry,
    AuditSink,
    Authorizer,
)
from ember.auth.principals import Principal
from ember.auth.sigv4 import HttpRequest, Verifier
from ember.errors import (
    AccessDenied,
    EmberError,
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)
from ember.invoke.service import new_request_id

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Any, Any], Awaitable[None]]
# Answers a request read whole (the Frontend's lane).
Answerer = Callable[[Scope, bytes], Awaitable[http_errors.Answer]]

ANONYMOUS = "anonymous"


class Guard:
    """Authenticates, authorizes and audits one request, then runs ``app`` (``__call__``)."""

    def __init__(
        self,
        verifier: Verifier | None,
        default_root: Principal,
        authorizer: Authorizer,
        audit: AuditSink,
    ) -> None:
        self._verifier = verifier
        self._default_root = default_root
        self._authorizer = authorizer
        self._audit = audit

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, app: App, limit: int, too_large: TooLarge
    ) -> None:
        """Run ``app`` for ``scope`` if the caller is authenticated and allowed; bodies
        above ``limit`` bytes are refused with ``too_large()``."""
        principal: Principal | None = None
        access: Access | None = None
        body = b""
        try:
            body = await read_body(scope, receive, limit, too_large)
            receive = replay(body, receive)
            principal = self._authenticate(scope, body)
            access = self._access(principal, scope, body)
            await self._authorizer.authorize(principal, access)
        except EmberError as error:
            await send_answer(send, self._refusal(scope, error, principal, access))
            return
        # The app reads the body from the replay: this frame must not keep a package
        # alive beside the app's own copies.
        del body
        if not access.change:
            await app(scope, receive, send)
            return
        await self._run_audited(scope, receive, send, app, principal, access)

    async def answer(self, scope: Scope, body: bytes, answer: Answerer) -> http_errors.Answer:
        """``__call__`` for a request already read whole, answered whole by ``answer``
        (the Frontend's lane for Invoke: no ASGI messages on the hot path)."""
        principal: Principal | None = None
        access: Access | None = None
        try:
            principal = self._authenticate(scope, body)
            access = self._access(principal, scope, body)
            await self._authorizer.authorize(principal, access)
        except EmberError as error:
            return self._refusal(scope, error, principal, access)
        answered = await answer(scope, body)
        if access.change:
            request_id, error_code = _named_in(answered[1])
            allowed = error_code not in _REFUSALS
            self._record(principal, access, request_id, answered[0], error_code, allowed=allowed)
        return answered

    def _authenticate(self, scope: Scope, body: bytes) -> Principal:
        """The caller (the default root without a verifier), left in ``scope``."""
        if self._verifier is None:
            principal = self._default_root
        else:
            principal = self._verifier.verify(_http_request(scope, body))
            scope[VERIFIED_SCOPE_KEY] = True
        scope[PRINCIPAL_SCOPE_KEY] = principal
        return principal

    def _access(self, principal: Principal, scope: Scope, body: bytes) -> Access:
        return self._authorizer.access_of(
            principal, scope["method"], scope["path"], _query(scope), body
        )

    def _refusal(
        self, scope: Scope, error: EmberError, principal: Principal | None, access: Access | None
    ) -> http_errors.Answer:
        """``error`` answered; a refused change is audited."""
        request_id = new_request_id()
        answered = http_errors.answer(error, request_id)
        access = access or self._stand_in_access(scope)
        if access.change:
            self._record(principal, access, request_id, answered[0], error.code, allowed=False)
        return answered

    async def _run_audited(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: App,
        principal: Principal,
        access: Access,
    ) -> None:
        answered: dict[str, Any] = {"status": 500, "request_id": "", "error": None}

        async def watching(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                request_id, error = _named_in(message.get("headers", ()))
                answered["request_id"] = request_id
                answered["error"] = error
            await send(message)

        try:
            await app(scope, receive, watching)
        finally:
            error = answered["error"]
            self._record(
                principal,
                access,
                answered["request_id"],
                answered["status"],
                error,
                allowed=error not in _REFUSALS,
            )

    def _stand_in_access(self, scope: Scope) -> Access:
        """The Access of a request refused before its own was known (authentication
        failed), named as the default root's would be: a refused change is audited too."""
        method = scope["method"]
        try:
            return self._authorizer.access_of(
                self._default_root, method, scope["path"], _query(scope)
            )
        except EmberError:  # a path the authorizer cannot name: any write is a change
            return Access("", "*", "", method not in ("GET", "HEAD"))

    def _record(
        self,
        principal: Principal | None,
        access: Access,
        request_id: str,
        status: int,
        error: str | None,
        *,
        allowed: bool,
    ) -> None:
        self._audit.record(
            AuditEntry(
                time=time.time(),
                request_id=request_id,
                principal=principal.arn if principal is not None else ANONYMOUS,
                account=principal.account_id if principal is not None else "",
                action=access.action,
                resource=access.resource,
                allowed=allowed,
                status=status,
                error=error,
            )
        )


# The error codes by which authentication or authorization refused a request.
_REFUSALS = frozenset(
    cls.code
    for cls in (
        AccessDenied,
        IncompleteSignature,
        InvalidSignature,
        MissingAuthenticationToken,
        UnrecognizedClient,
    )
)


def _named_in(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, str | None]:
    """The request id and error code a response's headers name."""
    request_id, error = "", None
    for name, value in headers:
        name = name.lower()
        if name == b"x-amzn-requestid":
            request_id = value.decode("latin-1")
        elif name == b"x-amzn-errortype":
            error = value.decode("latin-1")
    return request_id, error


def _query(scope: Scope) -> str:
    query: bytes = scope["query_string"]
    return query.decode("latin-1")


def _http_request(scope: Scope, body: bytes) -> HttpRequest:
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    return HttpRequest(
        method=scope["method"],
        path=path,
        query=_query(scope),
        headers=scope["headers"],
        body=body,
    )

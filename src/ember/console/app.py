"""The web console at ``/console``: server-rendered pages over the ``Console`` reads.

This module only parses: each route reads its parameters, asks ``views.Console``
(which authorizes as the equivalent API request) and renders a template. The
Frontend sends ``/console`` here before the SigV4 guard: the console signs in
with an access key instead (``session.Sessions``), and with ``--auth none``
(loopback only) every visitor is the default account's root, as on the API.
Errors become an HTML page with the status the API would answer.
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ember.api.audit import iso, parse_instant, parse_marker
from ember.api.errors import status_of
from ember.api.observe import parse_outcomes
from ember.auth.principals import Principal
from ember.console import sparkline
from ember.console.session import COOKIE, Sessions
from ember.console.views import RANGES, Console
from ember.errors import (
    AccessDenied,
    EmberError,
    InvalidParameterValue,
    PlatformError,
    UnrecognizedClient,
)
from ember.observe.base import HistoryQuery
from ember.observe.records import OUTCOMES

log = logging.getLogger("ember.console")

PREFIX = "/console"
HERE = Path(__file__).parent
HISTORY_PAGE = 25
T = TypeVar("T")
Page = Callable[[Request, Principal], Awaitable[Response]]


class ConsoleApp:
    """The ASGI application of ``/console``. ``sessions`` is None with ``--auth none``:
    then ``default`` is everyone's principal and there is no sign-in."""

    def __init__(
        self, console: Console, sessions: Sessions | None, default: Principal | None = None
    ) -> None:
        self._console = console
        self._sessions = sessions
        self._default = default
        # Forms still carry a CSRF token without sign-in: another site's page must not
        # invoke functions through a browser on loopback.
        self._csrf = sessions or Sessions(secrets.token_bytes(32), lambda _: None)
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._templates.globals.update(prefix=PREFIX, spark=sparkline.svg, quote=quote)
        self._app = Starlette(routes=self._routes())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def _routes(self) -> list[Route | Mount]:
        fn = PREFIX + "/functions/{name}"
        return [
            Route(PREFIX, self._redirect_home, methods=["GET"]),
            Route(PREFIX + "/", self._page(self.functions), methods=["GET"]),
            Route(PREFIX + "/signin", self.sign_in_form, methods=["GET"]),
            Route(PREFIX + "/signin", self.sign_in, methods=["POST"]),
            Route(PREFIX + "/signout", self.sign_out, methods=["POST"]),
            Route(fn, self._page(self.function), methods=["GET"]),
            Route(fn + "/series.json", self._page(self.series), methods=["GET"]),
            Route(fn + "/logs", self._page(self.logs), methods=["GET"]),
            Route(fn + "/test", self._page(self.test), methods=["POST"]),
            Route(fn + "/redrive", self._page(self.redrive), methods=["POST"]),
            Route(PREFIX + "/queue", self._page(self.queue), methods=["GET"]),
            Route(PREFIX + "/sandboxes", self._page(self.sandboxes), methods=["GET"]),
            Route(PREFIX + "/limits", self._page(self.limits), methods=["GET"]),
            Mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # -- sign-in ------------------------------------------------------------------

    async def _redirect_home(self, request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=303)

    async def sign_in_form(self, request: Request) -> Response:
        if self._sessions is None:
            return RedirectResponse(PREFIX + "/", status_code=303)
        return self._render(request, "signin.html", None, error=None, status=200)

    async def sign_in(self, request: Request) -> Response:
        if self._sessions is None:
            return RedirectResponse(PREFIX + "/", status_code=303)
        form = await request.form()
        try:
            cookie = self._sessions.sign_in(
                str(form.get("access_key_id", "")).strip(), str(form.get("secret", ""))
            )
        except UnrecognizedClient as refused:
            return self._render(request, "signin.html", None, error=refused.message, status=403)
        response = RedirectResponse(_local(str(form.get("next", ""))), status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=self._sessions.lifetime,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=_https(request),
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        cookie = request.cookies.get(COOKIE, "")
        form = await request.form()
        try:
            self._csrf.check_csrf(cookie, _field(form, "csrf"))
        except AccessDenied as refused:
            return self._render(request, "error.html", None, error=refused, code=refused.code,
                                status=403)  # fmt: skip
        response = RedirectResponse(PREFIX + "/signin", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    def _principal(self, request: Request) -> Principal:
        if self._sessions is None:
            assert self._default is not None  # invariant: given whenever sessions are not
            return self._default
        return self._sessions.principal(request.cookies.get(COOKIE))

    def _page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` for a signed-in caller; errors become an HTML page."""

        @functools.wraps(handler)
        async def page(request: Request) -> Response:
            try:
                principal = self._principal(request)
            except UnrecognizedClient:
                target = quote(
                    request.url.path + ("?" + request.url.query if request.url.query else "")
                )
                return RedirectResponse(f"{PREFIX}/signin?next={target}", status_code=303)
            try:
                if request.method == "POST":
                    form = await request.form()
                    self._csrf.check_csrf(request.cookies.get(COOKIE, ""), _field(form, "csrf"))
                return await handler(request, principal)
            except EmberError as error:
                return self._error(request, principal, error)
            except Exception:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                failed = PlatformError("Internal error; see the server log.")
                return self._error(request, principal, failed)

        return page

    def _error(self, request: Request, principal: Principal, error: EmberError) -> Response:
        status = status_of(error)
        return self._render(
            request, "error.html", principal, error=error, code=error.code, status=status
        )

    def _render(
        self,
        request: Request,
        template: str,
        principal: Principal | None,
        *,
        status: int = 200,
        **context: Any,
    ) -> Response:
        cookie = request.cookies.get(COOKIE, "")
        html = self._templates.get_template(template).render(
            request=request,
            principal=principal,
            signed_in=self._sessions is not None and principal is not None,
            csrf=self._csrf.csrf_token(cookie),
            next=request.query_params.get("next", ""),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_NO_STORE)

    # -- pages --------------------------------------------------------------------------

    async def functions(self, request: Request, principal: Principal) -> Response:
        rows, marker = await self._console.functions(principal, request.query_params.get("marker"))
        return self._render(request, "functions.html", principal, rows=rows, marker=marker)

    async def function(
        self, request: Request, principal: Principal, test: dict[str, Any] | None = None
    ) -> Response:
        name = request.path_params["name"]
        about = await self._console.function(principal, name)
        filters = _history_filters(request)
        query = HistoryQuery(function=about["record"].name, limit=HISTORY_PAGE, **filters.query)
        # What the policy denies of the rest shows as denied; the page still renders.
        history = await _unless_denied(self._console.history(principal, name, query))
        logs = await _unless_denied(self._console.logs(principal, name, None))
        queue = await _unless_denied(self._console.queue(principal))
        return self._render(
            request,
            "function.html",
            principal,
            **about,
            history=history,
            filters=filters.shown,
            outcomes=OUTCOMES,
            iso=iso,
            logs=logs[0] if logs else None,
            offset=logs[1] if logs else 0,
            queue=None if queue is None else [q for q in queue if q["function"] == name],
            letters=await _unless_denied(self._console.dead_letters(principal, name)),
            test=test,
            payload=test["payload"] if test else "{}",
        )

    async def series(self, request: Request, principal: Principal) -> Response:
        window = RANGES.get(request.query_params.get("range", "1h"))
        if window is None:
            raise InvalidParameterValue(f"range must be one of {', '.join(RANGES)}")
        body = await self._console.series(principal, request.path_params["name"], window)
        return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)

    async def logs(self, request: Request, principal: Principal) -> Response:
        since = request.query_params.get("since", "")
        if not since.isdigit():
            raise InvalidParameterValue("since must be a byte offset (an integer)")
        name = request.path_params["name"]
        text, offset = await self._console.logs(principal, name, int(since))
        return self._render(request, "logs.html", principal, bare=name, logs=text, offset=offset)

    async def test(self, request: Request, principal: Principal) -> Response:
        form = await request.form()
        payload = _field(form, "payload") or "{}"
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidParameterValue(f"The payload is not JSON: {exc}") from None
        started = time.perf_counter()
        result = await self._console.invoke(
            principal, request.path_params["name"], payload.encode()
        )
        test = {
            "payload": payload,
            "status": result.status,
            "request_id": result.request_id,
            "error": result.function_error,
            "body": result.body.decode("utf-8", "replace"),
            "logs": base64.b64decode(result.log_result or "").decode("utf-8", "replace"),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        return await self.function(request, principal, test)

    async def redrive(self, request: Request, principal: Principal) -> Response:
        form = await request.form()
        name = request.path_params["name"]
        ids = [str(value) for value in form.getlist("id")] or None
        moved = await self._console.redrive(principal, name, ids)
        target = f"{PREFIX}/functions/{quote(name)}?redriven={moved}#queue"
        return RedirectResponse(target, status_code=303)

    async def queue(self, request: Request, principal: Principal) -> Response:
        rows = await self._console.queue(principal)
        return self._render(request, "queue.html", principal, rows=rows)

    async def sandboxes(self, request: Request, principal: Principal) -> Response:
        found = await self._console.sandboxes(principal)
        return self._render(request, "sandboxes.html", principal, **found)

    async def limits(self, request: Request, principal: Principal) -> Response:
        rows = await self._console.limits(principal)
        return self._render(request, "limits.html", principal, rows=rows)


class _Filters:
    """The history filters of a request: as a query's fields and as the form shows them."""

    def __init__(self, query: dict[str, Any], shown: dict[str, str]) -> None:
        self.query = query
        self.shown = shown


def _history_filters(request: Request) -> _Filters:
    params, now = request.query_params, time.time()
    outcome = params.get("outcome", "")
    since, until, after = params.get("since", ""), params.get("until", ""), params.get("next", "")
    query: dict[str, Any] = {"outcomes": parse_outcomes([outcome]) if outcome else ()}
    if since:
        query["since"] = parse_instant("since", since, now)
    if until:
        query["until"] = parse_instant("until", until, now)
    if after:
        query["after"] = parse_marker(after)
    return _Filters(query, {"outcome": outcome, "since": since, "until": until})


async def _unless_denied(read: Awaitable[T]) -> T | None:
    """``read``'s result, or None where the caller's policy denies it."""
    try:
        return await read
    except AccessDenied:
        return None


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _local(target: str) -> str:
    """Where to go after sign-in: a console path only, never another site."""
    if target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.lower() == "https"


# The pages show account data: no shared cache may keep them.
_NO_STORE = {"cache-control": "no-store"}

__all__ = ["PREFIX", "ConsoleApp"]

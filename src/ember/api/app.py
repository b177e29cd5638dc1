"""The Frontend ASGI application: the lean Invoke route, then Starlette for the rest."""

from __future__ import annotations

import functools
import hmac
import ipaddress
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from ember import __version__
from ember.api import (
    auth_routes,
    concurrency,
    event_invoke,
    event_sources,
    extensions,
    functions,
    invoke,
    layers,
    manifests,
    observe,
    openapi,
    provisioned,
    queue,
    runtime_settings,
    runtimes,
    tags,
    tools,
    urls,
    versions,
    workers,
)
from ember.api import errors as http_errors
from ember.api.bodies import read_body, run_bounded, send_answer
from ember.api.errors import unknown_operation
from ember.api.guard import Guard
from ember.api.services import Services
from ember.auth.hosts import HostPolicy, host_and_origin
from ember.control.validation import MAX_ZIPPED
from ember.errors import EmberError, RequestTooLarge, StartupRefused
from ember.invoke.service import MAX_REQUEST, new_request_id
from ember.invoke.urls import UrlInvoker

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
MCP_PATH = "/mcp"
# The web console: it signs in with an access key of its own (a session cookie), so
# the Frontend sends it past the SigV4 guard; it is never unauthenticated.
CONSOLE_PATH = "/console"
# What anyone may reach unauthenticated: liveness, the API's description (public
# knowledge: botocore's model and ember's route list, nothing of any account), and
# OAuth's discovery document (MCP and function URLs authenticate in their own ways).
OPEN_PATHS = frozenset({"/health", openapi.PATH})
# Liveness is the one route of the API answered whatever the Host: probes name the
# node by any address, and it says nothing but "ok".
ANY_HOST_PATHS = frozenset({"/health"})
WELL_KNOWN = "/.well-known/oauth-protected-resource"  # RFC 9728, served by MCP
# The largest request of the other routes: a 50 MB zip, base64 in JSON (Lambda's
# own figure for CreateFunction).
MAX_API_REQUEST = -(-MAX_ZIPPED * 4 // 3)
# An MCP call carries at most an Invoke payload, in JSON-RPC's envelope.
MAX_MCP_REQUEST = MAX_REQUEST + (1 << 16)
# A console form carries at most an Invoke payload, URL-encoded (up to three bytes each).
MAX_CONSOLE_REQUEST = 3 * MAX_REQUEST + (1 << 16)


def _api_too_large() -> RequestTooLarge:
    return RequestTooLarge(f"Request must be smaller than {MAX_API_REQUEST} bytes")


def _mcp_too_large() -> RequestTooLarge:
    return RequestTooLarge(f"Request must be smaller than {MAX_MCP_REQUEST} bytes")


def _console_too_large() -> RequestTooLarge:
    return RequestTooLarge(f"Request must be smaller than {MAX_CONSOLE_REQUEST} bytes")


async def _not_found(request: Request, exc: Exception) -> Response:
    status, headers, body = unknown_operation(request.method, request.url.path, new_request_id())
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


async def _refuse(send: Any, error: EmberError) -> None:
    await send_answer(send, http_errors.answer(error, new_request_id()))


class Frontend:
    """Routes function URLs (``/url/...`` and host-style) to their functions, Invoke to
    ``ember.api.invoke``, ``/mcp`` to MCP, ``/console`` to the console (which signs
    its users in itself), the rest to Starlette; Invoke and the rest through the
    ``guard`` (none: every caller is the default root). Every request but a function
    URL's and ``/health`` must name this server in ``Host`` (and, from a browser, come
    from an allowed ``Origin``): ``ember.auth.hosts``."""

    def __init__(
        self,
        services: Services,
        lifespan: Lifespan,
        mcp: ASGIApp | None = None,
        guard: Guard | None = None,
        url_invoker: UrlInvoker | None = None,
        console: ASGIApp | None = None,
    ) -> None:
        self._invoke = services.invocations.invoke
        self._guard = guard
        # Bound once: run per Invoke.
        self._invoke_answer = self._answer_unguarded
        self._stream_app = functools.partial(invoke.handle_stream, self._invoke)
        # Without one given, AWS_IAM URLs refuse everyone (never open by omission).
        self._urls = url_invoker or UrlInvoker(services.urls, services.invocations.invoke)
        self._mcp = mcp
        self._console = console
        self._lifespan = lifespan
        settings = services.settings
        self._hosts = HostPolicy(
            settings.host,
            settings.port,
            settings.allowed_hosts,
            url_suffix=settings.url_host_suffix,
        )
        self._url_key = services.urls.key_of_id
        self._metrics_public = settings.metrics_public
        self._metrics_token = (
            f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None
        )
        self._app = Starlette(
            routes=[
                *functions.routes(services),
                *versions.routes(services),
                *extensions.routes(services),
                *concurrency.routes(services),
                *provisioned.routes(services),
                *event_invoke.routes(services),
                *event_sources.routes(services),
                *queue.routes(services),
                *manifests.routes(services),
                *layers.routes(services),
                *runtime_settings.routes(services),
                *tags.routes(services),
                *urls.routes(services),
                *tools.routes(services),
                *auth_routes.routes(services),
                *workers.routes(services),
                *observe.routes(services),
                *runtimes.routes(services),
            ],
            exception_handlers={404: _not_found, 405: _not_found},
        )
        self._add_openapi()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http":
            # Function URLs first: public endpoints, with their own CORS.
            if path.startswith(urls.PREFIX):
                await urls.handle(self._urls, scope, receive, send)
                return
            host, origin = host_and_origin(scope["headers"])
            url = self._hosts.url_id(host)
            if url is not None:
                await urls.handle(self._urls, scope, receive, send, self._url_key(url) or "")
                return
            if path not in ANY_HOST_PATHS:
                try:
                    self._hosts.check(host, origin)
                except EmberError as refused:
                    await _refuse(send, refused)
                    return
        if (
            path.endswith(invoke.SUFFIX)
            and path.startswith(invoke.PREFIX)
            and scope["method"] == "POST"
        ):
            try:
                body = await read_body(scope, receive, MAX_REQUEST, invoke.too_large)
            except EmberError as refused:
                await send_answer(send, http_errors.answer(refused, new_request_id()))
                return
            await send_answer(send, await self._answer_invoke(scope, body))
            return
        if (
            path.endswith(invoke.STREAM_SUFFIX)
            and path.startswith(invoke.STREAM_PREFIX)
            and scope["method"] == "POST"
        ):
            if self._guard is None:
                await invoke.handle_stream(self._invoke, scope, receive, send)
            else:
                await self._guard(
                    scope, receive, send, self._stream_app, MAX_REQUEST, invoke.too_large
                )
            return
        if (path == MCP_PATH or path.startswith(WELL_KNOWN)) and self._mcp is not None:
            if scope["type"] == "http":
                await run_bounded(self._mcp, scope, receive, send, MAX_MCP_REQUEST, _mcp_too_large)
            else:
                await self._mcp(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
            return
        if self._console is not None and _is_console(path):
            limit = MAX_CONSOLE_REQUEST
            await run_bounded(self._console, scope, receive, send, limit, _console_too_large)
            return
        if self._guard is None or self._open(scope, path) or self._scraper(scope, path):
            await self._app(scope, receive, send)
            return
        await self._guard(scope, receive, send, self._app, MAX_API_REQUEST, _api_too_large)

    # The lane: Invoke answered whole, without ASGI (``ember.api.wire``).

    def takes(self, scope: dict[str, Any]) -> bool:
        """Whether ``answer`` serves this request (its method, path and query are
        parsed, its body not yet read): Invoke, unless the host names a function URL."""
        path: str = scope["path"]
        if not (path.endswith(invoke.SUFFIX) and path.startswith(invoke.PREFIX)):
            return False
        host, _ = host_and_origin(scope["headers"])
        return self._hosts.url_id(host) is None

    async def answer(self, scope: dict[str, Any], body: bytes) -> http_errors.Answer:
        """The whole response to a request ``takes`` took, its body read (what
        ``__call__`` answers to it, through the same checks)."""
        host, origin = host_and_origin(scope["headers"])
        try:
            self._hosts.check(host, origin)
        except EmberError as refused:
            return http_errors.answer(refused, new_request_id())
        return await self._answer_invoke(scope, body)

    async def _answer_invoke(self, scope: dict[str, Any], body: bytes) -> http_errors.Answer:
        if self._guard is None:
            return await self._answer_unguarded(scope, body)
        return await self._guard.answer(scope, body, self._invoke_answer)

    async def _answer_unguarded(self, scope: dict[str, Any], body: bytes) -> http_errors.Answer:
        return await invoke.answer(self._invoke, scope, body, new_request_id())

    def _add_openapi(self) -> None:
        """Serve ``/openapi.json``: described once, from the routes just built."""
        document = openapi.describe(self._serves, self._own_routes(), __version__)
        body = orjson.dumps(document)

        async def serve(request: Request) -> Response:
            return Response(body, media_type="application/json")

        self._app.router.routes.append(Route(openapi.PATH, serve, methods=["GET"]))

    def _serves(self, method: str, path: str) -> bool:
        if method == "POST" and path.startswith(invoke.PREFIX) and path.endswith(invoke.SUFFIX):
            return True
        if (
            method == "POST"
            and path.startswith(invoke.STREAM_PREFIX)
            and path.endswith(invoke.STREAM_SUFFIX)
        ):
            return True
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        return any(route.matches(scope)[0] is Match.FULL for route in self._app.router.routes)

    def _own_routes(self) -> list[tuple[str, str]]:
        return [
            (method, route.path)
            for route in self._app.router.routes
            if isinstance(route, Route) and route.path.startswith("/_ember/")
            for method in sorted(route.methods or ())
            if method != "HEAD"
        ]

    @staticmethod
    def _open(scope: dict[str, Any], path: str) -> bool:
        return scope["type"] != "http" or path in OPEN_PATHS or path.startswith(WELL_KNOWN)

    def _scraper(self, scope: dict[str, Any], path: str) -> bool:
        """Whether ``/metrics`` is answered unsigned: Prometheus does not sign. Open with
        --metrics-public, to loopback clients (a scraper beside the node), and to the
        holder of --metrics-token; anyone else goes through the guard (SigV4)."""
        if path != observe.METRICS_PATH:
            return False
        if self._metrics_public or _loopback(scope.get("client")):
            return True
        if self._metrics_token is None:
            return False
        sent = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(sent, self._metrics_token)

    async def _run_lifespan(self, receive: Any, send: Any) -> None:
        # Starlette would do this too, but it reports every start-up failure as a
        # traceback; a refusal (no isolation on this host) is one line for the operator.
        await receive()  # lifespan.startup
        started = False
        try:
            async with self._lifespan(self):
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except StartupRefused as refused:
            await send({"type": "lifespan.startup.failed", "message": refused.message})
            return
        except BaseException:
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})


def _is_console(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def _loopback(client: tuple[str, int] | None) -> bool:
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:  # a Unix socket's path, or no address at all
        return False


__all__ = ["Frontend"]

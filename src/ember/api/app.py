"""The Frontend ASGI application: the lean Invoke route, then Starlette for the rest."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from ember.api import (
    concurrency,
    event_invoke,
    extensions,
    functions,
    invoke,
    layers,
    manifests,
    queue,
    tools,
    urls,
    versions,
)
from ember.api.errors import unknown_operation
from ember.api.services import Services
from ember.errors import StartupRefused
from ember.invoke.service import new_request_id
from ember.invoke.urls import UrlInvoker

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
MCP_PATH = "/mcp"
PRM_PATH = "/.well-known/oauth-protected-resource"  # RFC 9728, served by the MCP endpoint


async def _not_found(request: Request, exc: Exception) -> Response:
    status, headers, body = unknown_operation(request.method, request.url.path, new_request_id())
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


class Frontend:
    """Routes Invoke to ``ember.api.invoke``, ``/mcp`` to MCP, the rest to Starlette."""

    def __init__(self, services: Services, lifespan: Lifespan, mcp: ASGIApp | None = None) -> None:
        self._invoke = services.invocations.invoke
        self._urls = UrlInvoker(services.urls, services.invocations.invoke)
        self._mcp = mcp
        self._lifespan = lifespan
        self._app = Starlette(
            routes=[
                *functions.routes(services),
                *versions.routes(services),
                *extensions.routes(services),
                *concurrency.routes(services),
                *event_invoke.routes(services),
                *queue.routes(services),
                *manifests.routes(services),
                *layers.routes(services),
                *urls.routes(services),
                *tools.routes(services),
            ],
            exception_handlers={404: _not_found, 405: _not_found},
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (
            path.endswith(invoke.SUFFIX)
            and path.startswith(invoke.PREFIX)
            and scope["method"] == "POST"
        ):
            await invoke.handle(self._invoke, scope, receive, send)
            return
        if path.startswith(urls.PREFIX) and scope["type"] == "http":
            await urls.handle(self._urls, scope, receive, send)
            return
        if (path == MCP_PATH or path.startswith(PRM_PATH)) and self._mcp is not None:
            await self._mcp(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
            return
        await self._app(scope, receive, send)

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


__all__ = ["Frontend"]

"""Managed runtimes of this host (``/_ember/runtimes``): list, install, remove; in docs/api.md."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api.http import endpoint, json_response
from ember.api.services import Services
from ember.sandbox import runtimes as host_runtimes
from ember.worker import runtime_installs


def routes(services: Services) -> list[Route]:
    managed = services.runtimes

    @endpoint
    async def list_runtimes(request: Request, request_id: str) -> Response:
        node = await asyncio.to_thread(runtime_installs.installed)
        usable = await asyncio.to_thread(host_runtimes.installed)
        body = {"runtimes": [r.as_json() for r in node], "available": list(usable)}
        return json_response(body, request_id)

    @endpoint
    async def install(request: Request, request_id: str) -> Response:
        done = await managed.install(request.path_params["runtime"])
        return json_response(done, request_id, status=201)

    @endpoint
    async def remove(request: Request, request_id: str) -> Response:
        await managed.remove(request.path_params["runtime"])
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    return [
        Route("/_ember/runtimes", list_runtimes, methods=["GET"]),
        Route("/_ember/runtimes/{runtime}", install, methods=["PUT"]),
        Route("/_ember/runtimes/{runtime}", remove, methods=["DELETE"]),
    ]

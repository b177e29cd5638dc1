"""Lambda's event-invoke-config routes (``/2019-09-25/functions/{name}/event-invoke-config``).

Parse only: validation and storage live in ``ember.queue.configs``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names as resolve
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.errors import ValidationError
from ember.text import is_decimal

PATH = "/2019-09-25/functions/{name}/event-invoke-config"


def routes(services: Services) -> list[Route]:
    if services.asynchronous is None:
        return []
    configs = services.asynchronous.configs
    names = services.arns

    def function(request: Request) -> str:
        """The function's key (with ``:qualifier`` when the name had one: checked later)."""
        named = resolve.function(request.scope, names, request.path_params["name"])
        return f"{named.key}:{named.qualifier}" if named.qualifier else named.key

    def target(request: Request) -> tuple[str, str | None]:
        return function(request), request.query_params.get("Qualifier")

    @endpoint
    async def put(request: Request, request_id: str) -> Response:
        config = await configs.put(
            *target(request), await read_json(request, "PutFunctionEventInvokeConfig")
        )
        return json_response(config.describe(names), request_id)

    @endpoint
    async def update(request: Request, request_id: str) -> Response:
        config = await configs.update(
            *target(request), await read_json(request, "UpdateFunctionEventInvokeConfig")
        )
        return json_response(config.describe(names), request_id)

    @endpoint
    async def get(request: Request, request_id: str) -> Response:
        return json_response(configs.get(*target(request)).describe(names), request_id)

    @endpoint
    async def delete(request: Request, request_id: str) -> Response:
        await configs.delete(*target(request))
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def list_configs(request: Request, request_id: str) -> Response:
        raw = request.query_params.get("MaxItems")
        if raw is not None and not is_decimal(raw):
            raise ValidationError.constraint(raw, "maxItems", "Member must be an integer")
        found, marker = configs.list(
            function(request),
            request.query_params.get("Marker"),
            int(raw) if raw else None,
        )
        body: dict[str, object] = {"FunctionEventInvokeConfigs": [c.describe(names) for c in found]}
        if marker:
            body["NextMarker"] = marker
        return json_response(body, request_id)

    return [
        Route(PATH, put, methods=["PUT"]),
        Route(PATH, update, methods=["POST"]),
        Route(PATH, get, methods=["GET"]),
        Route(PATH, delete, methods=["DELETE"]),
        Route(PATH + "/list", list_configs, methods=["GET"]),
    ]


__all__ = ["routes"]

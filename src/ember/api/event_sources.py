"""Lambda's event-source-mapping routes (``/2015-03-31/event-source-mappings/``).

Parse only: validation, states and storage live in ``ember.sources.mappings``.
Create, Update and Delete answer 202, as Lambda does (the pollers finish the
transition); Get and List 200.
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

PATH = "/2015-03-31/event-source-mappings"


def routes(services: Services) -> list[Route]:
    if services.sources is None:
        return []
    mappings = services.sources.mappings
    names = services.arns

    def account(request: Request) -> str:
        return resolve.account(request.scope, names)

    @endpoint
    async def create(request: Request, request_id: str) -> Response:
        body = await read_json(request, "CreateEventSourceMapping")
        mapping = await mappings.create(body, account(request))
        return json_response(mapping.describe(names), request_id, status=202)

    @endpoint
    async def get(request: Request, request_id: str) -> Response:
        mapping = mappings.get(request.path_params["uuid"], account(request))
        return json_response(mapping.describe(names), request_id)

    @endpoint
    async def update(request: Request, request_id: str) -> Response:
        body = await read_json(request, "UpdateEventSourceMapping")
        mapping = await mappings.update(request.path_params["uuid"], body, account(request))
        return json_response(mapping.describe(names), request_id, status=202)

    @endpoint
    async def delete(request: Request, request_id: str) -> Response:
        mapping = await mappings.delete(request.path_params["uuid"], account(request))
        return json_response(mapping.describe(names), request_id, status=202)

    @endpoint
    async def list_mappings(request: Request, request_id: str) -> Response:
        query = request.query_params
        raw = query.get("MaxItems")
        if raw is not None and not is_decimal(raw):
            raise ValidationError.constraint(raw, "maxItems", "Member must be an integer")
        found, marker = mappings.list(
            account(request),
            query.get("FunctionName"),
            query.get("EventSourceArn"),
            query.get("Marker"),
            int(raw) if raw else None,
        )
        body: dict[str, object] = {"EventSourceMappings": [m.describe(names) for m in found]}
        if marker:
            body["NextMarker"] = marker
        return json_response(body, request_id)

    return [
        # botocore sends the collection with a trailing slash; both are served.
        Route(PATH, create, methods=["POST"]),
        Route(PATH + "/", create, methods=["POST"]),
        Route(PATH, list_mappings, methods=["GET"]),
        Route(PATH + "/", list_mappings, methods=["GET"]),
        Route(PATH + "/{uuid}", get, methods=["GET"]),
        Route(PATH + "/{uuid}", update, methods=["PUT"]),
        Route(PATH + "/{uuid}", delete, methods=["DELETE"]),
    ]


__all__ = ["routes"]

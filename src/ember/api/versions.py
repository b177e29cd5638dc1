"""Lambda's version and alias routes: parse, call the registry, render.

PublishVersion, ListVersionsByFunction, and Create/Get/Update/Delete/ListAliases;
the rules live in ``ember.control.publishing``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names as resolve
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.errors import InvalidParameterValue, ValidationError
from ember.text import is_decimal

API = "/2015-03-31/functions/{name}"


def _max_items(request: Request) -> int | None:
    raw = request.query_params.get("MaxItems")
    if raw is not None and not is_decimal(raw):
        raise ValidationError.constraint(raw, "maxItems", "Member must be an integer")
    return int(raw) if raw else None


def routes(services: Services) -> list[Route]:
    registry = services.registry
    names = services.arns

    def _function(request: Request) -> str:
        """The function a version/alias route names; it must not carry a qualifier."""
        named = resolve.function(request.scope, names, request.path_params["name"])
        if named.qualifier is not None:
            raise InvalidParameterValue("Function name must not include a version or alias.")
        return named.key

    @endpoint
    async def publish(request: Request, request_id: str) -> Response:
        record = await registry.publish(
            _function(request), await read_json(request, "PublishVersion")
        )
        return json_response(record.configuration(names, record.version), request_id, 201)

    @endpoint
    async def list_versions(request: Request, request_id: str) -> Response:
        found, marker = registry.versions_page(
            _function(request), request.query_params.get("Marker"), _max_items(request)
        )
        body: dict[str, Any] = {"Versions": [r.configuration(names, r.version) for r in found]}
        if marker:
            body["NextMarker"] = marker
        return json_response(body, request_id)

    @endpoint
    async def create_alias(request: Request, request_id: str) -> Response:
        alias = await registry.create_alias(
            _function(request), await read_json(request, "CreateAlias")
        )
        return json_response(alias.configuration(names), request_id, 201)

    @endpoint
    async def list_aliases(request: Request, request_id: str) -> Response:
        found, marker = registry.aliases_page(
            _function(request),
            request.query_params.get("FunctionVersion"),
            request.query_params.get("Marker"),
            _max_items(request),
        )
        body: dict[str, Any] = {"Aliases": [alias.configuration(names) for alias in found]}
        if marker:
            body["NextMarker"] = marker
        return json_response(body, request_id)

    @endpoint
    async def get_alias(request: Request, request_id: str) -> Response:
        alias = registry.get_alias(_function(request), request.path_params["alias"])
        return json_response(alias.configuration(names), request_id)

    @endpoint
    async def update_alias(request: Request, request_id: str) -> Response:
        alias = await registry.update_alias(
            _function(request),
            request.path_params["alias"],
            await read_json(request, "UpdateAlias"),
        )
        return json_response(alias.configuration(names), request_id)

    @endpoint
    async def delete_alias(request: Request, request_id: str) -> Response:
        await registry.delete_alias(_function(request), request.path_params["alias"])
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    return [
        Route(API + "/versions", publish, methods=["POST"]),
        Route(API + "/versions", list_versions, methods=["GET"]),
        Route(API + "/aliases", create_alias, methods=["POST"]),
        Route(API + "/aliases", list_aliases, methods=["GET"]),
        Route(API + "/aliases/{alias}", get_alias, methods=["GET"]),
        Route(API + "/aliases/{alias}", update_alias, methods=["PUT"]),
        Route(API + "/aliases/{alias}", delete_alias, methods=["DELETE"]),
    ]


__all__ = ["routes"]

"""MCP tool exposure: ``/_ember/functions/{name}/tool`` and ``/_ember/tools``.

Parse, call ``ToolCatalog``, render (documented in docs/api.md).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names, tokens
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.control.arns import bare
from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.mcp.catalog import ToolCatalog, ToolSpec


def document(spec: ToolSpec) -> dict[str, Any]:
    """The tool as its owner sees it: the function's bare name."""
    return {**spec.document(), "FunctionName": bare(spec.function)}


def routes(services: Services) -> list[Route]:
    def catalog() -> ToolCatalog:
        if services.tools is None:
            raise InvalidParameterValue("MCP tools are not enabled on this server.")
        return services.tools

    def function_name(request: Request) -> str:
        ref = names.function(request.scope, services.arns, request.path_params["name"])
        if ref.qualifier is not None:
            raise InvalidParameterValue(
                "Give the version or alias as the tool's qualifier setting, not in the name: "
                f"{request.path_params['name']}"
            )
        return ref.key

    @endpoint
    async def put_tool(request: Request, request_id: str) -> Response:
        spec = await catalog().expose(function_name(request), await read_json(request))
        return json_response(document(spec), request_id)

    @endpoint
    async def get_tool(request: Request, request_id: str) -> Response:
        name = function_name(request)
        spec = catalog().get(name)
        if spec is None:
            services.registry.get(name)  # a missing function is reported as such
            raise ResourceNotFound(f"Function {bare(name)} is not exposed as an MCP tool.")
        return json_response(document(spec), request_id)

    @endpoint
    async def delete_tool(request: Request, request_id: str) -> Response:
        await catalog().hide(function_name(request))
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def list_tools(request: Request, request_id: str) -> Response:
        tools = [
            document(spec)
            for spec in catalog().list()
            if names.owned(request.scope, services.arns, spec.function)
        ]
        return json_response({"Tools": tools}, request_id)

    path = "/_ember/functions/{name}/tool"
    return [
        Route(path, put_tool, methods=["PUT"]),
        Route(path, get_tool, methods=["GET"]),
        Route(path, delete_tool, methods=["DELETE"]),
        Route("/_ember/tools", list_tools, methods=["GET"]),
        # MCP tokens ride along here so that api/app.py's route list stays untouched.
        *tokens.routes(services),
    ]

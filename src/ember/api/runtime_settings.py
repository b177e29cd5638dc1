"""Runtime management and code signing: Lambda's answers for an account that uses none.

PutRuntimeManagementConfig is kept on the function (ember runs each runtime
identifier on the one interpreter the host has, so every mode behaves as
"Auto" would with no update pending); GetRuntimeManagementConfig reads it.
ember signs nothing: GetFunctionCodeSigningConfig answers ``{}`` (no config),
ListCodeSigningConfigs is empty, and GetCodeSigningConfig finds none. Parse
only; the rules live in ``ember.control``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.control.models import FunctionRecord
from ember.errors import ResourceNotFound, ValidationError

RUNTIME = "/2021-07-20/functions/{name}/runtime-management-config"
FUNCTION_CSC = "/2020-06-30/functions/{name}/code-signing-config"
CSC = "/2020-04-22/code-signing-configs"


def routes(services: Services) -> list[Route]:
    registry = services.registry

    def runtime_document(record: FunctionRecord, qualifier: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "UpdateRuntimeOn": record.update_runtime_on,
            "FunctionArn": services.arns.function(record.name, qualifier),
        }
        if record.runtime_version_arn is not None:
            body["RuntimeVersionArn"] = record.runtime_version_arn
        return body

    @endpoint
    async def get_runtime(request: Request, request_id: str) -> Response:
        ref = names.of_route(request, services.arns)
        record = registry.version(ref.key, ref.qualifier)
        return json_response(runtime_document(record, ref.qualifier), request_id)

    @endpoint
    async def put_runtime(request: Request, request_id: str) -> Response:
        ref = names.of_route(request, services.arns)
        registry.version(ref.key, ref.qualifier)
        body = await read_json(request, "PutRuntimeManagementConfig")
        record = await registry.put_runtime_management(ref.key, ref.qualifier, body)
        return json_response(runtime_document(record, ref.qualifier), request_id)

    @endpoint
    async def get_function_csc(request: Request, request_id: str) -> Response:
        ref = names.of_route(request, services.arns)
        registry.version(ref.key, ref.qualifier)
        # Lambda's answer for a function without a config: an empty object.
        return json_response({}, request_id)

    @endpoint
    async def list_csc(request: Request, request_id: str) -> Response:
        max_items = request.query_params.get("MaxItems")
        if max_items is not None and not (max_items.isdigit() and 1 <= int(max_items) <= 10000):
            raise ValidationError.constraint(
                max_items, "maxItems", "Member must have value between 1 and 10000"
            )
        return json_response({"CodeSigningConfigs": []}, request_id)

    @endpoint
    async def get_csc(request: Request, request_id: str) -> Response:
        arn = request.path_params["arn"]
        raise ResourceNotFound(f"The Lambda code signing configuration {arn} can not be found.")

    return [
        Route(RUNTIME, get_runtime, methods=["GET"]),
        Route(RUNTIME, put_runtime, methods=["PUT"]),
        Route(FUNCTION_CSC, get_function_csc, methods=["GET"]),
        Route(CSC, list_csc, methods=["GET"]),
        Route(CSC + "/{arn}", get_csc, methods=["GET"]),
    ]


__all__ = ["routes"]

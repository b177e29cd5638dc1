"""Lambda's control-plane routes: parse, call the registry, render.

Each handler turns a request into a registry call and the result into
Lambda's response shape; no validation or storage happens here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names, policies
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.control import arns
from ember.control.models import FunctionRecord
from ember.errors import ValidationError
from ember.text import is_decimal

API = "/2015-03-31/functions"


def routes(services: Services) -> list[Route]:
    registry = services.registry

    def _name(request: Request) -> names.Named:
        qualifier = request.query_params.get("Qualifier")
        return names.function(request.scope, services.arns, request.path_params["name"], qualifier)

    def configuration(record: FunctionRecord, qualifier: str | None = None) -> dict[str, Any]:
        return record.configuration(services.arns, qualifier)

    @endpoint
    async def create(request: Request, request_id: str) -> Response:
        # With Publish, the new version (its ARN unqualified, as Lambda answers).
        account = names.account(request.scope, services.arns)
        record = await registry.create(
            await read_json(request, "CreateFunction", package=True), account
        )
        return json_response(configuration(record), request_id, status=201)

    @endpoint
    async def list_functions(request: Request, request_id: str) -> Response:
        params = request.query_params
        version = params.get("FunctionVersion")
        if version is not None and version != "ALL":
            raise ValidationError.constraint(
                version, "functionVersion", "Member must satisfy enum value set: [ALL]"
            )
        _check_master_region(params.get("MasterRegion"))
        max_items = params.get("MaxItems")
        if max_items is not None and not is_decimal(max_items):
            raise ValidationError.constraint(max_items, "maxItems", "Member must be an integer")
        every = version == "ALL"
        page = registry.page(
            params.get("Marker"),
            int(max_items) if max_items else None,
            every,
            account=names.account(request.scope, services.arns),
        )
        body: dict[str, Any] = {
            "Functions": [configuration(r, r.version if every else None) for r in page.functions]
        }
        if page.next_marker:
            body["NextMarker"] = page.next_marker
        return json_response(body, request_id)

    @endpoint
    async def get_function(request: Request, request_id: str) -> Response:
        ref = _name(request)
        record = registry.version(ref.key, ref.qualifier)
        # Another account's function is named by its ARN, so the download reaches it.
        name = (
            record.name
            if record.name == record.function_name
            else services.arns.function(record.name)
        )
        package = name if record.version == arns.LATEST else f"{name}:{record.version}"
        location = (
            f"{services.settings.endpoint_url}/_ember/functions/{quote(package)}/code"
            f"?sha256={quote(record.code_sha256, safe='')}"
        )
        body = {
            "Configuration": configuration(record, ref.qualifier),
            "Code": {"RepositoryType": "S3", "Location": location},
            "Tags": services.tags.of(record.name),
        }
        reserved = services.throttle.limits.get(record.name).reserved
        if reserved is not None:
            body["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
        return json_response(body, request_id)

    @endpoint
    async def get_configuration(request: Request, request_id: str) -> Response:
        ref = _name(request)
        record = registry.version(ref.key, ref.qualifier)
        return json_response(configuration(record, ref.qualifier), request_id)

    @endpoint
    async def update_configuration(request: Request, request_id: str) -> Response:
        ref = _name(request)
        registry.version(ref.key, ref.qualifier)
        record = await registry.update_configuration(
            ref.key, await read_json(request, "UpdateFunctionConfiguration")
        )
        return json_response(configuration(record), request_id)

    @endpoint
    async def update_code(request: Request, request_id: str) -> Response:
        ref = _name(request)
        registry.version(ref.key, ref.qualifier)
        record = await registry.update_code(
            ref.key, await read_json(request, "UpdateFunctionCode", package=True)
        )
        # With Publish, the new version, under its qualified ARN.
        published = record.version != arns.LATEST
        return json_response(
            configuration(record, record.version if published else None), request_id
        )

    @endpoint
    async def delete(request: Request, request_id: str) -> Response:
        ref = _name(request)
        await registry.delete(ref.key, ref.qualifier)
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    return [
        Route(API, create, methods=["POST"]),
        Route(API, list_functions, methods=["GET"]),
        Route(API + "/{name}", get_function, methods=["GET"]),
        Route(API + "/{name}", delete, methods=["DELETE"]),
        Route(API + "/{name}/configuration", get_configuration, methods=["GET"]),
        Route(API + "/{name}/configuration", update_configuration, methods=["PUT"]),
        Route(API + "/{name}/code", update_code, methods=["PUT"]),
        # The function's resource policy, a sub-resource of it.
        *policies.routes(services),
    ]


# ListFunctions' MasterRegion (Lambda@Edge replicas, of which ember has none) is still
# judged as Lambda judges it: a fuzzed value is refused, not silently ignored.
_MASTER_REGION = re.compile(r"ALL|[a-z]{2}(-gov)?-[a-z]+-\d")


def _check_master_region(region: str | None) -> None:
    if region is not None and not _MASTER_REGION.fullmatch(region):
        raise ValidationError.constraint(
            region,
            "masterRegion",
            f"Member must satisfy regular expression pattern: {_MASTER_REGION.pattern}",
        )


__all__ = ["routes"]

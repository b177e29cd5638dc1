"""Provisioned concurrency: ``/2019-09-30/functions/{name}/provisioned-concurrency``.

Parse, call ``ember.reconcile.provisioned.ProvisionedConcurrency``, render. The
same path lists every config with ``?List=ALL`` (ListProvisionedConcurrencyConfigs).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.errors import InvalidParameterValue
from ember.reconcile.provisioned import ProvisionedConcurrency

API = "/2019-09-30/functions/{name}/provisioned-concurrency"


def routes(services: Services) -> list[Route]:
    def configs() -> ProvisionedConcurrency:
        if services.provisioned is None:
            raise InvalidParameterValue("Provisioned concurrency is not available on this server.")
        return services.provisioned

    @endpoint
    async def put(request: Request, request_id: str) -> Response:
        ref = names.of_route(request, services.arns)
        body = await read_json(request, "PutProvisionedConcurrencyConfig")
        config = await configs().put(ref.key, ref.qualifier, body)
        return json_response(config.document(services.arns), request_id, status=202)

    @endpoint
    async def get_or_list(request: Request, request_id: str) -> Response:
        ref = names.of_route(request, services.arns)
        if request.query_params.get("List") == "ALL":
            params = request.query_params
            page, marker = configs().list(ref.key, params.get("Marker"), params.get("MaxItems"))
            body: dict[str, Any] = {
                "ProvisionedConcurrencyConfigs": [
                    config.document(services.arns, listed=True) for config in page
                ]
            }
            if marker is not None:
                body["NextMarker"] = marker
            return json_response(body, request_id)
        config = configs().get(ref.key, ref.qualifier)
        return json_response(config.document(services.arns), request_id)

    @endpoint
    async def delete(request: Request, request_id: str) -> Response:
        ref = names.of_route(request, services.arns)
        await configs().delete(ref.key, ref.qualifier)
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    return [
        Route(API, put, methods=["PUT"]),
        Route(API, get_or_list, methods=["GET"]),
        Route(API, delete, methods=["DELETE"]),
    ]


__all__ = ["routes"]

"""A function's resource policy: AddPermission, GetPolicy, RemovePermission.

Parse only; the rules live in ``ember.control.policies``. The function is
named as every Lambda route names it (a name, ``name:qualifier``, a partial
or full ARN; ``Qualifier`` in the query); an ARN's account picks whose
function it is (authorization already decided the caller may act there).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names as owners
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services

API = "/2015-03-31/functions/{name}/policy"


def routes(services: Services) -> list[Route]:
    policies = services.policies
    names = services.arns

    def target(request: Request) -> tuple[str, str | None]:
        """(the function's storage key, its qualifier or None)."""
        named = owners.function(
            request.scope, names, request.path_params["name"], request.query_params.get("Qualifier")
        )
        return named.key, named.qualifier

    @endpoint
    async def add(request: Request, request_id: str) -> Response:
        key, qualifier = target(request)
        statement = await policies.add(key, await read_json(request, "AddPermission"), qualifier)
        return json_response({"Statement": orjson.dumps(statement).decode()}, request_id, 201)

    @endpoint
    async def get(request: Request, request_id: str) -> Response:
        policy = policies.get(*target(request))
        body = {
            "Policy": orjson.dumps(policy.document()).decode(),
            "RevisionId": policy.revision_id,
        }
        return json_response(body, request_id)

    @endpoint
    async def remove(request: Request, request_id: str) -> Response:
        key, qualifier = target(request)
        await policies.remove(
            key,
            request.path_params["sid"],
            qualifier,
            request.query_params.get("RevisionId"),
        )
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    return [
        Route(API, add, methods=["POST"]),
        Route(API, get, methods=["GET"]),
        Route(API + "/{sid}", remove, methods=["DELETE"]),
    ]


__all__ = ["routes"]

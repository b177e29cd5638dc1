"""Throttle routes: Lambda's concurrency API, GetAccountSettings, and ember's rate limits.

Parse, call ``ThrottleLimits``, render; the rules live in ``ember.throttle``.
Rate limits are ember's extension (``/_ember/functions/{name}/limits``,
documented in docs/api.md); everything else is Lambda's own shape.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.control.arns import bare
from ember.errors import InvalidParameterValue, ValidationError
from ember.throttle.limits import SCOPES, FunctionLimits, parse_policy, policy_document

# Lambda's per-package quotas, reported as they are (the total is Settings'
# account_code_storage_bytes, enforced by the registry).
CODE_SIZE_UNZIPPED = 262_144_000
CODE_SIZE_ZIPPED = 52_428_800


def limits_document(name: str, limits: FunctionLimits) -> dict[str, Any]:
    body: dict[str, Any] = {"FunctionName": name}
    if limits.reserved is not None:
        body["ReservedConcurrentExecutions"] = limits.reserved
    for scope in SCOPES:
        policy = getattr(limits, scope)
        if policy is not None:
            body.setdefault("RateLimits", []).append({"scope": scope, **policy_document(policy)})
    return body


def routes(services: Services) -> list[Route]:
    registry = services.registry
    limits = services.throttle.limits

    def function_name(request: Request) -> str:
        """The unqualified function; these settings apply to every version of it."""
        ref = names.function(request.scope, services.arns, request.path_params["name"])
        if ref.qualifier is not None:
            raise InvalidParameterValue(
                "This operation does not accept a qualified function name or ARN: "
                f"{request.path_params['name']}"
            )
        return registry.get(ref.key).name

    @endpoint
    async def put_concurrency(request: Request, request_id: str) -> Response:
        name = function_name(request)
        value = (await read_json(request, "PutFunctionConcurrency")).get(
            "ReservedConcurrentExecutions"
        )
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError.constraint(
                value, "reservedConcurrentExecutions", "Member must not be null"
            )
        if value < 0:
            raise ValidationError.constraint(
                value,
                "reservedConcurrentExecutions",
                "Member must have value greater than or equal to 0",
            )
        await limits.put_reserved(name, value)
        return json_response({"ReservedConcurrentExecutions": value}, request_id)

    @endpoint
    async def get_concurrency(request: Request, request_id: str) -> Response:
        reserved = limits.get(function_name(request)).reserved
        body = {} if reserved is None else {"ReservedConcurrentExecutions": reserved}
        return json_response(body, request_id)

    @endpoint
    async def delete_concurrency(request: Request, request_id: str) -> Response:
        await limits.delete_reserved(function_name(request))
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def account_settings(request: Request, request_id: str) -> Response:
        account = names.account(request.scope, services.arns)
        count, code_size = registry.usage(account)
        owner = None if account == services.arns.account_id else account
        settings = services.settings
        body = {
            "AccountLimit": {
                "TotalCodeSize": settings.account_code_storage_bytes,
                "CodeSizeUnzipped": CODE_SIZE_UNZIPPED,
                "CodeSizeZipped": CODE_SIZE_ZIPPED,
                "ConcurrentExecutions": limits.account_limit,
                "UnreservedConcurrentExecutions": limits.unreserved_of(owner),
            },
            "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": count},
        }
        return json_response(body, request_id)

    @endpoint
    async def get_limits(request: Request, request_id: str) -> Response:
        name = function_name(request)
        return json_response(limits_document(bare(name), limits.get(name)), request_id)

    @endpoint
    async def put_limit(request: Request, request_id: str) -> Response:
        name = function_name(request)
        scope, policy = parse_policy(await read_json(request))
        await limits.put_policy(name, scope, policy)
        return json_response(limits_document(bare(name), limits.get(name)), request_id)

    @endpoint
    async def delete_limit(request: Request, request_id: str) -> Response:
        name = function_name(request)
        scope = request.query_params.get("scope")
        if scope is not None and scope not in SCOPES:
            raise InvalidParameterValue(f"Invalid scope {scope!r}: use one of {', '.join(SCOPES)}.")
        await limits.delete_policy(name, scope)
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def list_limits(request: Request, request_id: str) -> Response:
        body = [
            limits_document(bare(name), rules)
            for name, rules in sorted(limits.rules.items())
            if names.owned(request.scope, services.arns, name)
        ]
        return json_response({"Functions": body}, request_id)

    fn = "/functions/{name}/concurrency"
    return [
        Route("/2017-10-31" + fn, put_concurrency, methods=["PUT"]),
        Route("/2019-09-30" + fn, get_concurrency, methods=["GET"]),
        Route("/2017-10-31" + fn, delete_concurrency, methods=["DELETE"]),
        Route("/2016-08-19/account-settings", account_settings, methods=["GET"]),
        Route("/2016-08-19/account-settings/", account_settings, methods=["GET"]),
        Route("/_ember/limits", list_limits, methods=["GET"]),
        Route("/_ember/functions/{name}/limits", get_limits, methods=["GET"]),
        Route("/_ember/functions/{name}/limits", put_limit, methods=["PUT"]),
        Route("/_ember/functions/{name}/limits", delete_limit, methods=["DELETE"]),
    ]


__all__ = ["routes"]

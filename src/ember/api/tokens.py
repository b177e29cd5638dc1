"""MCP tokens: ``/_ember/tokens`` (POST, GET) and ``/_ember/tokens/{id}`` (DELETE).

Parse, call ``TokenStore`` with the caller's account (rules in
``ember.auth.tokens``), render; the token itself is in the POST's answer only.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api.http import caller_of, endpoint, json_response, read_json
from ember.api.services import Services
from ember.auth.tokens import TokenStore, managed_account, tool_list, visible_tokens
from ember.errors import InvalidParameterValue

FIELDS = {"AccountId", "Tools"}


def routes(services: Services) -> list[Route]:
    default = services.settings.account_id

    def store() -> TokenStore:
        if services.mcp_tokens is None:
            raise InvalidParameterValue("MCP is not enabled on this server.")
        return services.mcp_tokens

    @endpoint
    async def create(request: Request, request_id: str) -> Response:
        body = await read_json(request)
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise InvalidParameterValue(f"Unknown field(s) {unknown}: expected {sorted(FIELDS)}.")
        account = managed_account(caller_of(request.scope, default), body.get("AccountId"), default)
        if services.admin is not None:
            services.admin.require_account(account)
        entry, token = await store().create(account, tool_list(body.get("Tools")))
        return json_response({**entry.document(), "Token": token}, request_id, 201)

    @endpoint
    async def list_tokens(request: Request, request_id: str) -> Response:
        account = visible_tokens(caller_of(request.scope, default), default)
        tokens = [entry.document() for entry in store().tokens(account)]
        return json_response({"Tokens": tokens}, request_id)

    @endpoint
    async def delete(request: Request, request_id: str) -> Response:
        account = visible_tokens(caller_of(request.scope, default), default)
        await store().delete(request.path_params["id"], account)
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    return [
        Route("/_ember/tokens", create, methods=["POST"]),
        Route("/_ember/tokens", list_tokens, methods=["GET"]),
        Route("/_ember/tokens/{id}", delete, methods=["DELETE"]),
    ]

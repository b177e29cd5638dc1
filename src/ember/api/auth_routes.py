"""ember's own admin objects: ``/_ember/accounts`` and ``/_ember/keys``.

Parse, call ``auth.admin.Admin`` with the caller the guard authenticated,
render. A secret appears only in the answer of the POST that created it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api.http import caller_of, endpoint, json_response, read_json
from ember.api.services import Services
from ember.auth.admin import Admin, NewKey
from ember.auth.keys import AccessKey
from ember.errors import InvalidParameterValue


def routes(services: Services) -> list[Route]:
    default_account = services.settings.account_id

    def admin() -> Admin:
        if services.admin is None:
            raise InvalidParameterValue("Accounts and keys are not enabled on this server.")
        return services.admin

    @endpoint
    async def create_account(request: Request, request_id: str) -> Response:
        body = await read_json(request)
        name = _string(body, "Name") or ""
        account, root = await admin().create_account(
            caller_of(request.scope, default_account), name
        )
        described = {**account.describe(), **(_secret(root) if root is not None else {})}
        return json_response(described, request_id, status=201)

    @endpoint
    async def list_accounts(request: Request, request_id: str) -> Response:
        accounts = admin().list_accounts(caller_of(request.scope, default_account))
        return json_response({"Accounts": [a.describe() for a in accounts]}, request_id)

    @endpoint
    async def create_key(request: Request, request_id: str) -> Response:
        body = await read_json(request)
        made = await admin().create_key(
            caller_of(request.scope, default_account),
            account_id=_string(body, "AccountId"),
            user=_string(body, "UserName"),
            policy=_string(body, "Policy"),
        )
        described = {**_secret(made), **_key(made.key)}
        del described["Created"]
        return json_response(described, request_id, status=201)

    @endpoint
    async def list_keys(request: Request, request_id: str) -> Response:
        account = request.query_params.get("AccountId") or None
        keys = admin().list_keys(caller_of(request.scope, default_account), account)
        return json_response({"Keys": [_key(k) for k in keys]}, request_id)

    @endpoint
    async def delete_key(request: Request, request_id: str) -> Response:
        caller = caller_of(request.scope, default_account)
        await admin().delete_key(caller, request.path_params["id"])
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    return [
        Route("/_ember/accounts", create_account, methods=["POST"]),
        Route("/_ember/accounts", list_accounts, methods=["GET"]),
        Route("/_ember/keys", create_key, methods=["POST"]),
        Route("/_ember/keys", list_keys, methods=["GET"]),
        Route("/_ember/keys/{id}", delete_key, methods=["DELETE"]),
    ]


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameterValue(f"{name} must be a string.")
    return value


def _key(key: AccessKey) -> dict[str, Any]:
    return {
        "AccessKeyId": key.access_key_id,
        "AccountId": key.principal.account_id,
        "UserName": key.principal.user,
        "Created": key.created,
    }


def _secret(made: NewKey) -> dict[str, str]:
    return {"AccessKeyId": made.key.access_key_id, "SecretAccessKey": made.secret}

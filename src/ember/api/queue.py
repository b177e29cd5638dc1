"""ember's queue extensions (``/_ember/queue``, dead letters); documented in docs/api.md."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.control import arns
from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.queue.base import DeadLetter
from ember.text import is_decimal

MAX_PAGE = 1000


def _payload(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def dead_letter_json(letter: DeadLetter, with_payload: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": letter.id,
        "requestId": letter.request_id,
        "condition": letter.condition,
        "errorType": letter.error_type,
        "errorMessage": letter.error_message,
        "approximateInvokeCount": letter.invocations,
        "enqueuedAt": letter.enqueued_at,
        "failedAt": letter.failed_at,
        "payloadBytes": len(letter.payload),
    }
    if with_payload:
        body["payload"] = _payload(letter.payload)
    return body


def routes(services: Services) -> list[Route]:
    if services.asynchronous is None:
        return []
    queue = services.asynchronous.queue
    supervisor = services.asynchronous.supervisor

    def function(request: Request) -> str:
        """The queue's name for a target: ``name``, or ``name:qualifier`` for a version/alias."""
        ref = names.function(request.scope, services.arns, request.path_params["name"])
        qualified = ref.qualifier not in (None, arns.LATEST)
        return f"{ref.key}:{ref.qualifier}" if qualified else ref.key

    @endpoint
    async def stats(request: Request, request_id: str) -> Response:
        functions = [
            {
                "function": arns.bare(s.function),
                "depth": s.depth,
                "inFlight": s.in_flight,
                "oldestAgeSeconds": s.oldest_age_seconds,
                "retrying": s.retrying,
                "deadLetters": s.dead_letters,
            }
            for s in await queue.statistics()
            if names.owned(request.scope, services.arns, s.function)
        ]
        return json_response(
            {"functions": functions, "pollers": supervisor.statistics().__dict__}, request_id
        )

    @endpoint
    async def list_letters(request: Request, request_id: str) -> Response:
        params = request.query_params
        raw_limit = params.get("limit", "100")
        if not is_decimal(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE:
            raise InvalidParameterValue(f"limit must be an integer from 1 to {MAX_PAGE}")
        limit = int(raw_limit)
        letters = await queue.dead_letters(function(request), params.get("after"), limit)
        with_payload = params.get("payload") in ("1", "true")
        body: dict[str, Any] = {"deadLetters": [dead_letter_json(d, with_payload) for d in letters]}
        if len(letters) == limit:
            body["next"] = letters[-1].id
        return json_response(body, request_id)

    @endpoint
    async def show_letter(request: Request, request_id: str) -> Response:
        name = function(request)
        letter = await queue.get_dead_letter(name, request.path_params["id"])
        if letter is None:
            raise ResourceNotFound(f"No dead letter {request.path_params['id']} for {name}")
        return json_response(dead_letter_json(letter, with_payload=True), request_id)

    @endpoint
    async def redrive(request: Request, request_id: str) -> Response:
        body = await read_json(request)
        ids = body.get("ids")
        if ids is not None and (
            not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
        ):
            raise InvalidParameterValue("ids must be a list of dead-letter ids (strings)")
        moved = await queue.redrive(function(request), ids)
        return json_response({"redriven": moved}, request_id)

    @endpoint
    async def purge(request: Request, request_id: str) -> Response:
        return json_response({"purged": await queue.purge(function(request))}, request_id)

    letters = "/_ember/functions/{name}/dead-letters"
    return [
        Route("/_ember/queue", stats, methods=["GET"]),
        Route(letters, list_letters, methods=["GET"]),
        Route(letters, purge, methods=["DELETE"]),
        Route(letters + "/redrive", redrive, methods=["POST"]),
        Route(letters + "/{id}", show_letter, methods=["GET"]),
    ]


__all__ = ["routes"]

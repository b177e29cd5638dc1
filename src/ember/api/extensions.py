"""ember's own routes: health, logs, sandboxes, package download, the audit log.

Documented in docs/api.md. Everything ember adds to Lambda's API lives
under ``/_ember/`` so it can never collide with a Lambda path.
"""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember import __version__
from ember.api import audit, names
from ember.api.http import endpoint, json_response, read_json, zip_response
from ember.api.services import Services
from ember.control import arns
from ember.control.models import FunctionRecord
from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.text import is_decimal


def routes(services: Services) -> list[Route]:
    def key(request: Request) -> str:
        return names.function(request.scope, services.arns, request.path_params["name"]).key

    @endpoint
    async def health(request: Request, request_id: str) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "functions": len(services.registry),
            "sandboxes": services.executor.statistics(),
            "isolation": services.describe_sandboxes(),
            "endpoint": services.settings.endpoint_url,
            "throttle": await services.throttle.health(),
            "node": services.node.describe(),
        }
        if services.audit is not None:
            body["audit"] = asdict(services.audit.statistics())
        if services.sources is not None:
            body["eventSources"] = asdict(services.sources.pollers.statistics())
        if services.recorder is not None:
            body["history"] = asdict(services.recorder.statistics())
        return json_response(body, request_id)

    @endpoint
    async def logs(request: Request, request_id: str) -> Response:
        name = key(request)
        since_raw = request.query_params.get("since")
        if since_raw is not None and not is_decimal(since_raw):
            raise InvalidParameterValue(f"since must be a byte offset (an integer): {since_raw}")
        if services.registry.lookup(name) is None and since_raw is None:
            text, _ = services.logs.read(name, None)
            if not text:
                raise ResourceNotFound(f"Function not found: {services.arns.function(name)}")
        text, next_offset = services.logs.read(name, int(since_raw) if since_raw else None)
        return json_response({"logs": text, "next": next_offset}, request_id)

    @endpoint
    async def sandboxes(request: Request, request_id: str) -> Response:
        mine = [
            {**sandbox, "function": arns.bare(str(sandbox["function"]))}
            for sandbox in await services.executor.sandboxes()
            if names.owned(request.scope, services.arns, str(sandbox["function"]))
        ]
        return json_response({"sandboxes": mine}, request_id)

    @endpoint
    async def code(request: Request, request_id: str) -> Response:
        ref = names.function(request.scope, services.arns, request.path_params["name"])
        data = await services.registry.code(ref.key, ref.qualifier)
        return zip_response(data, arns.bare(ref.key), request_id)

    def sandbox_settings(record: FunctionRecord) -> dict[str, object]:
        return {
            "FunctionName": record.function_name,
            "Egress": record.egress,
            "Isolation": record.isolation,
        }

    @endpoint
    async def get_sandbox(request: Request, request_id: str) -> Response:
        record = services.registry.get(key(request))
        return json_response(sandbox_settings(record), request_id)

    @endpoint
    async def put_sandbox(request: Request, request_id: str) -> Response:
        name = key(request)
        record = await services.registry.update_sandbox(name, await read_json(request))
        return json_response(sandbox_settings(record), request_id)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/_ember/functions/{name}/sandbox", get_sandbox, methods=["GET"]),
        Route("/_ember/functions/{name}/sandbox", put_sandbox, methods=["PUT"]),
        Route("/_ember/functions/{name}/logs", logs, methods=["GET"]),
        Route("/_ember/functions/{name}/code", code, methods=["GET"]),
        Route("/_ember/sandboxes", sandboxes, methods=["GET"]),
        *audit.routes(services),
    ]

"""Function URLs over HTTP: the config routes and the ``/url/...`` requests.

The config routes (``/2021-10-31/functions/{name}/url``) parse and call
``FunctionUrls``; ``handle`` turns any request under ``/url/`` into a
``UrlRequest`` for ``ember.invoke.urls.UrlInvoker`` and sends back what it
answers. Neither builds events nor reads results: that is the invoker's job.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names
from ember.api.bodies import read_body, refuse_too_large
from ember.api.http import endpoint, json_response, read_json
from ember.api.invoke import too_large
from ember.api.services import Services
from ember.control.urls import PREFIX, FunctionUrls, UrlConfig
from ember.errors import RequestTooLarge, ValidationError
from ember.invoke.service import MAX_REQUEST
from ember.invoke.urls import Headers, UrlInvoker, UrlRequest
from ember.text import is_decimal

API = "/2021-10-31/functions/{name}"
Scope = dict[str, Any]


def routes(services: Services) -> list[Route]:
    urls: FunctionUrls = services.urls

    def render(config: UrlConfig) -> dict[str, Any]:
        settings = services.settings
        # The host form only when the operator named a URL domain (it must resolve).
        suffix = settings.url_host_suffix if settings.url_domain else ""
        return config.to_api(services.arns, settings.endpoint_url, suffix)

    def target(request: Request) -> tuple[str, str | None]:
        """(the function's key, the Qualifier parameter); ``FunctionUrls`` checks the qualifier."""
        named = names.function(request.scope, services.arns, request.path_params["name"])
        qualifier = request.query_params.get("Qualifier")
        if named.qualifier is not None:  # ``name:alias``: FunctionUrls compares the two
            return f"{named.key}:{named.qualifier}", qualifier
        return named.key, qualifier

    @endpoint
    async def create(request: Request, request_id: str) -> Response:
        name, qualifier = target(request)
        config = await urls.create(
            name, await read_json(request, "CreateFunctionUrlConfig"), qualifier
        )
        body = render(config)
        body.pop("LastModifiedTime")  # CreateFunctionUrlConfig's response has none
        return json_response(body, request_id, status=201)

    @endpoint
    async def get(request: Request, request_id: str) -> Response:
        return json_response(render(urls.find(*target(request))), request_id)

    @endpoint
    async def update(request: Request, request_id: str) -> Response:
        name, qualifier = target(request)
        config = await urls.update(
            name, await read_json(request, "UpdateFunctionUrlConfig"), qualifier
        )
        return json_response(render(config), request_id)

    @endpoint
    async def delete(request: Request, request_id: str) -> Response:
        await urls.delete(*target(request))
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def list_configs(request: Request, request_id: str) -> Response:
        name, _ = target(request)
        max_items = request.query_params.get("MaxItems")
        if max_items is not None and not (is_decimal(max_items) and 1 <= int(max_items) <= 50):
            raise ValidationError.constraint(
                max_items, "maxItems", "Member must have value between 1 and 50"
            )
        # A function has at most one URL per alias: one page holds them all in practice.
        configs = [render(c) for c in urls.list(urls.find_function(name))]
        return json_response({"FunctionUrlConfigs": configs}, request_id)

    return [
        Route(API + "/url", create, methods=["POST"]),
        Route(API + "/url", get, methods=["GET"]),
        Route(API + "/url", update, methods=["PUT"]),
        Route(API + "/url", delete, methods=["DELETE"]),
        Route(API + "/urls", list_configs, methods=["GET"]),
    ]


def _raw_path(scope: Scope) -> str:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return raw.decode("latin-1").split("?", 1)[0]


def _split(raw_path: str) -> tuple[str, str]:
    """(NAME or NAME:ALIAS, the rest of the path) from ``/url/<key>/<rest>``."""
    key, slash, path = raw_path[len(PREFIX) :].partition("/")
    return unquote(key), "/" + path if slash else "/"


def _request(scope: Scope, body: bytes, key: str | None) -> UrlRequest:
    raw_path = _raw_path(scope)
    # Host-style (``key`` given): the whole path is the function's.
    key, path = _split(raw_path) if key is None else (key, raw_path or "/")
    client = scope.get("client")
    return UrlRequest(
        key=key,
        method=scope["method"],
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=list(scope["headers"]),
        body=body,
        source_ip=str(client[0]) if client else "",
        protocol=f"HTTP/{scope.get('http_version', '1.1')}",
        raw_path=raw_path,
    )


class _Out:
    """A RESPONSE_STREAM answer onto the ASGI connection: chunked, as written."""

    def __init__(self, send: Any) -> None:
        self._send = send

    async def start(self, status: int, headers: Headers) -> None:
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})


async def handle(
    invoker: UrlInvoker, scope: Scope, receive: Any, send: Any, key: str | None = None
) -> None:
    """Serve one request to a function URL: the one named in the path (``/url/KEY/``),
    or ``key`` (NAME or NAME:ALIAS) for a host-style URL."""
    try:
        body = await read_body(scope, receive, MAX_REQUEST, too_large)
    except RequestTooLarge as error:
        await refuse_too_large(send, error)
        return
    response = await invoker.handle(_request(scope, body, key), _Out(send))
    if response is None:
        return
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers}
    )
    await send({"type": "http.response.body", "body": response.body})


__all__ = ["PREFIX", "handle", "routes"]

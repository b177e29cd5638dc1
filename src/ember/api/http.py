"""Small helpers shared by the Starlette routes: request ids, JSON, errors."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ember import packagejson
from ember.api import errors as http_errors
from ember.api import shapes
from ember.auth.base import PRINCIPAL_SCOPE_KEY
from ember.auth.principals import Principal
from ember.errors import EmberError, InvalidRequestContent, PlatformError
from ember.invoke.service import new_request_id

log = logging.getLogger("ember.api")

Handler = Callable[[Request, str], Awaitable[Response]]


def caller_of(scope: Any, default_account: str) -> Principal:
    """The principal the guard authenticated for this request (``request.scope``).

    Every route behind the guard has one; ``default_account`` (its root) only
    stands in where no guard ran (``--auth none`` leaves the default account's
    root there too).
    """
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else Principal(default_account)


def zip_response(data: bytes, name: str, request_id: str) -> Response:
    """A zip download (code or layer content), named ``<name>.zip``."""
    return Response(
        data,
        media_type="application/zip",
        headers={
            "x-amzn-RequestId": request_id,
            "content-disposition": f'attachment; filename="{name}.zip"',
        },
    )


def json_response(body: Any, request_id: str, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"x-amzn-RequestId": request_id},
    )


def error_response(error: EmberError, request_id: str) -> Response:
    status, headers, body = http_errors.render(error, request_id)
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Give ``handler`` a request id and turn every error into AWS's shape."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        request_id = new_request_id()
        try:
            return await handler(request, request_id)
        except EmberError as error:
            return error_response(error, request_id)
        except Exception:
            # A bug of ours must not take the server down or leak a traceback.
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            return error_response(PlatformError("Internal error; see the server log."), request_id)

    return wrapper


async def read_json(
    request: Request, operation: str | None = None, *, package: bool = False
) -> dict[str, Any]:
    """The JSON object a request carries; type-checked against the model of the Lambda
    ``operation`` when it names one (``shapes.check``); with ``package``, a large
    ``ZipFile`` is left a ``memoryview`` of the body's base64 (``ember.packagejson``),
    not made a ``str``."""
    raw = await _body_of(request)
    if not raw:
        return {}
    try:
        body = packagejson.loads(raw) if package else orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestContent("The request body must be a JSON object.")
    if operation is not None:
        shapes.check(operation, body)
    return body


async def _body_of(request: Request) -> bytes:
    """The request body, as ``request.body()`` but without its copy: Starlette joins
    the chunks even when there is only one (the guard replays the body whole), which
    would hold a 67 MB package body twice."""
    chunks = [chunk async for chunk in request.stream() if chunk]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

"""Function URL requests: HTTP in, payload format 2.0 event, invoke, HTTP out.

The Frontend hands over a ``UrlRequest`` (already parsed, no HTTP objects);
``UrlInvoker.handle`` builds the event Lambda's function URLs send, invokes
through the invocation service (so the same throttles, sandboxes and logs
apply) and maps the result back as Lambda does:

- a dict with ``statusCode``: its status, headers, cookies and body
  (``isBase64Encoded`` bodies are decoded);
- any other JSON value: 200, ``application/json``, the value as returned;
- a function error: 502 with a short body; a throttle: 429.

A URL of ``AuthType`` ``AWS_IAM`` answers only requests SigV4-signed (header
or presigned query, service ``lambda``) by a principal allowed
``lambda:InvokeFunctionUrl`` on the function, by its identity policy or the
function's resource policy (condition ``lambda:FunctionUrlAuthType``); any
other gets Lambda's 403 ``{"Message":"Forbidden"}``. ``NONE`` is public.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl

import orjson

from ember.auth.base import Access, Authorizer
from ember.auth.claims import HttpRequest
from ember.auth.principals import Principal
from ember.control.urls import FunctionUrls, UrlConfig
from ember.errors import (
    AuthError,
    EmberError,
    RequestTooLarge,
    ResourceNotFound,
    TooManyRequests,
)
from ember.invoke import tracing
from ember.invoke.service import InvokeCommand, InvokeResult, new_request_id

log = logging.getLogger("ember.invoke")

Headers = list[tuple[bytes, bytes]]
Invoke = Callable[[InvokeCommand], Awaitable[InvokeResult]]
Clock = Callable[[], datetime]
# SigV4 verification of a request: its principal, or an ``AuthError``.
Verify = Callable[[HttpRequest], Principal]
INVOKE_URL = "lambda:InvokeFunctionUrl"
_AUTH_TYPE_KEY = "lambda:FunctionUrlAuthType"
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml", "x-www-form-urlencoded")


class UrlRequest(NamedTuple):
    """One HTTP request to ``/url/<key>/<path>``, as the Frontend parsed it."""

    key: str  # NAME or NAME:ALIAS
    method: str
    path: str  # after the key, starting with "/" (percent-encoded, as sent)
    query: str  # raw query string, without "?"
    headers: Headers  # as received (names in any case)
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"
    raw_path: str = ""  # the whole path as sent (``/url/<key>/...``): what SigV4 signed


class UrlResponse(NamedTuple):
    status: int
    headers: Headers
    body: bytes


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the request -> event half ----------------------------------------------------


def _joined_headers(headers: Headers) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with "," (cookies go elsewhere)."""
    joined: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name == "cookie":
            continue
        value = raw_value.decode("latin-1")
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _cookies(headers: Headers) -> list[str]:
    cookies: list[str] = []
    for name, value in headers:
        if name.lower() == b"cookie":
            cookies += [c.strip() for c in value.decode("latin-1").split(";") if c.strip()]
    return cookies


def _query_parameters(query: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def is_text(content_type: str | None, body: bytes) -> bool:
    """Whether Lambda passes ``body`` as text (else base64): textual type and UTF-8."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind and not (kind.startswith(_TEXT_TYPES) or kind.endswith(_TEXT_SUFFIXES)):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def build_event(
    request: UrlRequest,
    account_id: str,
    request_id: str,
    now: datetime,
    caller: Principal | None = None,
) -> dict[str, Any]:
    """The payload format 2.0 event a function URL sends (optional keys only when set)."""
    headers = _joined_headers(request.headers)
    host = headers.get("host", "")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": headers,
    }
    cookies = _cookies(request.headers)
    if cookies:
        event["cookies"] = cookies
    if request.query:
        event["queryStringParameters"] = _query_parameters(request.query)
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": request.key,
        "domainName": host,
        "domainPrefix": host.split(".")[0].split(":")[0],
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if caller is not None:  # an AWS_IAM URL: who signed, as Lambda tells the function
        event["requestContext"]["authorizer"] = {
            "iam": {
                "accountId": caller.account_id,
                "callerId": caller.user or caller.account_id,
                "userArn": caller.arn,
                "userId": caller.user or caller.account_id,
            }
        }
    text = is_text(headers.get("content-type"), request.body)
    if request.body:
        event["body"] = (
            request.body.decode("utf-8") if text else base64.b64encode(request.body).decode()
        )
    event["isBase64Encoded"] = bool(request.body) and not text
    return event


# --- the result -> response half ---------------------------------------------------

_BAD_GATEWAY = UrlResponse(502, [(b"content-type", b"text/plain")], b"Internal Server Error")


def _message(status: int, message: str, extra: Headers | None = None) -> UrlResponse:
    body = orjson.dumps({"Message": message})
    return UrlResponse(status, [(b"content-type", b"application/json"), *(extra or [])], body)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def map_result(result: InvokeResult) -> UrlResponse:
    """Lambda's reading of a function's answer to a URL request."""
    if result.function_error:
        return _BAD_GATEWAY
    try:
        value = orjson.loads(result.body)
    except orjson.JSONDecodeError:
        return _BAD_GATEWAY
    if not isinstance(value, dict) or "statusCode" not in value:
        return UrlResponse(200, [(b"content-type", b"application/json")], result.body)
    try:
        return _structured(value)
    except (TypeError, ValueError, binascii.Error):
        return _BAD_GATEWAY  # a malformed statusCode, headers or base64 body


def _head(value: dict[str, Any], content_type: bytes) -> tuple[int, Headers]:
    """Status and headers of a structured answer or a stream's prelude; ``content_type``
    unless the function set one."""
    status = int(value["statusCode"])
    if not 100 <= status <= 599:
        raise ValueError(status)
    headers: Headers = []
    for name, raw in (value.get("headers") or {}).items():
        headers.append((str(name).lower().encode("latin-1"), _text(raw).encode("latin-1")))
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", content_type))
    for cookie in value.get("cookies") or []:
        headers.append((b"set-cookie", str(cookie).encode("latin-1")))
    return status, headers


def _structured(value: dict[str, Any]) -> UrlResponse:
    status, headers = _head(value, b"application/json")
    raw_body = value.get("body")
    body = b"" if raw_body is None else _text(raw_body).encode("utf-8")
    if value.get("isBase64Encoded") and body:
        body = base64.b64decode(body, validate=True)
    return UrlResponse(status, headers, body)


# --- CORS ------------------------------------------------------------------------


def _header(request: UrlRequest, name: bytes) -> str | None:
    for key, value in request.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def cors_headers(config: UrlConfig, request: UrlRequest, preflight: bool) -> Headers:
    """The Access-Control-* headers the URL's Cors settings grant this request."""
    cors = config.cors or {}
    origin = _header(request, b"origin")
    origins = cors.get("AllowOrigins") or []
    if origin is None or not ("*" in origins or origin in origins):
        return []
    headers: Headers = [(b"access-control-allow-origin", origin.encode("latin-1"))]
    if cors.get("AllowCredentials"):
        headers.append((b"access-control-allow-credentials", b"true"))
    if cors.get("ExposeHeaders") and not preflight:
        headers.append((b"access-control-expose-headers", ",".join(cors["ExposeHeaders"]).encode()))
    if preflight:
        for key, name in (
            ("AllowMethods", b"access-control-allow-methods"),
            ("AllowHeaders", b"access-control-allow-headers"),
        ):
            if cors.get(key):
                headers.append((name, ",".join(cors[key]).encode("latin-1")))
        if cors.get("MaxAge") is not None:
            headers.append((b"access-control-max-age", str(cors["MaxAge"]).encode()))
    return headers


def _with_cors(response: UrlResponse, extra: Headers) -> UrlResponse:
    present = {name for name, _ in response.headers}
    added = [(name, value) for name, value in extra if name not in present]
    return response._replace(headers=response.headers + added)


# --- RESPONSE_STREAM ----------------------------------------------------------------


class StreamOut(Protocol):
    """Where a RESPONSE_STREAM URL's answer goes as the function writes it (the HTTP layer)."""

    async def start(self, status: int, headers: Headers) -> None: ...

    async def write(self, chunk: bytes) -> None: ...

    async def end(self) -> None:
        """The response is complete (a function failing mid-stream ends it where it
        failed; its error is in the function's log)."""
        ...


class _UrlStream:
    """A ``ResponseStream`` queueing the function's prelude and chunks for the pump."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bool, bytes] | None] = asyncio.Queue()

    def begin(self, executed_version: str) -> None:
        pass

    def prelude(self, data: bytes) -> None:
        self.queue.put_nowait((True, data))

    def chunk(self, data: bytes) -> None:
        self.queue.put_nowait((False, data))


_STREAM_TYPE = b"application/octet-stream"


def stream_head(prelude: bytes | None) -> tuple[int, Headers]:
    """Status and headers of a streamed URL response from the function's prelude
    (``HttpResponseStream.from``): 200, ``application/octet-stream`` without one.
    Raises ValueError for a malformed prelude."""
    if prelude is None:
        return 200, [(b"content-type", _STREAM_TYPE)]
    try:
        value = orjson.loads(prelude)
        if not isinstance(value, dict):
            raise TypeError(value)
        return _head({"statusCode": 200, **value}, _STREAM_TYPE)
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        raise ValueError("malformed prelude") from None


async def _start(out: StreamOut, prelude: bytes | None, extra: Headers) -> bool:
    """Start the streamed response; False (after a 502) when the prelude is malformed."""
    try:
        status, headers = stream_head(prelude)
    except ValueError:
        await out.start(_BAD_GATEWAY.status, [*_BAD_GATEWAY.headers, *extra])
        await out.write(_BAD_GATEWAY.body)
        await out.end()
        return False
    await out.start(status, _with_cors(UrlResponse(status, headers, b""), extra).headers)
    return True


async def _drain(stream: _UrlStream, task: asyncio.Future[InvokeResult]) -> None:
    """Let the invocation finish, dropping what it writes (nobody reads it)."""
    while await stream.queue.get() is not None:
        pass
    with contextlib.suppress(EmberError):
        task.result()


def _refusal(exc: EmberError, key: str) -> UrlResponse:
    """Lambda's answer to a URL request refused before the function ran."""
    if isinstance(exc, TooManyRequests):
        retry = str(max(1, math.ceil(exc.retry_after_seconds))).encode()
        return _message(429, "Rate Exceeded.", [(b"retry-after", retry)])
    if isinstance(exc, RequestTooLarge):
        return _message(413, "Request Entity Too Large")
    if isinstance(exc, ResourceNotFound):
        return _message(404, f"No function URL is configured at /url/{key}/")
    return _message(500, "Internal Server Error")


# --- the service ------------------------------------------------------------------


class UrlInvoker:
    """Serves function URL requests through the invocation service."""

    def __init__(
        self,
        urls: FunctionUrls,
        invoke: Invoke,
        clock: Clock = _utcnow,
        *,
        verify: Verify | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        """``verify`` and ``authorizer`` admit AWS_IAM URLs' callers; without them
        every AWS_IAM URL refuses (never open by omission)."""
        self._urls = urls
        self._invoke = invoke
        self._clock = clock
        self._verify = verify
        self._authorizer = authorizer

    def config_of(self, key: str) -> UrlConfig | None:
        name, _, qualifier = key.partition(":")
        return self._urls.get(name, qualifier or None)

    async def handle(self, request: UrlRequest, out: StreamOut | None = None) -> UrlResponse | None:
        """Answer one request; never raises for the caller's or the function's faults.

        With ``out``, a RESPONSE_STREAM URL's answer goes there as the function
        writes it, and None is returned; anything answered whole (a refusal, a
        function that did not stream) is returned as usual.
        """
        request_id = new_request_id()
        response = await self._answer(request, request_id, out)
        if response is None:
            return None
        return response._replace(
            headers=[*response.headers, (b"x-amzn-requestid", request_id.encode())]
        )

    async def _answer(
        self, request: UrlRequest, request_id: str, out: StreamOut | None
    ) -> UrlResponse | None:
        config = self.config_of(request.key)
        if config is None:
            return _message(404, f"No function URL is configured at /url/{request.key}/")
        preflight = request.method == "OPTIONS" and config.cors is not None
        if preflight and _header(request, b"access-control-request-method") is not None:
            return UrlResponse(200, cors_headers(config, request, preflight=True), b"")
        caller = None
        if config.auth_type == "AWS_IAM":
            caller = await self._admitted(config, request)
            if caller is None:
                return _message(403, "Forbidden")
        owner = self._urls.arns.owner(config.function)[0]
        event = build_event(request, owner, request_id, self._clock(), caller)
        amzn_trace, traceparent = tracing.headers_of(request.headers)
        command = InvokeCommand(
            amzn_trace_id=amzn_trace,
            traceparent=traceparent,
            function=config.function,
            payload=orjson.dumps(event),
            qualifier=config.qualifier,
            request_id=request_id,
            caller=request.source_ip,
            origin="url",
        )
        cors = cors_headers(config, request, preflight=False)
        if out is not None and config.invoke_mode == "RESPONSE_STREAM":
            return await self._stream(command, request, out, cors, request_id)
        try:
            result = await self._invoke(command)
        except EmberError as exc:
            return _refusal(exc, request.key)
        return _with_cors(map_result(result), cors)

    async def _stream(
        self,
        command: InvokeCommand,
        request: UrlRequest,
        out: StreamOut,
        cors: Headers,
        request_id: str,
    ) -> UrlResponse | None:
        """Pump a RESPONSE_STREAM answer to ``out`` as it comes; the response starts at
        the function's first write (its prelude, if any, gives status and headers)."""
        extra = [*cors, (b"x-amzn-requestid", request_id.encode())]
        stream = _UrlStream()
        task = asyncio.ensure_future(self._invoke(command._replace(stream=stream)))
        task.add_done_callback(lambda _: stream.queue.put_nowait(None))
        prelude: bytes | None = None
        started = False
        while (item := await stream.queue.get()) is not None:
            is_prelude, data = item
            if is_prelude:
                prelude = data
                continue
            if not started:
                if not await _start(out, prelude, extra):
                    await _drain(stream, task)
                    return None
                started = True
            await out.write(data)
        try:
            result = task.result()
        except EmberError as exc:
            return _refusal(exc, request.key) if not started else None
        if not started:
            if result.function_error or result.body:  # failed, or did not stream
                return _with_cors(map_result(result), cors)
            if not await _start(out, prelude, extra):
                return None
        await out.end()
        return None

    async def _admitted(self, config: UrlConfig, request: UrlRequest) -> Principal | None:
        """The signer of ``request`` if it may invoke ``config``'s function by URL."""
        if self._verify is None or self._authorizer is None:
            return None
        signed = HttpRequest(
            request.method, request.raw_path, request.query, request.headers, request.body
        )
        account = self._urls.arns.owner(config.function)[0]
        access = Access(
            INVOKE_URL, self._urls.arns.function(config.function, config.qualifier), account, False
        )
        try:
            principal = self._verify(signed)
            await self._authorizer.authorize(principal, access, {_AUTH_TYPE_KEY: "AWS_IAM"})
        except AuthError as refused:
            # Lambda tells the caller only "Forbidden"; the operator may want why.
            log.info("function URL %s refused: %s", request.key, refused.message)
            return None
        return principal

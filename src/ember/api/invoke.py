"""The Invoke route, kept lean: raw ASGI, no framework on the hot path.

``POST /2015-03-31/functions/{FunctionName}/invocations`` is the one route
that runs per invocation; Starlette's request objects and routing cost more
than the whole platform's own work here (DESIGN.md §6), so this module
parses the request by hand: a dictionary lookup of four headers, one
bounded body read, one response. InvokeWithResponseStream
(``handle_stream``) parses the same way; its answer is an event stream
written as the function writes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from ember.api import errors as http_errors
from ember.api import eventstream
from ember.api.bodies import read_body, send_answer
from ember.api.names import caller_account
from ember.auth.base import PRINCIPAL_SCOPE_KEY, VERIFIED_SCOPE_KEY
from ember.auth.principals import Principal
from ember.control.arns import KEY_SEPARATOR, parse_client
from ember.errors import EmberError, PlatformError, RequestTooLarge
from ember.invoke.service import MAX_REQUEST, InvokeCommand, InvokeResult, new_request_id
from ember.throttle.base import Decision

PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"
# InvokeWithResponseStream
STREAM_PREFIX = "/2021-11-15/functions/"
STREAM_SUFFIX = "/response-streaming-invocations"
_JSON = (b"content-type", b"application/json")

log = logging.getLogger("ember.api")

Scope = dict[str, Any]


def too_large() -> RequestTooLarge:
    return RequestTooLarge(
        f"Request must be smaller than {MAX_REQUEST} bytes for the InvokeFunction operation"
    )


def _command(
    scope: Scope,
    headers: dict[bytes, bytes],
    body: bytes,
    request_id: str,
    prefix: str = PREFIX,
    suffix: str = SUFFIX,
) -> InvokeCommand:
    path: str = scope["path"]
    qualifier = None
    if scope["query_string"]:
        values = parse_qs(scope["query_string"].decode()).get("Qualifier")
        qualifier = values[0] if values else None
    context = headers.get(b"x-amz-client-context")
    amzn_trace = headers.get(b"x-amzn-trace-id")
    traceparent = headers.get(b"traceparent")
    raw = path[len(prefix) : -len(suffix)]
    name = unquote(raw) if "%" in raw else raw
    if KEY_SEPARATOR in name:
        parse_client(name)  # refuses the spelling of a storage key, as Lambda would
    return InvokeCommand(
        caller=_caller(scope),
        function=name,
        account=caller_account(scope),
        payload=body,
        qualifier=qualifier,
        invocation_type=headers.get(b"x-amz-invocation-type", b"RequestResponse").decode(),
        log_tail=headers.get(b"x-amz-log-type", b"None") == b"Tail",
        client_context=context.decode() if context else None,
        request_id=request_id,
        amzn_trace_id=amzn_trace.decode("latin-1") if amzn_trace else None,
        traceparent=traceparent.decode("latin-1") if traceparent else None,
    )


def _caller(scope: Scope) -> str:
    """Who calls, for per-caller rate limits: the verified principal, else the address.

    Never a claimed identity: an unverified access key id would let a caller
    spend someone else's budget, or escape its own by inventing new ids; and
    with ``--auth none`` everyone is the default root, so the root is no key
    either. The address is the connection's, or the client a trusted proxy
    (``--trusted-proxy``) names in ``X-Forwarded-For``: uvicorn's proxy-headers
    middleware has already put it in ``scope["client"]``.
    """
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if scope.get(VERIFIED_SCOPE_KEY) and isinstance(principal, Principal):
        return principal.arn
    client = scope.get("client")
    return str(client[0]) if client else ""


def _response_headers(result: InvokeResult) -> list[tuple[bytes, bytes]]:
    headers = [
        _JSON,
        (b"x-amzn-requestid", result.request_id.encode()),
        (b"x-amz-executed-version", result.executed_version.encode()),
    ]
    if result.function_error:
        headers.append((b"x-amz-function-error", result.function_error.encode()))
    if result.log_result:
        headers.append((b"x-amz-log-result", result.log_result.encode()))
    if result.rate_limit is not None:
        headers += _rate_limit_headers(result.rate_limit)
    return headers


def _rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    """IETF RateLimit fields of the tightest policy; Reset in whole seconds."""
    return [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(math.ceil(decision.reset_after)).encode()),
    ]


def _internal(exc: Exception, request_id: str) -> PlatformError:
    """A bug, not a refusal: logged with its traceback, answered as ServiceException."""
    log.error("Invoke %s failed unexpectedly", request_id, exc_info=exc)
    return PlatformError(f"Internal error while invoking the function (request {request_id}).")


async def answer(invoke: Any, scope: Scope, body: bytes, request_id: str) -> http_errors.Answer:
    """Invoke for a request whose body is read: the whole response."""
    try:
        result = await invoke(_command(scope, dict(scope["headers"]), body, request_id))
    except Exception as exc:
        # Rendered by a helper so that no local of this frame outlives the except
        # block holding the error: its traceback holds this frame, and that cycle
        # would leave every refusal's frames to the cyclic collector (see _rendered).
        return _rendered(exc, request_id)
    response_headers = _response_headers(result)
    response_headers.append(_content_length(result.body))
    return result.status, response_headers, result.body


def _rendered(exc: Exception, request_id: str) -> http_errors.Answer:
    """``exc`` as a whole response.

    ``exc`` carries a traceback that references the caller's frame; a local of
    that frame referencing ``exc`` would make a reference cycle, freed only by
    the cyclic GC. Under overload every 429 made one: ~27 objects left per
    refusal, a gen-0 collection every ~26 refusals.
    """
    error = exc if isinstance(exc, EmberError) else _internal(exc, request_id)
    return http_errors.answer(error, request_id)


def _content_length(body: bytes) -> tuple[bytes, bytes]:
    # Declared, the body goes out as is; otherwise uvicorn frames it chunked.
    return (b"content-length", b"%d" % len(body))


class _EventStream:
    """A ``ResponseStream`` that queues the function's chunks for the response."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.version = ""

    def begin(self, executed_version: str) -> None:
        self.version = executed_version

    def prelude(self, data: bytes) -> None:
        # Passed on as Lambda's bytes: the prelude, then its 8 NUL delimiter.
        self.queue.put_nowait(data + b"\0" * 8)

    def chunk(self, data: bytes) -> None:
        self.queue.put_nowait(data)


async def handle_stream(invoke: Any, scope: Scope, receive: Any, send: Any) -> None:
    """Serve one InvokeWithResponseStream call: PayloadChunk events as the function
    writes, then InvokeComplete. Refusals before the first byte are ordinary errors.

    A client that goes away mid-stream is not the function's concern: the call
    runs on to its end (uvicorn drops what is sent to a closed connection).
    """
    request_id = new_request_id()
    headers = dict(scope["headers"])
    stream = _EventStream()
    try:
        body = await read_body(scope, receive, MAX_REQUEST, too_large)
        command = _command(scope, headers, body, request_id, STREAM_PREFIX, STREAM_SUFFIX)
    except Exception as exc:
        await _send_error(send, exc, request_id)
        return
    task = asyncio.ensure_future(invoke(command._replace(stream=stream)))
    task.add_done_callback(lambda _: stream.queue.put_nowait(None))
    started = await _pump(stream, send, request_id)
    try:
        result: InvokeResult = task.result()
    except Exception as exc:
        if started:
            await send({"type": "http.response.body", "body": _failed(exc, request_id)})
        else:
            await _send_error(send, exc, request_id)
        return
    if result.status != 200:  # DryRun: 204, no stream
        empty = [(b"x-amzn-requestid", request_id.encode()), _content_length(b"")]
        await send({"type": "http.response.start", "status": result.status, "headers": empty})
        await send({"type": "http.response.body", "body": b""})
        return
    if not started:
        await _start_stream(send, request_id, result.executed_version)
    await send({"type": "http.response.body", "body": _ending(result)})


async def _pump(stream: _EventStream, send: Any, request_id: str) -> bool:
    """Send each chunk as a PayloadChunk until the call ends; whether the response started."""
    started = False
    while (chunk := await stream.queue.get()) is not None:
        if not started:
            await _start_stream(send, request_id, stream.version)
            started = True
        message = eventstream.payload_chunk(chunk)
        await send({"type": "http.response.body", "body": message, "more_body": True})
    return started


def _failed(exc: Exception, request_id: str) -> bytes:
    """InvokeComplete for a platform failure after the stream started (too late for a status)."""
    error = exc if isinstance(exc, EmberError) else _internal(exc, request_id)
    return eventstream.invoke_complete({"ErrorCode": error.code, "ErrorDetails": error.message})


def _ending(result: InvokeResult) -> bytes:
    """What follows the streamed chunks: a buffered result as one PayloadChunk, then
    InvokeComplete (with the function's error type and message, and the log tail)."""
    complete: dict[str, str] = {}
    head = b""
    if result.function_error:
        complete.update(_error_fields(result.body))
    elif result.body:
        head = eventstream.payload_chunk(result.body)
    if result.log_result:
        complete["LogResult"] = result.log_result
    return head + eventstream.invoke_complete(complete)


def _error_fields(body: bytes) -> dict[str, str]:
    try:
        error = orjson.loads(body)
        return {"ErrorCode": str(error["errorType"]), "ErrorDetails": str(error["errorMessage"])}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return {"ErrorCode": "Unhandled", "ErrorDetails": body.decode("utf-8", "replace")}


async def _start_stream(send: Any, request_id: str, version: str) -> None:
    headers = [
        (b"content-type", b"application/vnd.amazon.eventstream"),
        (b"x-amzn-requestid", request_id.encode()),
        (b"x-amz-executed-version", version.encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _send_error(send: Any, exc: Exception, request_id: str) -> None:
    await send_answer(send, _rendered(exc, request_id))

"""Synchronous invocation: resolve, validate, lease a sandbox, invoke, log.

Callers (the REST API, the CLI through it, later MCP and pollers) build an
``InvokeCommand``; nothing here knows about HTTP.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import random
import time
from collections.abc import Iterator
from typing import NamedTuple, Protocol

import orjson

from ember.control import arns
from ember.control.models import FunctionRecord
from ember.control.registry import FunctionRegistry
from ember.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    TooManyRequests,
)
from ember.errors import ValidationError as LambdaValidationError
from ember.invoke import tracing
from ember.invoke.logs import TEXT, InvocationLog, LogFormat, LogStore, error_line, json_error_line
from ember.observe.recorder import Recorder
from ember.observe.records import Call
from ember.queue.base import EventQueue, NewEvent
from ember.sandbox.base import InitFailed, Outcome, ResponseSink, SandboxRequest
from ember.scheduling.executor import Executor
from ember.throttle.base import Decision
from ember.throttle.gate import Throttle

MAX_REQUEST = 6 * 1024 * 1024  # 6,291,456 bytes
MAX_ASYNC_REQUEST = 1024 * 1024  # Event invokes: 1 MB (Lambda since October 2025)
MAX_RESPONSE = MAX_REQUEST + 100  # Lambda's runtime allows 100 bytes more
MAX_CLIENT_CONTEXT = 3583
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
_TOO_LARGE = (
    b'{"errorMessage":"Response payload size exceeded maximum allowed payload size '
    b'(6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}'
)


class ResponseStream(ResponseSink, Protocol):
    """Where a streamed response goes as the function writes it (InvokeWithResponseStream,
    RESPONSE_STREAM URLs). Called on the event loop; must not block."""

    def begin(self, executed_version: str) -> None:
        """The function was resolved and admitted; nothing was written yet."""
        ...


class InvokeCommand(NamedTuple):
    function: str  # name, ARN, partial ARN or name:qualifier
    payload: bytes
    qualifier: str | None = None
    invocation_type: str = "RequestResponse"
    log_tail: bool = False
    client_context: str | None = None  # base64 JSON, as sent by the client
    request_id: str | None = None  # None: a new one is made
    caller: str = ""  # the principal's ARN, else the source address (rate limits)
    # The caller's account: a bare or partial name is its function (None: the default's).
    account: str | None = None
    # The caller's trace headers, as sent (kept when well formed: ``tracing``).
    amzn_trace_id: str | None = None
    traceparent: str | None = None
    # Where the call came from, for the invocation history (observe.records.ORIGINS).
    origin: str = "sync"
    # Set: the response streams there as written (the result's body is then
    # empty); a function that does not stream answers in the body as usual.
    stream: ResponseStream | None = None


class InvokeResult(NamedTuple):
    status: int  # 200 or 204
    body: bytes
    request_id: str
    executed_version: str
    function_error: str | None = None  # "Unhandled" when the function failed
    log_result: str | None = None  # base64 tail, when asked for
    rate_limit: Decision | None = None  # the tightest rate-limit policy (RateLimit-* headers)


def _request_ids() -> Iterator[str]:
    """Request ids in Lambda's shape (a version 4 UUID string), unique per server.

    A random prefix per process plus a counter: ids identify, they protect
    nothing, and ``str(uuid.uuid4())`` costs ten times more on every request.
    """
    h = f"{random.SystemRandom().getrandbits(76):019x}"
    prefix = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"
    for counter in itertools.count():
        yield f"{prefix}{counter & 0xFFFFFFFFFFFF:012x}"


new_request_id = _request_ids().__next__


def _check_payload(payload: bytes) -> bytes:
    if len(payload) > MAX_REQUEST:
        raise RequestTooLarge(
            f"Request must be smaller than {MAX_REQUEST} bytes for the InvokeFunction operation"
        )
    if not payload.strip():
        return b"{}"
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestContent(
            f"Could not parse request body into json: Could not parse payload into json: {exc}"
        ) from None
    return payload


def _decode_client_context(encoded: str | None) -> str:
    if not encoded:
        return ""
    try:
        decoded = base64.b64decode(encoded, validate=True)
        if len(decoded) > MAX_CLIENT_CONTEXT:
            raise ValueError("too long")
        if not isinstance(orjson.loads(decoded), dict):
            raise ValueError("not an object")
        return decoded.decode()
    except (binascii.Error, ValueError):
        raise InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object."
        ) from None


class InvocationService:
    def __init__(
        self,
        registry: FunctionRegistry,
        executor: Executor,
        logs: LogStore,
        names: arns.Arns,
        throttle: Throttle,
        events: EventQueue | None = None,
        max_async_payload: int = MAX_ASYNC_REQUEST,
        recorder: Recorder | None = None,
    ) -> None:
        self._registry = registry
        self._executor = executor
        self._logs = logs
        self._arns = names
        self._throttle = throttle
        self._events = events  # None: Event invokes are refused
        self._max_async_payload = max_async_payload
        self._recorder = recorder  # None: nothing is observed

    async def invoke(self, command: InvokeCommand) -> InvokeResult:
        started = time.perf_counter()  # the frontend's part of the call begins (tracing)
        request_id = command.request_id or new_request_id()
        ref = arns.parse(command.function, command.qualifier)
        record = self._registry.get(self._arns.resolve(ref, command.account), ref.qualifier)
        payload = _check_payload(command.payload)
        client_context = (
            _decode_client_context(command.client_context) if command.client_context else ""
        )
        if command.invocation_type != "RequestResponse":
            if command.stream is not None and command.invocation_type == "Event":
                raise LambdaValidationError.constraint(
                    command.invocation_type,
                    "invocationType",
                    "Member must satisfy enum value set: [RequestResponse, DryRun]",
                )
            if command.invocation_type == "Event" and self._events is not None:
                return await self._enqueue(self._events, record.name, ref, payload, request_id)
            return _other_invocation_type(command.invocation_type, request_id)
        # Rate limits, then a concurrency lease (raises TooManyRequests, which the
        # async pollers treat as a throttle); the lease is given back whatever happens.
        throttle, recorder = self._throttle, self._recorder
        try:
            admission = await throttle.admit(
                record.name, command.caller, request_id, record.timeout
            )
        except TooManyRequests as refused:
            if recorder is not None:
                recorder.throttled(record.name, refused.reason)
            raise
        concurrent = recorder.enter(record.name) if recorder is not None else 0
        try:
            result = await self._run(
                command,
                record,
                request_id,
                payload,
                client_context,
                ref.qualifier,
                (started, concurrent),
            )
        finally:
            if recorder is not None:
                recorder.leave(record.name)
            await throttle.release(admission)
        if admission.decision is not None:
            return result._replace(rate_limit=admission.decision)
        return result

    async def _enqueue(
        self, events: EventQueue, key: str, ref: arns.FunctionRef, payload: bytes, request_id: str
    ) -> InvokeResult:
        """Event: accept durably and answer 202; pollers run it with this request id.

        A qualified call is queued as ``name:qualifier``: each attempt resolves the
        version (an alias picks again) when it runs.
        """
        if len(payload) > self._max_async_payload:
            raise RequestTooLarge(
                f"Request must be smaller than {self._max_async_payload} bytes for the "
                "InvokeFunction operation"
            )
        qualifier = ref.qualifier
        target = key if qualifier is None or qualifier == arns.LATEST else f"{key}:{qualifier}"
        await events.enqueue((NewEvent(target, request_id, payload),))
        if self._recorder is not None:
            self._recorder.received(key)
        return InvokeResult(202, b"", request_id, arns.LATEST)

    async def _run(
        self,
        command: InvokeCommand,
        record: FunctionRecord,
        request_id: str,
        payload: bytes,
        client_context: str,
        qualifier: str | None,
        observed: tuple[float, int] = (0.0, 0),
    ) -> InvokeResult:
        """Run it in a sandbox, log: the part that runs under a throttle lease.

        ``observed``: when the service took the call, and how many of the function's
        calls run with it (for the recorder)."""
        invoked_arn = self._arns.function(record.name, qualifier)
        started = time.perf_counter()
        log_format = _log_format(record)
        stream = self._logs.stream(record.name, request_id, record.version, b"", log_format)
        request = SandboxRequest(
            request_id=request_id,
            deadline_ms=int(time.time() * 1000) + record.timeout * 1000,
            invoked_arn=invoked_arn,
            client_context=client_context,
            identity="",
            trace_id=tracing.trace_id(
                command.amzn_trace_id, command.traceparent, record.tracing_mode == "Active"
            ),
            payload=payload,
            timeout_seconds=float(record.timeout),
            output=stream,
            stream=command.stream,
        )
        if command.stream is not None:
            command.stream.begin(record.version)
        try:
            execution = await self._executor.execute(record, request, stream.begin)
        except InitFailed as failure:
            return self._init_failed(command, record, request_id, failure, started, qualifier)
        except TooManyRequests as refused:  # no worker has room
            if self._recorder is not None:
                self._recorder.throttled(record.name, refused.reason)
            raise
        finished = time.perf_counter()
        result = execution.result
        body = result.body
        failed = result.outcome is Outcome.FUNCTION_ERROR
        if len(body) > MAX_RESPONSE:
            body, failed = _TOO_LARGE, True
        if self._recorder is not None:
            self._recorder.call(
                Call(
                    record.name,
                    qualifier or arns.LATEST,
                    record.version,
                    request_id,
                    command.origin,
                    request.trace_id,
                    observed[0] or started,
                    started,
                    finished - execution.duration_ms / 1000,
                    finished,
                    # A cold start's start-up: Init, or the restore from a template.
                    execution.init_ms if execution.restore_ms is None else execution.restore_ms,
                    body if failed else None,
                    record.memory_size,
                    result.max_rss_kb // 1024,
                    execution.sandbox_id,
                    observed[1],
                    bool(command.amzn_trace_id or command.traceparent),
                )
            )
        entry = InvocationLog(
            function=record.name,
            request_id=request_id,
            version=record.version,
            output=execution.init_log + result.log,
            error_line=_error_line(request_id, body, log_format) if failed else b"",
            duration_ms=execution.duration_ms,
            memory_mb=record.memory_size,
            max_memory_mb=result.max_rss_kb // 1024,
            init_ms=execution.init_ms,
            streamed=stream.end(),
            restore_ms=execution.restore_ms,
            log_format=log_format,
            status=_status(body) if failed else "success",
        )
        self._logs.record(entry)
        return InvokeResult(
            200,
            body,
            request_id,
            record.version,
            function_error="Unhandled" if failed else None,
            log_result=entry.tail() if command.log_tail else None,
        )

    def _init_failed(
        self,
        command: InvokeCommand,
        record: FunctionRecord,
        request_id: str,
        failure: InitFailed,
        started: float,
        qualifier: str | None = None,
    ) -> InvokeResult:
        entry = InvocationLog(
            function=record.name,
            request_id=request_id,
            version=record.version,
            output=failure.log,
            error_line=_error_line(request_id, failure.payload, _log_format(record)),
            duration_ms=(time.perf_counter() - started) * 1000,
            memory_mb=record.memory_size,
            max_memory_mb=0,
            init_ms=failure.init_ms,
            log_format=_log_format(record),
            status=_status(failure.payload),
        )
        self._logs.record(entry)
        if self._recorder is not None:
            ended = time.perf_counter()
            self._recorder.call(
                Call(
                    record.name,
                    qualifier or arns.LATEST,
                    record.version,
                    request_id,
                    command.origin,
                    "",
                    started,
                    started,
                    ended,
                    ended,
                    failure.init_ms,
                    failure.payload,
                    record.memory_size,
                    0,
                    "",
                    0,
                )
            )
        return InvokeResult(
            200,
            failure.payload,
            request_id,
            record.version,
            function_error="Unhandled",
            log_result=entry.tail() if command.log_tail else None,
        )


def _other_invocation_type(invocation_type: str, request_id: str) -> InvokeResult:
    if invocation_type == "DryRun":
        return InvokeResult(204, b"", request_id, arns.LATEST)
    if invocation_type == "Event":
        raise InvalidParameterValue(
            "InvocationType Event (asynchronous invocation) is not available on this "
            "ember server yet; invoke with RequestResponse."
        )
    raise LambdaValidationError.constraint(
        invocation_type,
        "invocationType",
        "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
    )


def _log_format(record: FunctionRecord) -> LogFormat:
    if record.log_format != "JSON":
        return TEXT
    return LogFormat(json=True, system_level=record.system_log_level or "INFO")


def _status(body: bytes) -> str:
    """JSON platform.report's status of a failed call: timeout or error."""
    return "timeout" if b'"Sandbox.Timedout"' in body else "error"


def _error_line(request_id: str, body: bytes, log_format: LogFormat = TEXT) -> bytes:
    try:
        error = orjson.loads(body)
        if log_format.json:
            return json_error_line({**error, "requestId": error.get("requestId") or request_id})
        return error_line(request_id, str(error["errorType"]), str(error["errorMessage"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return b""

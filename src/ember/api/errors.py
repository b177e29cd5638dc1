"""The one place where errors become HTTP responses, in AWS's exact shape.

botocore reads the error code from ``x-amzn-ErrorType`` and the message from
``message`` or ``Message`` in the JSON body; AWS spells it ``Message`` for
ResourceNotFoundException and ServiceException and ``message`` elsewhere.
"""

from __future__ import annotations

import functools
import math

import orjson

from ember import errors

STATUS: dict[type[errors.EmberError], int] = {
    errors.ResourceNotFound: 404,
    errors.ResourceConflict: 409,
    errors.ResourceInUse: 400,
    errors.InvalidParameterValue: 400,
    errors.ValidationError: 400,
    errors.RequestTooLarge: 413,
    errors.MisdirectedRequest: 421,
    errors.HeadersTooLarge: 431,
    errors.RequestTimeout: 408,
    errors.InvalidRequestContent: 400,
    errors.PreconditionFailed: 412,
    errors.CodeStorageExceeded: 400,
    errors.TooManyRequests: 429,
    errors.AuthError: 403,
    errors.SandboxUnavailable: 503,
    errors.StorageUnavailable: 503,
    errors.ThrottleUnavailable: 503,
    errors.BrokerUnavailable: 503,
    errors.PlatformError: 500,
}
_CAPITAL_MESSAGE = ("ResourceNotFoundException", "ServiceException")

Headers = list[tuple[bytes, bytes]]
# A whole response: status, headers (Content-Length among them), body.
Answer = tuple[int, Headers, bytes]


def status_of(error: errors.EmberError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def render(error: errors.EmberError, request_id: str) -> tuple[int, Headers, bytes]:
    """(status, headers, body) for ``error``."""
    if type(error) is errors.TooManyRequests:
        return _too_many(error, request_id)
    status = status_of(error)
    body: dict[str, object] = {}
    if error.code != "ValidationException":
        body["Type"] = "Service" if status >= 500 else "User"
    body["Message" if error.code in _CAPITAL_MESSAGE else "message"] = error.message
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-requestid", request_id.encode()),
        (b"x-amzn-errortype", error.code.encode()),
    ]
    if isinstance(error, errors.TooManyRequests):
        body["Reason"] = error.reason
        retry = str(max(1, math.ceil(error.retry_after_seconds))).encode()
        headers.append((b"retry-after", retry))
    return status, headers, orjson.dumps(body)


def answer(error: errors.EmberError, request_id: str) -> Answer:
    """``render`` with its Content-Length; a body too large also closes the connection:
    the rest of it is not worth reading (uvicorn would drain it for keep-alive)."""
    status, headers, body = render(error, request_id)
    headers.append((b"content-length", b"%d" % len(body)))
    if isinstance(error, errors.RequestTooLarge):
        headers.append((b"connection", b"close"))
    return status, headers, body


def _too_many(error: errors.TooManyRequests, request_id: str) -> tuple[int, Headers, bytes]:
    """``render`` of a throttle: under overload every refusal takes this path, so the
    body and the constant headers are encoded once per (message, reason, Retry-After)."""
    retry = max(1, math.ceil(error.retry_after_seconds))
    body, code, retry_header = _too_many_parts(error.message, error.reason, retry)
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-requestid", request_id.encode()),
        code,
        retry_header,
    ]
    return 429, headers, body


@functools.lru_cache(maxsize=256)
def _too_many_parts(
    message: str, reason: str, retry: int
) -> tuple[bytes, tuple[bytes, bytes], tuple[bytes, bytes]]:
    body = orjson.dumps({"Type": "User", "message": message, "Reason": reason})
    code = (b"x-amzn-errortype", errors.TooManyRequests.code.encode())
    return body, code, (b"retry-after", str(retry).encode())


def unknown_operation(method: str, path: str, request_id: str) -> tuple[int, Headers, bytes]:
    body = orjson.dumps({"Type": "User", "message": f"No such operation: {method} {path}"})
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-requestid", request_id.encode()),
        (b"x-amzn-errortype", b"UnknownOperationException"),
    ]
    return 404, headers, body

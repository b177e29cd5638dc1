"""Lambda's invocation record: what an OnSuccess / OnFailure destination receives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from ember.queue.base import Message
from ember.queue.retry import Attempt

VERSION = "1.0"


def _json_or_text(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", errors="replace")


def timestamp(epoch: float) -> str:
    """``2026-11-28T13:07:49.123Z``, as Lambda writes record timestamps."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def invocation_record(
    message: Message,
    function_arn: str,
    condition: str,
    invoke_count: int,
    attempt: Attempt | None,
    now: float,
) -> bytes:
    """The record for ``message``; ``attempt`` is the last invocation, None if none ran."""
    record: dict[str, Any] = {
        "version": VERSION,
        "timestamp": timestamp(now),
        "requestContext": {
            "requestId": message.request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _json_or_text(message.payload),
    }
    if attempt is not None and (attempt.function_error or condition == "Success"):
        context: dict[str, Any] = {
            "statusCode": attempt.status_code,
            "executedVersion": attempt.executed_version,
        }
        if attempt.function_error:
            context["functionError"] = attempt.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(attempt.payload)
    return orjson.dumps(record)


def error_of(attempt: Attempt | None) -> tuple[str, str]:
    """(errorType, errorMessage) of a failed attempt, for a dead letter."""
    if attempt is None:
        return "", ""
    if attempt.function_error:
        document = _json_or_text(attempt.payload)
        if isinstance(document, dict):
            return str(document.get("errorType", "")), str(document.get("errorMessage", ""))
        return "Unhandled", str(document or "")
    return attempt.error_type, attempt.error_message

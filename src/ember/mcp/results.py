"""Tool arguments and tool results: what a model sees of one invocation.

Pure functions over JSON: no platform imports, so every MCP entry point shares
them. Following the MCP spec, a bad argument and a failed function are tool
results with ``isError: true`` (the model can read them and try again); only a
malformed request (an unknown tool, a bad cursor) is a JSON-RPC error.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
from collections.abc import Mapping
from typing import Any

import jsonschema
import mcp_types as types
import orjson

MAX_ERRORS = 5


def validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A compiled checker for ``schema`` (build once per tool, use per call)."""
    return jsonschema.Draft202012Validator(schema)


def argument_errors(
    check: jsonschema.protocols.Validator, arguments: Mapping[str, Any]
) -> str | None:
    """A message naming every way (up to a few) ``arguments`` break the schema; None if valid."""
    if check.is_valid(arguments):
        return None
    errors = sorted(check.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    lines = []
    for error in errors[:MAX_ERRORS]:
        where = "/".join(str(part) for part in error.absolute_path)
        lines.append(f"- {'arguments.' + where if where else 'arguments'}: {error.message}")
    more = f"\n(and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
    return "Invalid arguments for this tool:\n" + "\n".join(lines) + more


def error_result(text: str, details: dict[str, Any] | None = None) -> types.CallToolResult:
    """A tool result a model reads as a failure."""
    content: list[types.ContentBlock] = [types.TextContent(type="text", text=text)]
    return types.CallToolResult.model_validate(
        {"content": content, "isError": True, "_meta": details}
    )


def invalid_arguments(message: str) -> types.CallToolResult:
    return error_result(message, {"errorType": "InvalidArguments"})


def function_result(body: bytes, failed: bool) -> types.CallToolResult:
    """The tool result of an invocation that ran: its response, or its error document.

    An object becomes ``structuredContent`` plus the same JSON as text (for
    clients that read only text); a string becomes a text block as is; any
    other JSON value becomes its JSON text.
    """
    try:
        value: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        value = body.decode("utf-8", "replace")
    if failed:
        return _function_error(value)
    if isinstance(value, str):
        return types.CallToolResult(content=[_text(value)])
    return types.CallToolResult(
        content=[_text(orjson.dumps(value).decode())],
        structured_content=value if isinstance(value, dict) else None,
    )


def _text(text: str) -> types.ContentBlock:
    return types.TextContent(type="text", text=text)


def _function_error(value: Any) -> types.CallToolResult:
    """Lambda's error document ({errorType, errorMessage}) in words a model can act on."""
    if isinstance(value, dict) and "errorMessage" in value:
        kind = str(value.get("errorType") or "Error")
        message = str(value["errorMessage"])
        hint = ""
        if "timed out" in message:
            hint = "\nThe function ran out of time; retrying with smaller input may help."
        return error_result(
            f"The function failed: {kind}: {message}{hint}",
            {"errorType": kind, "errorMessage": message},
        )
    return error_result(f"The function failed: {value}", {"errorType": "Unhandled"})


def throttled(message: str, reason: str, retry_after_seconds: float) -> types.CallToolResult:
    """A call refused by a rate limit or concurrency limit: when to try again."""
    seconds = max(1, math.ceil(retry_after_seconds))
    return error_result(
        f"The call was throttled ({reason}): {message} Retry after {seconds} s.",
        {"errorType": "TooManyRequestsException", "reason": reason, "retryAfterSeconds": seconds},
    )


def refused(code: str, message: str) -> types.CallToolResult:
    """Any other refusal of the invocation (the function vanished, a platform fault)."""
    return error_result(f"The call failed: {code}: {message}", {"errorType": code})


# --- opaque cursors ------------------------------------------------------------


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(b"t:" + after.encode()).decode()


def decode_cursor(cursor: str) -> str | None:
    """The tool name a cursor continues after; None when it is not one of ours."""
    if cursor == "":
        return ""
    with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        if raw.startswith("t:"):
            return raw[2:]
    return None

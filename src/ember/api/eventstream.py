"""The ``application/vnd.amazon.eventstream`` encoding, for InvokeWithResponseStream.

Each message: a prelude (total length, headers length, CRC32 of those 8
bytes), headers (name length, name, type 7 = string, value length, value),
the payload, then the CRC32 of everything before. botocore's
``botocore.eventstream`` decodes it; this is the encoder.
"""

from __future__ import annotations

import binascii
import struct

import orjson

_PRELUDE = struct.Struct("!II")
_CRC = struct.Struct("!I")
_STRING = 7


def _headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    parts = []
    for name, value in headers:
        raw_name = name.encode()
        raw_value = value.encode()
        parts.append(
            struct.pack("!B", len(raw_name))
            + raw_name
            + struct.pack("!BH", _STRING, len(raw_value))
            + raw_value
        )
    return b"".join(parts)


def message(headers: tuple[tuple[str, str], ...], payload: bytes) -> bytes:
    """One encoded message."""
    encoded = _headers(headers)
    total = _PRELUDE.size + _CRC.size + len(encoded) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(encoded))
    head = prelude + _CRC.pack(binascii.crc32(prelude))
    body = head + encoded + payload
    return body + _CRC.pack(binascii.crc32(body))


def event(event_type: str, content_type: str, payload: bytes) -> bytes:
    """One ``:message-type event`` message of the given ``:event-type``."""
    return message(
        (
            (":event-type", event_type),
            (":content-type", content_type),
            (":message-type", "event"),
        ),
        payload,
    )


def payload_chunk(data: bytes) -> bytes:
    """A ``PayloadChunk`` event: a piece of the function's response, as written."""
    return event("PayloadChunk", "application/octet-stream", data)


def invoke_complete(fields: dict[str, str]) -> bytes:
    """The ``InvokeComplete`` event that ends the stream (ErrorCode, ErrorDetails, LogResult)."""
    return event("InvokeComplete", "application/json", orjson.dumps(fields))

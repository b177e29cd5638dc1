"""The event-stream encoder, read back by botocore's own decoder and parser."""

from __future__ import annotations

import binascii

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer, EventStreamMessage
from botocore.parsers import EventStreamJSONParser

from ember.api import eventstream


def decoded(data: bytes) -> list[EventStreamMessage]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_messages_decode_with_botocore() -> None:
    data = eventstream.payload_chunk(b"hello") + eventstream.payload_chunk(b"\x00\xff" * 70000)
    data += eventstream.invoke_complete({"ErrorCode": "E", "LogResult": "bG9n"})
    first, big, last = decoded(data)
    assert first.headers == {
        ":event-type": "PayloadChunk",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
    assert first.payload == b"hello"
    assert big.payload == b"\x00\xff" * 70000
    assert last.headers[":event-type"] == "InvokeComplete"
    assert last.payload == b'{"ErrorCode":"E","LogResult":"bG9n"}'


def test_botocore_parses_the_lambda_events() -> None:
    model = botocore.session.get_session().get_service_model("lambda")
    output = model.operation_model("InvokeWithResponseStream").output_shape
    shape = output.members["EventStream"]
    parser = EventStreamJSONParser()
    chunk, complete = decoded(
        eventstream.payload_chunk(b"abc") + eventstream.invoke_complete({"ErrorCode": "X"})
    )
    assert parser.parse(chunk.to_response_dict(), shape) == {"PayloadChunk": {"Payload": b"abc"}}
    assert parser.parse(complete.to_response_dict(), shape) == {
        "InvokeComplete": {"ErrorCode": "X"}
    }


def test_a_corrupted_message_fails_its_checksum() -> None:
    data = bytearray(eventstream.payload_chunk(b"hello"))
    data[-6] ^= 1
    with pytest.raises(ChecksumMismatch):
        decoded(bytes(data))
    # The prelude's own CRC, checked apart from the message's.
    assert binascii.crc32(bytes(data[:8])).to_bytes(4, "big") == bytes(data[8:12])

"""The bounded body reader: declared sizes refused unread, sent ones counted and cut,
large bodies spooled and handed back byte for byte."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ember.api.bodies import SPOOL_IN_MEMORY, read_body
from ember.errors import RequestTooLarge


def _too_large() -> RequestTooLarge:
    return RequestTooLarge("too large")


def _receiver(chunks: list[bytes]) -> tuple[Any, list[int]]:
    """A ``receive`` of ``chunks``, and a list counting the calls made."""
    pending = list(chunks)
    calls: list[int] = []

    async def receive() -> dict[str, Any]:
        calls.append(1)
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    return receive, calls


def _scope(length: int | None) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", b"%d" % length)]
    return {"type": "http", "headers": headers}


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    receive, calls = _receiver([b"x" * 10])
    with pytest.raises(RequestTooLarge):
        asyncio.run(read_body(_scope(11), receive, 10, _too_large))
    assert calls == []


def test_a_chunked_body_is_cut_at_the_limit() -> None:
    chunk = b"y" * 65536
    receive, calls = _receiver([chunk] * 100)
    with pytest.raises(RequestTooLarge):
        asyncio.run(read_body(_scope(None), receive, 10 * len(chunk), _too_large))
    assert len(calls) == 11  # not one message more than it takes to pass the limit


def test_a_large_body_within_the_limit_comes_back_whole() -> None:
    chunks = [bytes([n]) * 300_000 for n in range(8)]  # past the in-memory spool
    assert sum(map(len, chunks)) > SPOOL_IN_MEMORY
    receive, _ = _receiver(chunks)
    body = asyncio.run(read_body(_scope(None), receive, 10 * SPOOL_IN_MEMORY, _too_large))
    assert body == b"".join(chunks)


def test_a_body_in_one_message_is_returned_as_is() -> None:
    receive, _ = _receiver([b'{"a": 1}'])
    assert asyncio.run(read_body(_scope(8), receive, 8, _too_large)) == b'{"a": 1}'

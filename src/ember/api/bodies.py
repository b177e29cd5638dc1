"""Reading a request body whole, bounded: the guard (whose signature covers the body)
and the raw Invoke route read through here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ember.errors import RequestTooLarge
from ember.text import is_decimal

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
TooLarge = Callable[[], RequestTooLarge]


async def read_body(scope: Scope, receive: Receive, limit: int, too_large: TooLarge) -> bytes:
    """The whole request body; raises ``too_large()`` past ``limit`` bytes, declared or sent."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if is_decimal(value) and int(value) > limit:
                raise too_large()
            break
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the whole body in one message
        if len(body) > limit:
            raise too_large()
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)

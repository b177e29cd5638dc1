"""Reading a request body whole, bounded: the guard (whose signature covers the body)
and the raw Invoke route read through here.

A declared ``Content-Length`` over the limit is refused before a byte of the
body is read; a body without one (chunked) is counted as it arrives and cut
at the limit. Past ``SPOOL_IN_MEMORY`` bytes the body goes to a temporary
file while it is read, so that a body refused at the limit never sat in
memory (the API's limit is 67 MB; a memory of 64 MB per attacker would not
be bounded).
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

from ember.api import errors as http_errors
from ember.errors import RequestTooLarge
from ember.invoke.service import new_request_id

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Any, Any], Awaitable[None]]
TooLarge = Callable[[], RequestTooLarge]

# Bodies up to this size stay in memory while read; larger ones are spooled to disk.
SPOOL_IN_MEMORY = 1 << 20


def declared_length(scope: Scope) -> int | None:
    """The body size the client declared (``Content-Length``), if it did."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # bytes: ASCII digits only
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, too_large: TooLarge) -> bytes:
    """The whole request body; raises ``too_large()`` past ``limit`` bytes, declared or sent."""
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise too_large()
    message = await receive()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise too_large()
    if not message.get("more_body", False):  # the whole body in one message
        return body
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        spool.write(body)
        await _spool_rest(receive, spool, len(body), limit, too_large)
        spool.seek(0)
        return spool.read()


async def _spool_rest(
    receive: Receive, spool: IO[bytes], size: int, limit: int, too_large: TooLarge
) -> None:
    """Write the body's remaining messages to ``spool``, ``size`` bytes already in."""
    message: dict[str, Any] = {"more_body": True}
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large()
        spool.write(chunk)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's own
    messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict[str, Any]:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def run_bounded(
    app: App, scope: Scope, receive: Receive, send: Send, limit: int, too_large: TooLarge
) -> None:
    """Run ``app`` with the body read ahead (bounded) for an app that would read it
    unbounded itself (MCP's SDK); a body too large is answered here."""
    try:
        body = await read_body(scope, receive, limit, too_large)
    except RequestTooLarge as error:
        await refuse_too_large(send, error)
        return
    await app(scope, replay(body, receive), send)


async def refuse_too_large(send: Send, error: RequestTooLarge) -> None:
    """Answer 413 in Lambda's shape and close the connection."""
    await send_answer(send, http_errors.answer(error, new_request_id()))


async def send_answer(send: Send, answer: http_errors.Answer) -> None:
    """Send a whole response (its headers carry its Content-Length)."""
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

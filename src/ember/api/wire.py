"""The HTTP/1.1 connection, bounded: request heads of a limited size and header
count, and requests that stall closed.

uvicorn's httptools protocol (the fast parser ember runs) has neither: httptools
buffers a header's value until it ends, however long, and nothing times out a
connection that sends half a request (``timeout_keep_alive`` runs only between
requests). uvicorn's h11 protocol bounds the head (``h11_max_incomplete_event_size``)
but not its time, and costs every request; so ember subclasses the httptools
protocol and adds, at the transport, what no ASGI app can (the app only runs
once the head is whole):

- a head (request line and headers) over ``head_bytes`` or with more than
  ``max_headers`` headers is answered 431 and the connection closed; so are, by
  closing, trailers or chunk extensions over ``head_bytes`` (httptools buffers a
  trailer as it does a header);
- a head not whole ``read_timeout`` seconds after its first byte (or after the
  connection opened) is answered 408 and closed: a slow-loris trickle of header
  bytes gains nothing by sending often;
- a body that sends nothing for ``read_timeout`` seconds while the app waits for
  it is cut (the connection closed; the app sees a disconnect). Time the app
  itself leaves the body unread (uvicorn pauses reading) does not count.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ember.api import errors as http_errors
from ember.errors import ClientError, HeadersTooLarge, RequestTimeout


@dataclass(frozen=True, slots=True)
class WireLimits:
    """What one request's head may weigh, and how long a request may stall."""

    head_bytes: int = 64 * 1024
    max_headers: int = 100
    read_timeout: float = 30.0


class _Phase(Enum):
    IDLE = "idle"  # between requests: uvicorn's keep-alive timeout applies
    HEAD = "head"
    BODY = "body"


class _Refused(Exception):
    """Stops httptools mid-parse once the connection has been refused."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``limits`` (set by ``bounded_protocol``)."""

    limits = WireLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _Phase.HEAD  # a new connection owes a request head
        self._head_bytes = 0
        self._header_count = 0
        self._last_read = 0.0
        self._head_started = 0.0
        self._read_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._body_events = 0  # on_body and on_message_complete calls, ever
        self._quiet_bytes = 0  # bytes of the body phase read without a body event

    # The connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._last_read = self._head_started = self.loop.time()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._last_read = self.loop.time()
        if self._phase is _Phase.IDLE:  # the first bytes of the next request
            self._phase = _Phase.HEAD
            self._head_started = self._last_read
        if self._phase is _Phase.HEAD:
            self._head_bytes += len(data)
        events = self._body_events
        super().data_received(data)
        if self._refused:
            return
        if self._phase is _Phase.HEAD and self._head_bytes > self.limits.head_bytes:
            # Still no end of the head: what httptools holds is all head.
            self._refuse(HeadersTooLarge(self._too_large_message()))
        elif self._phase is _Phase.BODY:
            self._count_quiet(len(data), events)
        if self._phase is not _Phase.IDLE and not self._refused:
            self._arm()

    def _count_quiet(self, size: int, events_before: int) -> None:
        """Cut a body phase that reads on and on without body: trailers (httptools
        buffers their values as it does headers') or chunk extensions. A chunked body
        has framing every chunk; over a head's worth of bytes with none is no body."""
        if self._body_events != events_before:
            self._quiet_bytes = 0
            return
        self._quiet_bytes += size
        if self._quiet_bytes > self.limits.head_bytes:
            # The app may be answering already: only the transport is cut.
            self._refused = True
            self._disarm()
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refusal of ours already answered
            super().send_400_response(msg)

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._phase is not _Phase.HEAD:  # pipelined: began in a read of the last one
            self._phase = _Phase.HEAD
            self._head_started = self.loop.time()
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse(HeadersTooLarge(f"A request may carry {self.limits.max_headers} headers"))
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
        if size > self.limits.head_bytes:  # the whole head came in one read
            self._refuse(HeadersTooLarge(self._too_large_message()))
            raise _Refused
        self._phase = _Phase.BODY
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_events += 1
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_events += 1
        self._quiet_bytes = 0
        self._phase = _Phase.IDLE
        self._head_bytes = 0
        self._header_count = 0
        self._disarm()
        super().on_message_complete()

    # The read timeout

    def _deadline(self) -> float:
        """A head has ``read_timeout`` from its first byte, however often it sends; a
        body has it from its last read."""
        start = self._head_started if self._phase is _Phase.HEAD else self._last_read
        return start + self.limits.read_timeout

    def _arm(self) -> None:
        """Make sure the read timer runs: one timer per connection, moved lazily
        (reads move ``_last_read``; the timer, when it fires, looks again)."""
        if self._read_timer is None:
            self._read_timer = self.loop.call_at(self._deadline(), self._on_read_timer)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _on_read_timer(self) -> None:
        self._read_timer = None
        if self._phase is _Phase.IDLE or self._refused:
            return
        if self._phase is _Phase.BODY and self.flow.read_paused:
            # The app is not reading yet (uvicorn paused the socket): its time, not
            # the client's.
            self._last_read = self.loop.time()
        if self.loop.time() < self._deadline():
            self._arm()
            return
        self._time_out()

    def _time_out(self) -> None:
        if self._phase is _Phase.HEAD:
            self._refuse(RequestTimeout("The request head was not received in time"))
            return
        # The app has the request already and may be answering: only the
        # transport is cut, and the app's receive() reports a disconnect.
        self._refused = True
        self.transport.close()

    def _too_large_message(self) -> str:
        return f"Request line and headers must be smaller than {self.limits.head_bytes} bytes"

    def _refuse(self, error: ClientError) -> None:
        """Answer ``error`` in Lambda's shape and close the connection."""
        self._refused = True
        self._disarm()
        status, headers, body = http_errors.render(error, "")
        head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def bounded_protocol(limits: WireLimits) -> type[BoundedHttpProtocol]:
    """The protocol class uvicorn is given (``Config(http=...)``), with ``limits``."""
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,), {"limits": limits})


__all__ = ["BoundedHttpProtocol", "WireLimits", "bounded_protocol"]

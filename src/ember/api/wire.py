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

It also carries the **lane**: a request its ``Lane`` (the Frontend) takes, Invoke,
is read whole here and answered whole, in one write, without the ASGI cycle:
no scope rebuilt, no receive and send messages, no per-header checks of a
response ember wrote itself. uvicorn's cycle cost 40 µs of server CPU per
request against 23 µs for a protocol answering on httptools directly
(docs/benchmarks.md), as much as ember's whole budget for a warm call. The lane
takes only a plain request: POST over HTTP/1.1, a ``Content-Length`` of at most
``SPOOL_IN_MEMORY`` and no ``Transfer-Encoding``, no ``Expect``, nothing still
answering before it on the connection; anything else, and any request the lane
does not take, goes through uvicorn's cycle to the same application.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import unquote

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ember.api import errors as http_errors
from ember.api.bodies import SPOOL_IN_MEMORY
from ember.errors import ClientError, HeadersTooLarge, RequestTimeout

Scope = dict[str, Any]
# What a response header's value may not hold (uvicorn's own check): control
# characters, CR and LF among them, that would split or end the head.
_UNSAFE_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINE = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
    for status in HTTPStatus
}
_FAILED: http_errors.Answer = (
    500,
    [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
    b"Internal Server Error",
)


class Lane(Protocol):
    """An application that answers some requests whole, without ASGI (the Frontend's
    Invoke). It is the ASGI application the server runs too, and answers a request
    the same whichever way it came."""

    def takes(self, scope: Scope) -> bool:
        """Whether to answer this request whole. ``scope`` is its ASGI scope, method,
        path and query parsed, its body not yet read."""
        ...

    async def answer(self, scope: Scope, body: bytes) -> http_errors.Answer:
        """The whole response (its headers carry Content-Length; ``connection:
        close`` among them closes the connection after it). Never raises for a
        refusal; an exception is a bug, answered 500."""
        ...


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
    lane: Lane | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane_cycle: _LaneCycle | None = None  # the request being read for the lane
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
        if self.lane is not None and self._lane_takes(self.lane):
            scope = cast(Scope, self.scope)
            cycle = self._lane_cycle = _LaneCycle(scope, self.parser.should_keep_alive())
            self.cycle = cycle  # type: ignore[assignment]  # what uvicorn reads of a cycle
            return
        self._lane_cycle = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_events += 1
        if self._lane_cycle is not None:
            # No pause at uvicorn's high-water mark: the lane reads the whole body,
            # which declared at most SPOOL_IN_MEMORY bytes (httptools holds it to that).
            self._lane_cycle.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_events += 1
        self._quiet_bytes = 0
        self._phase = _Phase.IDLE
        self._head_bytes = 0
        self._header_count = 0
        self._disarm()
        cycle = self._lane_cycle
        if cycle is not None:
            self._lane_cycle = None
            task = self.loop.create_task(self._answer_whole(cycle))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)  # uvicorn's shutdown waits for these
            return
        super().on_message_complete()

    # The lane

    def _lane_takes(self, lane: Lane) -> bool:
        """A plain request (see the module's docstring) that ``lane`` takes; its
        method, path and query go into the scope as uvicorn would put them."""
        parser = self.parser
        if parser.get_method() != b"POST" or self.expect_100_continue or self.root_path:
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # behind a request still answering: uvicorn queues it
        if parser.get_http_version() != "1.1" or self.limit_concurrency is not None:
            return False
        length = _whole_length(self.headers)
        if length is None or length > SPOOL_IN_MEMORY:
            return False
        parsed = httptools.parse_url(self.url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("ascii")
        scope = cast(Scope, self.scope)
        scope["method"] = "POST"
        scope["path"] = unquote(path) if "%" in path else path
        scope["raw_path"] = raw_path
        scope["query_string"] = parsed.query or b""
        return lane.takes(scope)

    async def _answer_whole(self, cycle: _LaneCycle) -> None:
        assert self.lane is not None
        try:
            status, headers, body = await self.lane.answer(cycle.scope, bytes(cycle.body))
            head = self._head(status, headers, cycle)
        except Exception as exc:
            self.logger.error("Exception answering %s", cycle.scope["path"], exc_info=exc)
            cycle.keep_alive = False
            head = self._head(*_FAILED[:2], cycle)
            body = _FAILED[2]
        cycle.body.clear()
        if self.flow.write_paused and not self.transport.is_closing():
            await self.flow.drain()  # a client that does not read its answers waits
        if self.transport.is_closing():
            return  # the client went away (uvicorn drops such a response too)
        self.transport.writelines((head, body))
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()  # the next pipelined request, or keep-alive's timer

    def _head(self, status: int, headers: http_errors.Headers, cycle: _LaneCycle) -> bytes:
        """The response's status line and headers, uvicorn's defaults (date, server)
        first. Raises on a value that would split the head: a bug, answered 500."""
        if _UNSAFE_VALUE.search(b"\t".join([value for _, value in headers])):
            raise ValueError(f"a response header's value holds a control character: {headers}")
        lines = [_STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            lines += (name, b": ", value, b"\r\n")
        for name, value in headers:
            if name == b"connection":
                cycle.keep_alive = False  # ember sends it only to close
            lines += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive and (b"connection", b"close") not in headers:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

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


class _LaneCycle:
    """A request the lane answers: what uvicorn's protocol reads of a request's cycle
    (``response_complete``, ``keep_alive``, ``disconnected``, ``message_event``), and
    its body as it arrives."""

    __slots__ = ("body", "disconnected", "keep_alive", "response_complete", "scope")

    def __init__(self, scope: Scope, keep_alive: bool) -> None:
        self.scope = scope
        self.body = bytearray()
        self.keep_alive = keep_alive  # uvicorn's shutdown clears it: the answer closes
        self.response_complete = False
        self.disconnected = False  # set by uvicorn on connection_lost; not read here

    @property
    def message_event(self) -> _Unawaited:
        return _UNAWAITED


class _Unawaited:
    """The event uvicorn sets on connection_lost for a cycle's receive(); the lane
    has no receive() waiting."""

    def set(self) -> None:
        pass


_UNAWAITED = _Unawaited()


def _whole_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The one Content-Length of a request without Transfer-Encoding, else None."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
    return length


def bounded_protocol(limits: WireLimits, lane: Lane | None = None) -> type[BoundedHttpProtocol]:
    """The protocol class uvicorn is given (``Config(http=...)``), with ``limits``, and
    ``lane`` answering the requests it takes."""
    attributes = {"limits": limits, "lane": lane}
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,), attributes)


__all__ = ["BoundedHttpProtocol", "Lane", "WireLimits", "bounded_protocol"]

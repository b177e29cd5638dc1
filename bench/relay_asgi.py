"""The bare ASGI echo app, with the echo done by another process: the floor of any
server that runs its functions outside its own process.

Each request's body goes to a child process over a Unix socket (a 4-byte length, then
the bytes; the child answers the same way) through an asyncio protocol, as ember's
sandbox channel does, and the reply is the response. Nothing else: no routing, checks,
logs or metrics. Its server CPU per request, beside the bare app's in the same run, is
what the round trip to another process alone costs (``bench_hotpath.py``).
"""

import asyncio
import collections
import socket
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bare_asgi import _read_body

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LENGTH = struct.Struct("!I")

# The child: blocking reads and writes, like a sandbox's runtime loop.
_CHILD = """
import socket, struct, sys
length = struct.Struct("!I")
channel = socket.socket(fileno=int(sys.argv[1]))
buffer = b""
while True:
    while len(buffer) < 4 or len(buffer) < 4 + length.unpack_from(buffer)[0]:
        data = channel.recv(65536)
        if not data:
            sys.exit(0)
        buffer += data
    size = length.unpack_from(buffer)[0]
    body, buffer = buffer[4 : 4 + size], buffer[4 + size :]
    channel.sendall(length.pack(len(body)) + body)
"""


class _Channel(asyncio.Protocol):
    """Frames to and from the child; replies come back in the order sent."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiters: collections.deque[asyncio.Future[bytes]] = collections.deque()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 4:
            size = LENGTH.unpack_from(buffer)[0]
            if len(buffer) < 4 + size:
                return
            reply = bytes(buffer[4 : 4 + size])
            del buffer[: 4 + size]
            self.waiters.popleft().set_result(reply)

    async def round_trip(self, body: bytes) -> bytes:
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        assert self.transport is not None
        self.transport.write(LENGTH.pack(len(body)) + body)
        return await waiter


_channel = _Channel()


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = await _channel.round_trip(await _read_body(receive))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    child = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            ours, theirs = socket.socketpair()
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())], pass_fds=[theirs.fileno()]
            )
            theirs.close()
            await asyncio.get_running_loop().connect_accepted_socket(lambda: _channel, ours)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if child is not None:
                child.kill()
                child.wait()
            await send({"type": "lifespan.shutdown.complete"})
            return

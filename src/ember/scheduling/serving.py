"""The worker host's end of the channel: calls from frontends run on its LocalExecutor.

Each frontend holds one connection; its calls run concurrently, each in its
own task. A call is acknowledged (``STARTED``) when it has its sandbox, so a
frontend knows which calls it may safely retry elsewhere when this host dies:
those never acknowledged. The function's output goes back as ``LOG`` frames
while it runs. Records arrive once per connection and revision and are kept
for that connection. A call whose frontend went away still runs to its end
(its sandbox then goes back to the pool); only its reply is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ember.control.models import FunctionRecord
from ember.errors import EmberError, TooManyRequests
from ember.sandbox.base import InitFailed, Outcome, SandboxRequest
from ember.scheduling import channel
from ember.scheduling.channel import ChannelError, Frame, Sealer, WorkerOpener
from ember.scheduling.executor import LocalExecutor

log = logging.getLogger("ember.worker")

# A connection that has not proved it holds the token by then is closed.
HANDSHAKE_SECONDS = 5.0


@dataclass(frozen=True)
class HostState:
    """What this host says about itself, read by the channel on each heartbeat."""

    worker_id: str
    draining: Callable[[], bool]  # no new sandboxes (Membership's drain, or SIGTERM)


class WorkerEndpoint:
    """The channel's listener on a worker host, and its connections."""

    def __init__(self, executor: LocalExecutor, token: bytes, host: HostState) -> None:
        self.executor = executor
        self.token = token
        self.host = host
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)

    def heartbeat(self) -> None:
        """Tell every frontend this host's load and its idle warm sandboxes by revision."""
        manager = self.executor.manager
        stats = manager.statistics()
        meta = {
            "load": {
                "sandboxes": stats["sandboxes"],
                "busy": stats["busy"],
                "memoryReservedMB": manager.memory_reserved_mb(),
            },
            "idle": manager.idle_by_revision(),
            "draining": self.host.draining(),
        }
        for connection in list(self.connections):
            connection.send(channel.HEARTBEAT, 0, meta)

    def load(self) -> dict[str, int]:
        stats = self.executor.manager.statistics()
        return {"sandboxes": stats["sandboxes"], "busy": stats["busy"]}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    def __init__(self, endpoint: WorkerEndpoint) -> None:
        self.endpoint = endpoint
        self.nonce = channel.new_nonce()
        self.opener = WorkerOpener(endpoint.token, self.nonce)
        self.sealer = Sealer(channel.hello_key(endpoint.token, self.nonce))
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.authenticated = False
        self.records: dict[str, FunctionRecord] = {}  # revision id -> record, for this frontend
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        asyncio.get_running_loop().call_later(HANDSHAKE_SECONDS, self._handshake_over)
        hello = {"worker": self.endpoint.host.worker_id}
        transport.write(  # type: ignore[attr-defined]
            self.sealer.seal(channel.HELLO, 0, hello, self.nonce)
        )

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.opener.feed(data)
        except ChannelError as exc:
            self._refuse(str(exc))
            return
        for frame in frames:
            self._dispatch(frame)

    def _handshake_over(self) -> None:
        if (
            not self.authenticated
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self._refuse(f"no HELLO within {HANDSHAKE_SECONDS:g} s")

    def _refuse(self, reason: str) -> None:
        if self.authenticated:
            log.warning("closed the channel from %s: %s", self.peer, reason)
        else:
            log.warning("refused a channel connection from %s: %s", self.peer, reason)
        self.close()

    def _dispatch(self, frame: Frame) -> None:
        if not self.authenticated:
            # The opener let through only a HELLO keyed by the token.
            self.authenticated = True
            self.sealer.key = channel.worker_key(
                self.endpoint.token, self.nonce, self.opener.frontend_nonce
            )
            self.endpoint.connections.add(self)
            log.info("frontend %s connected from %s", frame.meta.get("frontend", "?"), self.peer)
            return
        record = frame.meta.get("record")
        if isinstance(record, str):
            parsed = FunctionRecord.from_json(record)
            channel.remember(self.records, parsed.revision_id, parsed)
        if frame.kind == channel.CALL:
            self._spawn(self._call(frame))
        elif frame.kind == channel.PROVISION:
            self._spawn(self._provision(frame))
        elif frame.kind == channel.LIST:
            self._spawn(self._list(frame))
        else:
            self._refuse(f"unexpected frame kind {frame.kind}")

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send(self, kind: int, call: int, meta: dict[str, Any] | None, payload: bytes = b"") -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing() and self.authenticated:
            transport.write(self.sealer.seal(kind, call, meta, payload))

    async def _call(self, frame: Frame) -> None:
        meta = frame.meta
        call = frame.call
        record = self.records.get(str(meta.get("rev")))
        if record is None:
            self.send(channel.REFUSED, call, {"reason": "unknown"})
            return
        manager = self.endpoint.executor.manager
        if self.endpoint.host.draining() and not manager.idle_by_revision().get(record.revision_id):
            self.send(channel.REFUSED, call, {"reason": "draining"})
            return
        streamed = 0

        def output(data: bytes) -> None:
            nonlocal streamed
            streamed += len(data)
            self.send(channel.LOG, call, None, data)

        def begin(init_ms: float | None, init_log: bytes) -> None:
            self.send(channel.STARTED, call, {"initMs": init_ms}, init_log)

        stream = _ChannelSink(self, call) if meta.get("stream") else None

        request = SandboxRequest(
            request_id=str(meta["rid"]),
            deadline_ms=int(time.time() * 1000) + record.timeout * 1000,
            invoked_arn=str(meta["arn"]),
            client_context=str(meta.get("cc", "")),
            identity="",
            trace_id=str(meta.get("tid", "")),
            payload=frame.payload,
            timeout_seconds=float(record.timeout),
            output=output,
            stream=stream,
        )
        try:
            execution = await self.endpoint.executor.execute(record, request, begin)
        except InitFailed as failure:
            body = failure.log + failure.payload
            failed = {"initMs": failure.init_ms, "log": len(failure.log)}
            self.send(channel.INIT_FAILED, call, failed, body)
            return
        except TooManyRequests:
            self.send(channel.REFUSED, call, {"reason": "full"})
            return
        except EmberError as exc:
            self.send(channel.FAILED, call, {"code": exc.code, "message": exc.message})
            return
        result = execution.result
        # The output went back as it came; send it again only if the sandbox
        # kept some of it from the stream (then the result's log is the whole).
        unsent = result.log if len(result.log) != streamed else b""
        reply: dict[str, Any] = {
            "ok": result.outcome is Outcome.OK,
            "rss": result.max_rss_kb,
            "ms": execution.duration_ms,
            "initMs": execution.init_ms,
            "restoreMs": execution.restore_ms,
            "warm": execution.warm,
            "sid": execution.sandbox_id,
            "log": len(unsent),
        }
        self.send(channel.RESULT, call, reply, unsent + result.body)

    async def _provision(self, frame: Frame) -> None:
        record = self.records.get(str(frame.meta.get("rev")))
        live = 0
        if record is not None:
            try:
                live = await self.endpoint.executor.provision(record, int(frame.meta["count"]))
            except (EmberError, InitFailed) as exc:
                log.warning("could not provision %s: %s", record.name, exc)
        self.send(channel.DONE, frame.call, {"live": live})

    async def _list(self, frame: Frame) -> None:
        sandboxes = await self.endpoint.executor.sandboxes()
        self.send(channel.DONE, frame.call, {"sandboxes": sandboxes})

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.connections.discard(self)

    def close(self) -> None:
        self.endpoint.connections.discard(self)
        if self.transport is not None:
            self.transport.close()


class _ChannelSink:
    """A streamed response's pieces, sent to the frontend as the function writes them
    (``ember.sandbox.base.ResponseSink``)."""

    __slots__ = ("call", "connection")

    def __init__(self, connection: _Connection, call: int) -> None:
        self.connection = connection
        self.call = call

    def prelude(self, data: bytes) -> None:
        self.connection.send(channel.PRELUDE, self.call, None, data)

    def chunk(self, data: bytes) -> None:
        self.connection.send(channel.CHUNK, self.call, None, data)

"""A frontend's executor: calls go over the channel to the worker host Placement picks.

``Links`` keeps one connection per worker (opened on first use, reopened
with backoff), learns from each worker's heartbeat frames its idle warm
sandboxes (``Placement.warm``) and load, and declares a worker lost after
SILENCE_SECONDS without a frame (a link cut without a FIN). ``RemoteExecutor``
tries the candidates in order: a worker refusing for want of room sends the
call to the next one; a call that never started (connect failed, link lost
before the worker acknowledged it) is retried once on the next; one that
had started fails with WorkerLost (ServiceException), since it may have run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ember.control.models import FunctionRecord
from ember.errors import SandboxUnavailable, TooManyRequests, WorkerLost
from ember.sandbox.base import (
    InitFailed,
    Outcome,
    ResponseSink,
    SandboxRequest,
    SandboxResult,
)
from ember.scheduling import channel
from ember.scheduling.base import SILENCE_SECONDS, Placement, WorkerInfo
from ember.scheduling.channel import ChannelError, Frame, FrontendOpener, Sealer
from ember.scheduling.executor import Begin, Execution
from ember.scheduling.rendezvous import ranking

log = logging.getLogger("ember.scheduling")

Clock = Callable[[], float]

# A call's reply may come this long after its Init and timeout would end it on
# the worker (the worker enforces both; this only bounds a worker that hangs).
MARGIN_SECONDS = 2.0
CONNECT_SECONDS = 2.0
BACKOFF_SECONDS = (0.2, 5.0)  # first and longest wait before reconnecting to a worker
WATCH_SECONDS = 0.5
# One call's output kept for its Tail and log record; the rest was streamed.
MAX_OUTPUT = 4 * 1024 * 1024
TRUNCATED = b"[ember: output truncated]\n"
_TERMINAL = frozenset(
    (channel.RESULT, channel.INIT_FAILED, channel.REFUSED, channel.FAILED, channel.DONE)
)


class NotStarted(Exception):
    """The call never started on that worker: it may safely go to another."""


class _Pending:
    """One call in flight on a link."""

    __slots__ = ("begin", "future", "output", "started", "stream", "timer")

    def __init__(
        self,
        future: asyncio.Future[Frame],
        output: Callable[[bytes], None] | None,
        begin: Begin | None,
        stream: ResponseSink | None = None,
    ) -> None:
        self.future = future
        self.output = output
        self.begin = begin
        self.stream = stream
        self.started = False
        self.timer: asyncio.TimerHandle | None = None

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Output:
    """A call's output as it came (LOG frames), kept whole up to MAX_OUTPUT."""

    __slots__ = ("chunks", "init_log", "sink", "size", "started")

    def __init__(self, sink: Callable[[bytes], None] | None, started: Begin) -> None:
        self.sink = sink
        self.started = started
        self.chunks: list[bytes] = []
        self.size = 0
        self.init_log = b""

    def begin(self, init_ms: float | None, init_log: bytes) -> None:
        self.init_log = init_log
        self.started(init_ms, init_log)

    def __call__(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink(data)
        self.chunks.append(data)
        self.size += len(data)
        if self.size > 2 * MAX_OUTPUT:
            kept = b"".join(self.chunks)[-MAX_OUTPUT:]
            self.chunks, self.size = [TRUNCATED, kept], len(kept)

    def whole(self) -> bytes:
        data = b"".join(self.chunks)
        if len(data) > MAX_OUTPUT:
            return TRUNCATED + data[-MAX_OUTPUT:]
        return data


class WorkerLink(asyncio.Protocol):
    """One connection from this frontend to one worker."""

    def __init__(self, links: Links, worker_id: str, address: str) -> None:
        self.links = links
        self.worker_id = worker_id
        self.address = address
        self.loop = asyncio.get_running_loop()
        self.nonce = channel.new_nonce()
        self.opener = FrontendOpener(links.token, self.nonce)
        self.sealer: Sealer | None = None  # once the worker's HELLO is in
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed = False
        self.calls: dict[int, _Pending] = {}
        self.ids = itertools.count(1)
        # Revisions whose record the worker holds for this connection (channel.remember).
        self.sent: dict[str, None] = {}
        self.last_heard = links.clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.opener.feed(data)
        except ChannelError as exc:
            self.abort(f"its frames failed: {exc}")
            return
        self.last_heard = self.links.clock()
        for frame in frames:
            if self.sealer is None:
                self._hello(frame)
            elif frame.kind == channel.HEARTBEAT:
                self.links.heard(self.worker_id, frame.meta)
            else:
                self._reply(frame)

    def _hello(self, frame: Frame) -> None:
        if frame.meta.get("worker") != self.worker_id:
            self.abort(f"another worker answers at its address: {frame.meta.get('worker')}")
            return
        token = self.links.token
        self.sealer = Sealer(channel.frontend_key(token, self.opener.worker_nonce, self.nonce))
        hello = self.sealer.seal(channel.HELLO, 0, {"frontend": self.links.frontend_id}, self.nonce)
        assert self.transport is not None
        self.transport.write(hello)
        if not self.ready.done():
            self.ready.set_result(None)

    def _reply(self, frame: Frame) -> None:
        pending = self.calls.get(frame.call)
        if pending is None:
            return  # the caller gave up on it (timed out)
        kind = frame.kind
        if kind == channel.LOG:
            if pending.output is not None:
                pending.output(frame.payload)
        elif kind == channel.CHUNK:
            if pending.stream is not None:
                pending.stream.chunk(frame.payload)
        elif kind == channel.PRELUDE:
            if pending.stream is not None:
                pending.stream.prelude(frame.payload)
        elif kind == channel.STARTED:
            pending.started = True
            if pending.begin is not None:
                init_ms = frame.meta.get("initMs")
                pending.begin(float(init_ms) if init_ms is not None else None, frame.payload)
        elif kind in _TERMINAL:
            del self.calls[frame.call]
            if not pending.future.done():
                pending.future.set_result(frame)

    async def request(
        self,
        kind: int,
        meta: dict[str, Any],
        payload: bytes,
        record: FunctionRecord | None,
        bound: float,
        output: Callable[[bytes], None] | None = None,
        begin: Begin | None = None,
        stream: ResponseSink | None = None,
    ) -> Frame:
        """Send one request and wait for its final frame (at most ``bound`` seconds).

        Raises NotStarted when the link broke before the worker acknowledged it,
        WorkerLost when it broke after, or the answer took longer than ``bound``.
        """
        if self.closed or self.sealer is None or self.transport is None:
            raise NotStarted(f"no connection to worker {self.worker_id}")
        call = next(self.ids)
        if record is not None and record.revision_id not in self.sent:
            meta["record"] = record.to_json()
            channel.remember(self.sent, record.revision_id, None)
        pending = _Pending(self.loop.create_future(), output, begin, stream)
        pending.timer = self.loop.call_later(bound, self._late, call)
        self.calls[call] = pending
        self.transport.write(self.sealer.seal(kind, call, meta, payload))
        try:
            return await pending.future
        finally:
            pending.timer.cancel()
            self.calls.pop(call, None)

    def _late(self, call: int) -> None:
        pending = self.calls.pop(call, None)
        if pending is not None:
            pending.fail(
                WorkerLost(f"{_INTERNAL} (worker {self.worker_id} did not answer in time)")
            )

    def abort(self, reason: str) -> None:
        if not self.closed:
            log.warning("lost worker %s: %s", self.worker_id, reason)
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.calls:
            log.warning(
                "lost worker %s (connection closed) with %d call(s) in flight",
                self.worker_id,
                len(self.calls),
            )
        if not self.ready.done():
            self.ready.set_exception(NotStarted(f"worker {self.worker_id} closed the connection"))
            self.ready.exception()  # retrieved: nobody may be waiting for it
        calls, self.calls = self.calls, {}
        for pending in calls.values():
            if pending.started:
                pending.fail(WorkerLost(f"{_INTERNAL} (worker {self.worker_id} was lost)"))
            else:
                pending.fail(NotStarted(f"worker {self.worker_id} was lost"))
        self.links.lost(self)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


_INTERNAL = "An internal error occurred while running the function"


class Links:
    """This frontend's connections to the workers, and what their heartbeats said."""

    def __init__(
        self, token: bytes, frontend_id: str, placement: Placement, clock: Clock = time.monotonic
    ) -> None:
        self.token = token
        self.frontend_id = frontend_id
        self.placement = placement
        self.clock = clock
        self.workers: dict[str, WorkerInfo] = {}
        self.links: dict[str, WorkerLink] = {}
        self.loads: dict[str, dict[str, int]] = {}  # worker id -> its last heartbeat's load
        self._retry_at: dict[str, tuple[float, float]] = {}  # worker -> (when, next backoff)
        self._stopping = asyncio.Event()

    def members(self, workers: Sequence[WorkerInfo]) -> None:
        """The membership table as last read: links to workers gone or moved close once
        no call is in flight on them (a worker leaving finishes its calls first)."""
        self.workers = {info.worker_id: info for info in workers}
        for worker_id, link in list(self.links.items()):
            info = self.workers.get(worker_id)
            if (info is None or info.address != link.address) and not link.calls:
                link.close()
                self.lost(link)
        self.placement.members(workers)

    def live(self) -> list[str]:
        """Workers heard within SILENCE_SECONDS by the database, not draining."""
        return [
            w.worker_id
            for w in self.workers.values()
            if w.silence < SILENCE_SECONDS and not w.draining
        ]

    async def link(self, worker_id: str) -> WorkerLink:
        """The open link to ``worker_id``, connecting first if needed; NotStarted if not."""
        link = self.links.get(worker_id)
        if link is None or link.closed:
            link = await self._connect(worker_id)
        if not link.ready.done():
            try:
                await asyncio.wait_for(asyncio.shield(link.ready), CONNECT_SECONDS)
            except TimeoutError:
                link.abort("no HELLO in time")
                raise NotStarted(f"worker {worker_id} did not answer") from None
        link.ready.result()
        return link

    async def _connect(self, worker_id: str) -> WorkerLink:
        info = self.workers.get(worker_id)
        if info is None:
            raise NotStarted(f"worker {worker_id} is not a member")
        when, _ = self._retry_at.get(worker_id, (0.0, 0.0))
        if self.clock() < when:
            raise NotStarted(f"worker {worker_id} was unreachable moments ago")
        host, _, port = info.address.rpartition(":")
        link = WorkerLink(self, worker_id, info.address)
        self.links[worker_id] = link
        try:
            await asyncio.wait_for(
                link.loop.create_connection(lambda: link, host.strip("[]"), int(port)),
                CONNECT_SECONDS,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            self._unreachable(worker_id)
            link.closed = True
            self.links.pop(worker_id, None)
            raise NotStarted(
                f"cannot connect to worker {worker_id} at {info.address}: {exc}"
            ) from None
        self._retry_at.pop(worker_id, None)
        return link

    def _unreachable(self, worker_id: str) -> None:
        _, backoff = self._retry_at.get(worker_id, (0.0, BACKOFF_SECONDS[0]))
        self._retry_at[worker_id] = (self.clock() + backoff, min(backoff * 2, BACKOFF_SECONDS[1]))
        self.placement.lost(worker_id)

    def heard(self, worker_id: str, meta: dict[str, Any]) -> None:
        idle = meta.get("idle")
        if isinstance(idle, dict):
            self.placement.warm(worker_id, idle)
        load = meta.get("load")
        if isinstance(load, dict):
            self.loads[worker_id] = load

    def lost(self, link: WorkerLink) -> None:
        if self.links.get(link.worker_id) is link:
            del self.links[link.worker_id]
            self.loads.pop(link.worker_id, None)
            self._unreachable(link.worker_id)

    async def watch(self) -> None:
        """Declare lost every link silent for SILENCE_SECONDS (cut off: no FIN comes)."""
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), WATCH_SECONDS)
            except TimeoutError:
                deadline = self.clock() - SILENCE_SECONDS
                for link in list(self.links.values()):
                    if link.ready.done() and link.last_heard < deadline:
                        link.abort(f"no heartbeat for {SILENCE_SECONDS:g} s")

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        for link in list(self.links.values()):
            link.close()
        self.links.clear()


class RemoteExecutor:
    """Runs each call on a worker host, over the channel (a frontend's executor)."""

    def __init__(self, links: Links, placement: Placement, init_timeout: float) -> None:
        self.links = links
        self.placement = placement
        self.init_timeout = init_timeout

    async def execute(
        self, record: FunctionRecord, request: SandboxRequest, begin: Begin
    ) -> Execution:
        revision, memory = record.revision_id, record.memory_size
        meta_base: dict[str, Any] = {
            "rev": revision,
            "rid": request.request_id,
            "arn": request.invoked_arn,
            "tid": request.trace_id,
        }
        if request.client_context:
            meta_base["cc"] = request.client_context
        if request.stream is not None:
            meta_base["stream"] = 1  # its chunks come back as CHUNK frames, as written
        bound = self.init_timeout + record.timeout + MARGIN_SECONDS
        retried = refused = False
        for worker_id in self.placement.candidates(revision, memory):
            output = _Output(request.output, begin)
            frame: Frame | None = None
            self.placement.dispatched(worker_id, revision, memory)
            try:
                link = await self.links.link(worker_id)
                frame = await link.request(
                    channel.CALL,
                    dict(meta_base),
                    request.payload,
                    record,
                    bound,
                    output,
                    output.begin,
                    request.stream,
                )
            except NotStarted as exc:
                if retried:
                    raise WorkerLost(f"{_INTERNAL} ({exc})") from None
                log.info(
                    "call %s did not start: %s; trying another worker", request.request_id, exc
                )
                retried = True
                continue
            finally:
                warm = frame is not None and frame.kind == channel.RESULT and frame.meta.get("warm")
                self.placement.finished(worker_id, revision, memory, bool(warm))
            if frame.kind == channel.REFUSED:
                self.placement.full(worker_id)
                refused = True
                continue
            return _execution(frame, output)
        # Live workers that refused or had no room: a throttle, as the all-in-one
        # node's answer when its worker is full (async pollers retry it later).
        if refused or (not retried and self.placement.any_live()):
            raise TooManyRequests(
                "Rate Exceeded.", "SandboxCapacityExceeded", retry_after_seconds=1.0
            )
        raise SandboxUnavailable(f"{_INTERNAL}: no worker host is available")

    async def provision(self, record: FunctionRecord, count: int) -> int:
        """Spread ``count`` provisioned sandboxes evenly over the live workers, the
        remainder to the first in the revision's rendezvous order (stable: warm state
        must not move them about). A dead worker's share goes to the others on the
        controller's next pass, once membership no longer lists it."""
        workers = ranking(sorted(self.links.live()), record.revision_id)
        if not workers:
            return 0
        each, extra = divmod(count, len(workers))
        answers = await asyncio.gather(
            *(
                self._provision_on(worker_id, record, each + (n < extra))
                for n, worker_id in enumerate(workers)
            )
        )
        return sum(answers)

    async def _provision_on(self, worker_id: str, record: FunctionRecord, count: int) -> int:
        bound = (self.init_timeout + MARGIN_SECONDS) * max(1, count)
        try:
            link = await self.links.link(worker_id)
            frame = await link.request(
                channel.PROVISION, {"rev": record.revision_id, "count": count}, b"", record, bound
            )
        except (NotStarted, WorkerLost) as exc:
            log.warning("could not provision %s on worker %s: %s", record.name, worker_id, exc)
            return 0
        return int(frame.meta.get("live", 0))

    async def prepare_snap_start(self, record: FunctionRecord) -> None:
        """Nothing here: each worker host makes the template where it is needed, at
        the version's first cold start there (the record it is sent says SnapStart
        applies), so a version is Active at once and a refusal is not reported
        (docs/cluster.md)."""
        return None

    def statistics(self) -> dict[str, int]:
        loads = list(self.links.loads.values())
        sandboxes = sum(load.get("sandboxes", 0) for load in loads)
        busy = sum(load.get("busy", 0) for load in loads)
        return {
            "sandboxes": sandboxes,
            "idle": sandboxes - busy,
            "busy": busy,
            "workers": len(self.links.live()),
        }

    async def sandboxes(self) -> list[dict[str, object]]:
        lists = await asyncio.gather(*(self._sandboxes_on(w) for w in self.links.live()))
        return [sandbox for found in lists for sandbox in found]

    async def _sandboxes_on(self, worker_id: str) -> list[dict[str, object]]:
        try:
            link = await self.links.link(worker_id)
            frame = await link.request(channel.LIST, {}, b"", None, CONNECT_SECONDS * 2)
        except (NotStarted, WorkerLost):
            return []
        found = frame.meta.get("sandboxes", [])
        return [{**sandbox, "worker": worker_id} for sandbox in found]


def _execution(frame: Frame, output: _Output) -> Execution:
    meta = frame.meta
    if frame.kind == channel.RESULT:
        unsent = int(meta.get("log", 0))
        log_bytes = frame.payload[:unsent] if unsent else output.whole()
        result = SandboxResult(
            Outcome.OK if meta.get("ok") else Outcome.FUNCTION_ERROR,
            frame.payload[unsent:],
            log_bytes,
            int(meta.get("rss", 0)),
            reusable=bool(meta.get("warm")),
        )
        init_ms, restore_ms = meta.get("initMs"), meta.get("restoreMs")
        return Execution(
            result,
            float(meta.get("ms", 0.0)),
            float(init_ms) if init_ms is not None else None,
            output.init_log,
            bool(meta.get("warm")),
            str(meta.get("sid", "")),
            float(restore_ms) if restore_ms is not None else None,
        )
    if frame.kind == channel.INIT_FAILED:
        size = int(meta.get("log", 0))
        raise InitFailed(frame.payload[size:], frame.payload[:size], float(meta.get("initMs", 0)))
    if frame.kind == channel.FAILED:
        raise SandboxUnavailable(str(meta.get("message", _INTERNAL)))
    raise WorkerLost(f"{_INTERNAL} (unexpected answer {frame.kind})")

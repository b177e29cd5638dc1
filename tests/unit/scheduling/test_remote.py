"""A frontend's RemoteExecutor against worker peers on loopback: which calls go elsewhere.

The peers speak the real channel (channel.py's frames, HMAC and handshake) and
each plays one way a worker host can answer or fail; the links, Placement and
retry rules under test are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace

import pytest

from ember.control.models import FunctionRecord
from ember.errors import SandboxUnavailable, TooManyRequests, WorkerLost
from ember.sandbox.base import Outcome, SandboxRequest
from ember.scheduling import channel
from ember.scheduling.base import WorkerInfo, WorkerLoad
from ember.scheduling.channel import Frame, Sealer, WorkerOpener
from ember.scheduling.executor import Execution
from ember.scheduling.remote import Links, RemoteExecutor
from ember.scheduling.rendezvous import RendezvousPlacement

TOKEN = b"a token for these tests"
RECORD = FunctionRecord(
    name="f",
    runtime="python3.11",
    handler="app.handler",
    role="arn:aws:iam::000000000000:role/r",
    description="",
    timeout=3,
    memory_size=128,
    environment=None,
    code_sha256="",
    code_digest="d",
    code_size=1,
    last_modified="",
    revision_id="rev-1",
)
Reply = Callable[[Frame, Sealer, asyncio.StreamWriter], None]


def ok(frame: Frame, sealer: Sealer, writer: asyncio.StreamWriter) -> None:
    writer.write(sealer.seal(channel.STARTED, frame.call, {"initMs": 1.5}, b"init\n"))
    writer.write(sealer.seal(channel.LOG, frame.call, None, b"line 1\n"))
    writer.write(sealer.seal(channel.LOG, frame.call, None, b"line 2\n"))
    reply = {"ok": True, "rss": 2048, "ms": 0.5, "initMs": 1.5, "warm": True, "log": 0}
    writer.write(sealer.seal(channel.RESULT, frame.call, reply, frame.payload))


def vanish(frame: Frame, sealer: Sealer, writer: asyncio.StreamWriter) -> None:
    writer.close()  # the call arrived, and the worker died before starting it


def start_then_vanish(frame: Frame, sealer: Sealer, writer: asyncio.StreamWriter) -> None:
    writer.write(sealer.seal(channel.STARTED, frame.call, {}, b""))
    writer.close()


def full(frame: Frame, sealer: Sealer, writer: asyncio.StreamWriter) -> None:
    writer.write(sealer.seal(channel.REFUSED, frame.call, {"reason": "full"}))


class Peer:
    """A worker host as frontends see it: the handshake, then ``reply`` to each call."""

    def __init__(self, worker_id: str, reply: Reply) -> None:
        self.worker_id = worker_id
        self.reply = reply
        self.calls = 0
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        nonce = channel.new_nonce()
        sealer = Sealer(channel.hello_key(TOKEN, nonce))
        writer.write(sealer.seal(channel.HELLO, 0, {"worker": self.worker_id}, nonce))
        opener = WorkerOpener(TOKEN, nonce)
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing() and (data := await reader.read(65536)):
                for frame in opener.feed(data):
                    if frame.kind == channel.HELLO:
                        sealer.key = channel.worker_key(TOKEN, nonce, opener.frontend_nonce)
                    else:
                        self.calls += 1
                        self.reply(frame, sealer, writer)
        writer.close()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            self.worker_id, f"127.0.0.1:{self.port}", 1024, 8, ("python3.11",), "full"
        )


class Cluster:
    """Peers answering in the order Placement tries them for RECORD's revision, and a
    frontend's executor over real links to them."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.peers: list[Peer] = []
        self.servers: list[asyncio.Server] = []
        self.output: list[bytes] = []
        self.started: list[tuple[float | None, bytes]] = []
        self.executor: RemoteExecutor | None = None

    async def __aenter__(self) -> Cluster:
        peers = [Peer(f"w{n}", vanish) for n in range(len(self.replies))]
        self.servers = [await peer.start() for peer in peers]
        placement = RendezvousPlacement()
        links = Links(TOKEN, "f1", placement)
        links.members([peer.info() for peer in peers])
        order = placement.candidates(RECORD.revision_id, RECORD.memory_size)
        by_id = {peer.worker_id: peer for peer in peers}
        for worker_id, reply in zip(order, self.replies, strict=True):
            by_id[worker_id].reply = reply
        self.peers = [by_id[worker_id] for worker_id in order]
        self.executor = RemoteExecutor(links, placement, init_timeout=1.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.executor is not None
        self.executor.links.close()
        for peer in self.peers:
            await peer.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()
        await asyncio.sleep(0.01)  # the links' transports finish closing

    async def execute(self) -> Execution:
        assert self.executor is not None
        request = SandboxRequest(
            "rid-1", 0, "arn", "", "", "", b'{"a": 1}', 3.0, self.output.append
        )
        return await self.executor.execute(
            RECORD, request, lambda ms, log: self.started.append((ms, log))
        )

    @property
    def calls(self) -> list[int]:
        return [peer.calls for peer in self.peers]


def test_a_call_runs_and_its_output_streams() -> None:
    async def scenario() -> None:
        async with Cluster([ok]) as cluster:
            execution = await cluster.execute()
        assert execution.result.outcome is Outcome.OK
        assert execution.result.body == b'{"a": 1}'
        assert execution.result.log == b"line 1\nline 2\n"
        assert execution.init_log == b"init\n" and execution.init_ms == 1.5 and execution.warm
        assert cluster.output == [b"line 1\n", b"line 2\n"]
        assert cluster.started == [(1.5, b"init\n")]

    asyncio.run(scenario())


def test_a_call_that_never_started_is_retried_once_on_the_next_worker() -> None:
    async def scenario() -> None:
        async with Cluster([vanish, ok]) as cluster:
            execution = await cluster.execute()
        assert execution.result.body == b'{"a": 1}'
        assert cluster.calls == [1, 1]

    asyncio.run(scenario())


def test_a_call_lost_after_it_started_is_not_retried() -> None:
    async def scenario() -> None:
        async with Cluster([start_then_vanish, ok]) as cluster:
            with pytest.raises(WorkerLost, match="An internal error occurred"):
                await cluster.execute()
        assert cluster.calls == [1, 0]

    asyncio.run(scenario())


def test_only_one_retry_after_calls_that_never_started() -> None:
    async def scenario() -> None:
        async with Cluster([vanish, vanish, ok]) as cluster:
            with pytest.raises(WorkerLost):
                await cluster.execute()
        assert cluster.calls == [1, 1, 0]

    asyncio.run(scenario())


def test_a_full_worker_sends_the_call_to_the_next() -> None:
    async def scenario() -> None:
        async with Cluster([full, full, ok]) as cluster:
            await cluster.execute()
        assert cluster.calls == [1, 1, 1]

    asyncio.run(scenario())


def test_every_worker_full_is_a_throttle() -> None:
    async def scenario() -> None:
        async with Cluster([full, full]) as cluster:
            with pytest.raises(TooManyRequests) as refused:
                await cluster.execute()
        assert refused.value.reason == "SandboxCapacityExceeded"

    asyncio.run(scenario())


def test_every_worker_without_room_is_a_throttle_and_none_live_an_outage() -> None:
    async def scenario() -> None:
        async with Cluster([ok]) as cluster:
            assert cluster.executor is not None
            links, (peer,) = cluster.executor.links, cluster.peers
            busy = WorkerLoad(sandboxes=8, busy=8)  # its max_sandboxes, by its heartbeat
            links.members([replace(peer.info(), load=busy)])
            with pytest.raises(TooManyRequests) as refused:
                await cluster.execute()
            assert refused.value.reason == "SandboxCapacityExceeded"
            links.members([replace(peer.info(), draining=True)])
            with pytest.raises(SandboxUnavailable, match="no worker host is available"):
                await cluster.execute()
        assert cluster.calls == [0]

    asyncio.run(scenario())

"""A sandbox's streamed response as the worker reads it: CHUNK and PRELUDE frames go
to the request's sink as they arrive, or are gathered; past the limit the sandbox
is cut off."""

from __future__ import annotations

import asyncio

import pytest

from ember.runtime import frames
from ember.sandbox import zygote


class _Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def prelude(self, data: bytes) -> None:
        self.got.append(("prelude", data))

    def chunk(self, data: bytes) -> None:
        self.got.append(("chunk", data))


def frame(kind: int, body: bytes) -> bytes:
    return frames.reply_frame(kind, 0, b"", body)


def test_chunks_go_to_the_sink_as_they_arrive_then_the_end_is_the_reply() -> None:
    async def run() -> None:
        channel = zygote._Channel()
        sink = channel.sink = _Sink()
        waiter = channel.expect()
        channel.data_received(frame(frames.PRELUDE, b"{}") + frame(frames.CHUNK, b"ab"))
        assert sink.got == [("prelude", b"{}"), ("chunk", b"ab")] and not waiter.done()
        channel.data_received(frame(frames.STREAM_END, b""))
        assert (await waiter)[0] == frames.STREAM_END
        assert channel.take_gathered() == b""

    asyncio.run(run())


def test_without_a_sink_the_stream_is_gathered_with_lambdas_prelude_delimiter() -> None:
    async def run() -> None:
        channel = zygote._Channel()
        channel.expect()
        channel.data_received(frame(frames.PRELUDE, b"{}") + frame(frames.CHUNK, b"ab"))
        assert channel.take_gathered() == b"{}" + b"\0" * 8 + b"ab"

    asyncio.run(run())


def test_a_stream_past_the_limit_cuts_the_sandbox_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zygote, "MAX_STREAMED_RESPONSE", 5)

    async def run() -> None:
        channel = zygote._Channel()
        sink = channel.sink = _Sink()
        waiter = channel.expect()
        channel.data_received(frame(frames.CHUNK, b"abc") + frame(frames.CHUNK, b"def"))
        assert sink.got == [("chunk", b"abc")]
        assert channel.overflowed and channel.closed
        with pytest.raises(EOFError):
            await waiter

    asyncio.run(run())

"""The channel's frames: both ends' handshake, many frames, and every way a frame is refused."""

from __future__ import annotations

import pytest

from ember.scheduling import channel
from ember.scheduling.channel import ChannelError, Frame, FrontendOpener, Sealer, WorkerOpener

TOKEN = b"the cluster token"


class Pair:
    """Both ends of one connection after the handshake, as the worker and a frontend run it."""

    def __init__(self, token: bytes = TOKEN, frontend_token: bytes = TOKEN) -> None:
        self.worker_nonce = channel.new_nonce()
        self.frontend_nonce = channel.new_nonce()
        self.worker_out = Sealer(channel.hello_key(token, self.worker_nonce))
        self.worker_in = WorkerOpener(token, self.worker_nonce)
        self.frontend_in = FrontendOpener(token, self.frontend_nonce)
        hello = self.worker_out.seal(
            channel.HELLO, meta={"worker": "w1"}, payload=self.worker_nonce
        )
        [frame] = self.frontend_in.feed(hello)
        assert frame.meta == {"worker": "w1"}
        self.frontend_out = Sealer(
            channel.frontend_key(frontend_token, frame.payload, self.frontend_nonce)
        )
        self.frontend_hello = self.frontend_out.seal(
            channel.HELLO, meta={"frontend": "f1"}, payload=self.frontend_nonce
        )

    def open_worker(self) -> list[Frame]:
        frames = self.worker_in.feed(self.frontend_hello)
        self.worker_out.key = channel.worker_key(
            TOKEN, self.worker_nonce, self.worker_in.frontend_nonce
        )
        return frames


def test_frames_cross_both_ways_in_any_chunking() -> None:
    pair = Pair()
    assert pair.open_worker()[0].meta == {"frontend": "f1"}
    big = bytes(range(256)) * (6 * 1024 * 1024 // 256)  # a 6 MB event, authenticated piecewise
    wire = pair.frontend_out.seal(channel.CALL, 7, {"rev": "r1"}, big)
    wire += pair.frontend_out.seal(channel.CALL, 8, None, b"{}")
    received: list[Frame] = []
    for start in range(0, len(wire), 65_000):
        received += pair.worker_in.feed(wire[start : start + 65_000])
    assert [(f.kind, f.call, f.meta) for f in received] == [
        (channel.CALL, 7, {"rev": "r1"}),
        (channel.CALL, 8, {}),
    ]
    assert received[0].payload == big and received[1].payload == b"{}"
    reply = pair.worker_out.seal(channel.RESULT, 7, {"outcome": "ok"}, b'"done"')
    assert pair.frontend_in.feed(reply) == [Frame(channel.RESULT, 7, {"outcome": "ok"}, b'"done"')]


def test_a_frontend_without_the_token_is_refused_at_its_first_frame() -> None:
    pair = Pair(frontend_token=b"a guess")
    with pytest.raises(ChannelError, match="authentication"):
        pair.open_worker()


def test_a_worker_without_the_token_is_refused_at_its_hello() -> None:
    nonce = channel.new_nonce()
    forged = Sealer(channel.hello_key(b"a guess", nonce)).seal(channel.HELLO, payload=nonce)
    with pytest.raises(ChannelError, match="authentication"):
        FrontendOpener(TOKEN, channel.new_nonce()).feed(forged)


def test_a_tampered_frame_is_refused() -> None:
    pair = Pair()
    pair.open_worker()
    wire = bytearray(pair.frontend_out.seal(channel.CALL, 1, {"rev": "r1"}, b'{"a": 1}'))
    wire[-40] ^= 1  # a bit of the payload
    with pytest.raises(ChannelError, match="authentication"):
        pair.worker_in.feed(bytes(wire))


def test_a_replayed_or_reordered_frame_is_refused() -> None:
    pair = Pair()
    pair.open_worker()
    first = pair.frontend_out.seal(channel.CALL, 1, None, b"{}")
    second = pair.frontend_out.seal(channel.CALL, 2, None, b"{}")
    with pytest.raises(ChannelError):
        pair.worker_in.feed(second)  # before the first
    pair = Pair()
    pair.open_worker()
    first = pair.frontend_out.seal(channel.CALL, 1, None, b"{}")
    pair.worker_in.feed(first)
    with pytest.raises(ChannelError):
        pair.worker_in.feed(first)  # again


def test_a_frame_from_another_connection_is_refused() -> None:
    one, other = Pair(), Pair()
    one.open_worker()
    other.open_worker()
    frame = one.frontend_out.seal(channel.CALL, 1, None, b"{}")
    other.frontend_out.seal(channel.CALL, 1, None, b"{}")  # same sequence number
    with pytest.raises(ChannelError):
        other.worker_in.feed(frame)


def test_a_first_frame_that_is_not_hello_is_refused() -> None:
    nonce = channel.new_nonce()
    opener = WorkerOpener(TOKEN, nonce)
    call = Sealer(channel.frontend_key(TOKEN, nonce, b"x" * 16)).seal(
        channel.CALL, 1, None, b"x" * 16
    )
    with pytest.raises(ChannelError, match="HELLO"):
        opener.feed(call)


def test_an_oversized_frame_is_refused_from_its_head() -> None:
    pair = Pair()
    pair.open_worker()
    head = channel.HEAD.pack(channel.CALL, 1, 0, channel.MAX_PAYLOAD + 1)
    with pytest.raises(ChannelError, match="too large"):
        pair.worker_in.feed(head)


def test_nothing_large_is_buffered_before_the_handshake() -> None:
    opener = WorkerOpener(TOKEN, channel.new_nonce())
    head = channel.HEAD.pack(channel.HELLO, 0, 0, 1024 * 1024)
    with pytest.raises(ChannelError, match="not a HELLO"):
        opener.feed(head)


def test_both_ends_forget_the_same_records() -> None:
    sent: dict[str, None] = {}
    held: dict[str, int] = {}
    for n in range(channel.MAX_RECORDS + 10):
        revision = f"r{n % (channel.MAX_RECORDS + 5)}"
        if revision not in sent:  # the frontend sends the record only then
            channel.remember(sent, revision, None)
            channel.remember(held, revision, n)
        assert revision in held
    assert list(sent) == list(held) and len(held) == channel.MAX_RECORDS

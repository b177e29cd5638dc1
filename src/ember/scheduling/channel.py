"""The frontend-to-worker channel's frames and their authentication (no I/O here).

One TCP connection per (frontend, worker) pair carries many calls at once,
each named by a call id. Every frame is::

    HEAD (kind, call id, meta length, payload length)  meta  payload  tag

``meta`` is an orjson object (or empty), ``payload`` raw bytes (an event, a
result, log output) never re-encoded, and ``tag`` the HMAC-SHA256 of the
frame's sequence number and bytes, keyed by a key derived from the cluster
token and both ends' per-connection random nonces. A frame replayed from
another connection fails (other nonces, other key); one dropped, repeated or
reordered within a connection fails (the sequence number is not sent: each
end counts). The first frame that fails ends the connection.

Handshake: the worker speaks first, ``HELLO`` with its nonce as payload
(keyed by the token and that nonce alone); the frontend answers ``HELLO``
with its own nonce, keyed by both; from then on each direction has its own
key. Why hand-written rather than gRPC: the budget is +0.3 ms p50 for the
whole hop, and gRPC's Python stack costs more than that per call; this is
one write and one parse per frame on asyncio's fastest path, the house
style of ``ember.runtime.frames`` and the zygote channel.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from typing import Any, NamedTuple, TypeVar

import orjson

T = TypeVar("T")

HEAD = struct.Struct("!BQII")  # kind, call id, meta length, payload length
SEQ = struct.Struct("!Q")
TAG_SIZE = 32
NONCE_SIZE = 16
MAX_META = 4 * 1024 * 1024
MAX_HELLO_META = 1024
# A 6 MB event or result plus a call's captured log (at most 4 MB) and room.
MAX_PAYLOAD = 6_291_556 + 4 * 1024 * 1024 + 64 * 1024
# Frames at least this large are authenticated piecewise rather than copied once more.
_PIECEWISE = 64 * 1024

# Both directions
HELLO = 1  # the handshake; meta names the sender (worker id / frontend id)
# Frontend -> worker
CALL = 2  # meta: the request (and the record, the first time its revision is sent; "stream":
# the caller reads a streamed response as it is written); payload: event
PROVISION = 3  # meta: revision (and record), count; answered with DONE
LIST = 4  # every sandbox of the worker; answered with DONE
# Worker -> frontend
STARTED = 10  # the call has a sandbox and is running; meta: initMs; payload: Init's output
LOG = 11  # output of a running call, as it comes
RESULT = 12  # meta: outcome, maxRssKb, durationMs, warm, log (bytes of payload that are log)
INIT_FAILED = 13  # meta: initMs, log; payload: log + the error JSON
REFUSED = 14  # not started: meta reason "full" (no room), "draining", "unknown" (no record)
FAILED = 15  # not run: meta code (an ember error code), message, reason/retryAfter
DONE = 16  # the answer to PROVISION or LIST; meta: the answer
HEARTBEAT = 17  # every second, call id 0; meta: load and idle warm sandboxes by revision
CHUNK = 18  # a piece of a streamed response (the CALL's meta had "stream"), as written
PRELUDE = 19  # a streamed response's HTTP prelude (JSON), before its chunks


# Function records each end keeps per connection. The frontend sends a revision's
# record only when it is not among them; both ends forget the one sent longest
# ago past this many, in the same order (one ordered stream), so they always agree.
MAX_RECORDS = 4096


def remember(records: dict[str, T], revision_id: str, record: T) -> None:
    """Keep ``record`` as the newest sent on this connection (``MAX_RECORDS`` at most)."""
    records.pop(revision_id, None)
    records[revision_id] = record
    if len(records) > MAX_RECORDS:
        del records[next(iter(records))]


class ChannelError(Exception):
    """A frame that is malformed, too large, or fails authentication."""


class Frame(NamedTuple):
    kind: int
    call: int
    meta: dict[str, Any]
    payload: bytes


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def derive(token: bytes, label: bytes, worker_nonce: bytes, frontend_nonce: bytes = b"") -> bytes:
    """A key for one direction of one connection."""
    return hmac.digest(token, label + worker_nonce + frontend_nonce, "sha256")


def hello_key(token: bytes, worker_nonce: bytes) -> bytes:
    return derive(token, b"ember-channel hello", worker_nonce)


def frontend_key(token: bytes, worker_nonce: bytes, frontend_nonce: bytes) -> bytes:
    return derive(token, b"ember-channel frontend>worker", worker_nonce, frontend_nonce)


def worker_key(token: bytes, worker_nonce: bytes, frontend_nonce: bytes) -> bytes:
    return derive(token, b"ember-channel worker>frontend", worker_nonce, frontend_nonce)


def _tag(key: bytes, seq: int, parts: tuple[bytes | memoryview, ...], size: int) -> bytes:
    if size < _PIECEWISE:
        return hmac.digest(key, SEQ.pack(seq) + b"".join(parts), "sha256")
    mac = hmac.new(key, SEQ.pack(seq), hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


class Sealer:
    """Encodes and authenticates the frames one end sends, in order."""

    __slots__ = ("key", "seq")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.seq = 0

    def seal(
        self, kind: int, call: int = 0, meta: dict[str, Any] | None = None, payload: bytes = b""
    ) -> bytes:
        encoded = orjson.dumps(meta) if meta else b""
        head = HEAD.pack(kind, call, len(encoded), len(payload))
        parts = (head, encoded, payload)
        tag = _tag(self.key, self.seq, parts, len(payload))
        self.seq += 1
        return b"".join((head, encoded, payload, tag))


class Opener:
    """Parses and authenticates the frames one end receives, in order.

    ``feed`` takes bytes as they arrive and returns the whole frames among
    them; it raises ChannelError on the first bad one (and forever after).
    """

    __slots__ = ("buffer", "key", "next_key", "seq")

    def __init__(self, key: bytes | None) -> None:
        self.key = key  # None: not known yet (the first frame, a HELLO, carries a nonce)
        self.next_key: bytes | None = None  # the key after that HELLO, when another
        self.seq = 0
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self.buffer
        buffer += data
        frames: list[Frame] = []
        while len(buffer) >= HEAD.size:
            kind, call, meta_len, payload_len = HEAD.unpack_from(buffer)
            if meta_len > MAX_META or payload_len > MAX_PAYLOAD:
                raise ChannelError(f"frame too large ({meta_len} + {payload_len} bytes)")
            if self.key is None and (meta_len > MAX_HELLO_META or payload_len != NONCE_SIZE):
                # Nothing larger is buffered before the peer has proved it has the token.
                raise ChannelError("the first frame is not a HELLO")
            end = HEAD.size + meta_len + payload_len
            if len(buffer) < end + TAG_SIZE:
                break
            frames.append(self._open(bytes(buffer[: end + TAG_SIZE]), kind, call, meta_len))
            del buffer[: end + TAG_SIZE]
        return frames

    def _open(self, frame: bytes, kind: int, call: int, meta_len: int) -> Frame:
        end = len(frame) - TAG_SIZE
        view = memoryview(frame)
        if self.key is None:
            self.key = self._hello_key(kind, view[HEAD.size + meta_len : end])
        expected = _tag(self.key, self.seq, (view[:end],), end)
        if not hmac.compare_digest(expected, view[end:]):
            raise ChannelError("frame failed authentication")
        self.seq += 1
        if self.next_key is not None:
            self.key, self.next_key = self.next_key, None
        start = HEAD.size + meta_len
        try:
            meta = orjson.loads(view[HEAD.size : start]) if meta_len else {}
        except orjson.JSONDecodeError:
            raise ChannelError("frame meta is not JSON") from None
        if not isinstance(meta, dict):
            raise ChannelError("frame meta is not an object")
        return Frame(kind, call, meta, frame[start:end])

    def _hello_key(self, kind: int, nonce: memoryview) -> bytes:
        raise ChannelError("no key for this connection")


class FrontendOpener(Opener):
    """The frontend's: the worker's first frame is its HELLO, with its nonce
    (``worker_nonce`` once read); the rest are keyed by both nonces."""

    __slots__ = ("frontend_nonce", "token", "worker_nonce")

    def __init__(self, token: bytes, frontend_nonce: bytes) -> None:
        super().__init__(None)
        self.token = token
        self.frontend_nonce = frontend_nonce
        self.worker_nonce = b""

    def _hello_key(self, kind: int, nonce: memoryview) -> bytes:
        if kind != HELLO or len(nonce) != NONCE_SIZE:
            raise ChannelError("the worker did not start with HELLO")
        self.worker_nonce = bytes(nonce)
        self.next_key = worker_key(self.token, self.worker_nonce, self.frontend_nonce)
        return hello_key(self.token, self.worker_nonce)


class WorkerOpener(Opener):
    """The worker's: the frontend's first frame is its HELLO, with its nonce
    (``frontend_nonce`` once read), keyed like the rest by both nonces."""

    __slots__ = ("frontend_nonce", "token", "worker_nonce")

    def __init__(self, token: bytes, worker_nonce: bytes) -> None:
        super().__init__(None)
        self.token = token
        self.worker_nonce = worker_nonce
        self.frontend_nonce = b""

    def _hello_key(self, kind: int, nonce: memoryview) -> bytes:
        if kind != HELLO or len(nonce) != NONCE_SIZE:
            raise ChannelError("the frontend did not start with HELLO")
        self.frontend_nonce = bytes(nonce)
        return frontend_key(self.token, self.worker_nonce, self.frontend_nonce)

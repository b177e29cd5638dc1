"""The contract of an event source's client (RabbitMQ; NATS JetStream, ember's extension).

A ``Source`` is one connection to one broker for one mapping; it hands out
``Consumer``s, each with its own prefetch window. A consumer gives out
messages in the order the broker delivered them, in batches; a batch is
settled exactly once, whole: ``ack`` after the function succeeded,
``requeue`` otherwise, so that the broker delivers it again (at least once:
nothing is acknowledged before the function has run). A consumer or source
that is closed, or whose connection dropped, settles nothing more: every
message it held unsettled is redelivered by the broker, to this node or
another (competing consumers), which is what makes a kill -9 lose nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Consumer(Protocol):
    async def batch(self, size: int, window: float) -> Sequence[object] | None:
        """Wait for a first message, then take more until ``size`` or ``window``
        seconds after the first; None when the consumer's connection is gone."""
        ...

    def event(self, batch: Sequence[object]) -> bytes:
        """The function's event for ``batch``, in Lambda's shape for this source."""
        ...

    async def ack(self, batch: Sequence[object]) -> None:
        """Acknowledge ``batch``: the broker forgets it."""
        ...

    async def requeue(self, batch: Sequence[object]) -> None:
        """Hand ``batch`` back: the broker delivers it again, marked redelivered."""
        ...

    async def close(self) -> None:
        """Stop consuming; unsettled messages go back to the broker. Idempotent."""
        ...


class Source(Protocol):
    async def open(self) -> None:
        """Connect and check the queue exists; raises ``BrokerUnavailable``."""
        ...

    async def consumer(self, prefetch: int) -> Consumer:
        """A new consumer of the queue holding at most ``prefetch`` unsettled messages."""
        ...

    async def backlog(self) -> int:
        """Messages ready in the queue (none taken by any consumer yet)."""
        ...

    async def retire(self) -> None:
        """The mapping was deleted: remove what the broker keeps for it (a JetStream
        durable consumer; nothing for RabbitMQ), connecting if need be. Removing
        what is already gone is not an error; raises ``BrokerUnavailable``."""
        ...

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (closed, or dropped by the broker)."""
        ...

    async def close(self) -> None:
        """Close every consumer and the connection. Idempotent."""
        ...

"""The queue backend contract: every backend (SQLite now, Redis Streams later) keeps it.

Terminology: an *event* is accepted (``enqueue``) and becomes a *message*
when a receiver takes it with a visibility timeout; the message's
``receipt`` names that one lease. Acknowledging, returning (``nack``) or
dead-lettering with a stale receipt (the lease expired and someone else took
the message again) does nothing and returns False, so a slow poller can never
undo the work of the one that took over.

Delivery is at least once: a message whose lease expires is received again,
with the same ``id`` and ``request_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ember.errors import PlatformError

Clock = Callable[[], float]  # wall-clock seconds (event ages survive restarts)
Visibility = Callable[[str], float]  # function name -> seconds a received message stays hidden


class QueueClosed(PlatformError):
    """The queue was closed; the call did nothing."""

    def __init__(self, backend: str) -> None:
        super().__init__(f"The {backend} event queue is closed.")
        self.backend = backend


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to accept: the payload is already validated JSON."""

    function: str
    request_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One received event. ``invocations`` and ``throttles`` persist across ``nack``."""

    id: str
    receipt: str
    function: str
    request_id: str
    payload: bytes
    enqueued_at: float  # when it was accepted (or redriven), wall-clock seconds
    invocations: int = 0  # times the function ran for it and failed
    throttles: int = 0  # times it was requeued after a throttle or platform error

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Message:
        """A stored event of a SQL backend: (id, function, request_id, payload,
        enqueued_at, invocations, throttles, lease, ...)."""
        id_, function, request_id, payload, enqueued_at, invocations, throttles, lease = row[:8]
        return cls(
            id=str(id_),
            receipt=f"{id_}.{lease}",
            function=function,
            request_id=request_id,
            payload=bytes(payload),
            enqueued_at=enqueued_at,
            invocations=invocations,
            throttles=throttles,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message is dead-lettered: Lambda's condition and the last error seen."""

    condition: str  # RetriesExhausted | EventAgeExceeded | DestinationNotFound
    error_type: str = ""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    function: str
    request_id: str
    payload: bytes
    condition: str
    error_type: str
    error_message: str
    invocations: int
    enqueued_at: float
    failed_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DeadLetter:
        """A stored dead letter of a SQL backend, in the field order above."""
        return cls(str(row[0]), row[1], row[2], bytes(row[3]), *row[4:])


@dataclass(frozen=True, slots=True)
class FunctionStats:
    """A snapshot of one function's queue."""

    function: str
    depth: int  # waiting: ready now or delayed for a retry
    in_flight: int  # received, lease not expired, not yet acknowledged
    oldest_age_seconds: float | None  # age of the oldest queued event
    retrying: int  # queued events that failed or were throttled at least once
    dead_letters: int


class EventQueue(Protocol):
    """A durable (or, for ``memory``, in-process) queue of asynchronous events."""

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        """Accept ``events``; when this returns they survive a crash of the process."""
        ...

    async def receive(self, limit: int, visibility: Visibility, wait: float = 0.0) -> list[Message]:
        """Take up to ``limit`` visible messages, fairly across functions.

        Each message stays hidden for ``visibility(function)`` seconds, then
        becomes receivable again unless acknowledged. With ``wait`` > 0 and
        nothing visible, wait up to that many seconds for an event to arrive
        or become visible before returning an empty list.
        """
        ...

    async def ack(self, message: Message, follow_ups: Sequence[NewEvent] = ()) -> bool:
        """Remove ``message`` and accept ``follow_ups`` atomically (destination records).

        False, and nothing changes, when the receipt is stale.
        """
        ...

    async def nack(self, message: Message, delay: float) -> bool:
        """Return ``message`` to the queue, visible after ``delay`` seconds.

        Its ``invocations`` and ``throttles`` counters are stored as given.
        """
        ...

    async def dead_letter(self, message: Message, failure: Failure) -> bool:
        """Move ``message`` to its function's dead-letter store, atomically."""
        ...

    async def dead_letters(
        self, function: str, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """The function's dead letters in arrival order, ids greater than ``after``."""
        ...

    async def get_dead_letter(self, function: str, dead_letter_id: str) -> DeadLetter | None: ...

    async def redrive(self, function: str, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all when ``ids`` is None) back on the queue.

        They keep their request ids; counters and age start again. Returns how
        many moved; unknown ids are ignored.
        """
        ...

    async def purge(self, function: str) -> int:
        """Delete the function's dead letters; returns how many."""
        ...

    async def discard(self, function: str) -> int:
        """Delete every event of ``function`` and of ``function:qualifier``; returns how many.

        Deleting a function discards its pending events, as on Lambda. Leased
        ones go too: their receipts turn stale, so the poller delivering one
        can neither requeue nor dead-letter it (a dead letter would reappear
        under a new function of the same name).
        """
        ...

    async def statistics(self) -> list[FunctionStats]:
        """One snapshot per function with queued events or dead letters."""
        ...

    async def close(self) -> None:
        """Release resources. Idempotent; other calls raise QueueClosed afterwards."""
        ...


class ConfigStore(Protocol):
    """Event-invoke-configs as opaque JSON documents keyed by (function, qualifier)."""

    async def load_configs(self) -> dict[tuple[str, str], str]: ...

    async def put_config(self, function: str, qualifier: str, document: str) -> None:
        """Create or replace; durable on return."""
        ...

    async def delete_config(self, function: str, qualifier: str) -> None: ...

    def discard_configs(self, function: str) -> None:
        """Schedule removal of every config of ``function`` without waiting.

        For synchronous callers (registry listeners); durable shortly after.
        """
        ...


class QueueBackend(EventQueue, ConfigStore, Protocol):
    """What one embedded backend provides: the queue and the configs, in one store."""

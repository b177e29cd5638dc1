"""The cluster's scheduling contracts: worker membership and placement of calls.

In cluster mode (``ember serve --role frontend`` plus ``ember worker``) a
frontend never holds sandboxes. It asks a ``Placement`` which worker hosts to
try for a call, in order, and sends the call over the frontend-to-worker
channel; the worker's own Worker Manager leases or Inits the sandbox there.

Membership is PostgreSQL rows (one per worker, refreshed by its heartbeat);
warm state is never written to the database: frontends learn it from the
workers themselves (each reply and the heartbeat frames on the channel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# A worker silent for this long leaves placement (issue 14: heartbeats every second).
HEARTBEAT_SECONDS = 1.0
SILENCE_SECONDS = 3.0


@dataclass(frozen=True)
class WorkerLoad:
    """What a worker reports about itself with each heartbeat."""

    sandboxes: int = 0  # live sandboxes, idle or busy
    busy: int = 0
    memory_reserved_mb: int = 0  # of every live sandbox, idle or busy
    # Of the busy ones only: placement's measure of room, since a worker evicts idle
    # sandboxes of other revisions to make room for a new one.
    busy_memory_mb: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    """One worker host as the membership table holds it."""

    worker_id: str
    address: str  # HOST:PORT of its channel listener, as frontends reach it
    memory_mb: int  # memory it offers to sandboxes
    max_sandboxes: int
    runtimes: tuple[str, ...]  # the runtimes it can run
    isolation: str  # "full", "process" ...: what its start-up probe proved
    draining: bool = False  # placement sends it nothing new
    # Seconds since its last heartbeat, by the database's clock (no clock skew
    # between hosts matters).
    silence: float = 0.0
    load: WorkerLoad = field(default_factory=WorkerLoad)
    started: str = ""  # ISO 8601, when it registered


class Membership(Protocol):
    """The worker table (PostgreSQL in a cluster; memory in tests).

    Every method is one short statement; none runs on a call's path.
    """

    async def register(self, info: WorkerInfo) -> None:
        """Insert or replace this worker's row (a restarted worker re-registers
        under the same id), not draining, with a fresh heartbeat."""
        ...

    async def heartbeat(self, worker_id: str, load: WorkerLoad) -> bool | None:
        """Refresh the row's heartbeat and load. Returns whether the worker is
        draining, or None when its row is gone (removed: it must re-register)."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker, live or silent, with its silence in seconds."""
        ...

    async def drain(self, worker_id: str) -> bool:
        """Mark a worker draining: no new placements; warm sandboxes finish.
        False when no worker has that id."""
        ...

    async def leave(self, worker_id: str) -> None:
        """Remove the worker's row (a clean shutdown). Idempotent."""
        ...

    async def set_runtimes(self, worker_id: str, runtimes: tuple[str, ...]) -> None:
        """The runtimes the worker can run now (it installed or removed one). A worker
        without a row is left alone (its next register carries them)."""
        ...


class Placement(Protocol):
    """A frontend's choice of worker hosts for one call. In memory, no I/O: fed by
    membership polls and by what workers say on the channel; time is injected."""

    def members(self, workers: Sequence[WorkerInfo]) -> None:
        """The membership table as last read: workers silent for SILENCE_SECONDS or
        draining stop receiving new calls; new ones join the hash ring."""
        ...

    def warm(self, worker_id: str, idle: Mapping[str, int]) -> None:
        """A worker's idle warm sandboxes by revision id, as its heartbeat frame
        states them (replaces what was known of that worker)."""
        ...

    def candidates(self, revision_id: str, memory_mb: int) -> list[str]:
        """Worker ids to try, in order: those holding an idle warm sandbox of the
        revision first, then the revision's rendezvous (highest-random-weight)
        order over live, non-draining workers with room for ``memory_mb``.
        Empty when no worker can take it."""
        ...

    def dispatched(self, worker_id: str, revision_id: str, memory_mb: int) -> None:
        """A call was sent: count it against the worker's room; an idle warm
        sandbox of the revision there is now presumed busy."""
        ...

    def finished(self, worker_id: str, revision_id: str, memory_mb: int, warm: bool) -> None:
        """The worker answered: the room is given back (a refusal no longer
        holds); ``warm`` says the sandbox went back to its idle pool there."""
        ...

    def full(self, worker_id: str) -> None:
        """The worker refused a call for want of room: skip it until its next heartbeat
        or until a call there is ``finished`` (room came back)."""
        ...

    def lost(self, worker_id: str) -> None:
        """The channel to the worker broke: no call goes there until it is heard again."""
        ...

    def any_live(self) -> bool:
        """Whether some worker is live: heard within SILENCE_SECONDS, not draining, its
        channel not broken since. Asked when no candidate took a call: with a live
        worker the call is throttled (every one is full), without one it fails."""
        ...

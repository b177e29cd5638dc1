"""What every subsystem's wiring hands the server: its part of the process lifespan.

The server starts parts in the order it lists them, runs every part's loops
in one task group, and on shutdown stops them all, then closes them in
reverse order. A part owns what it built, except the metadata stores and
blobs, which ``ember.storage.wiring.Storage`` owns and closes last.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

Loop = Coroutine[Any, Any, None]


class Part(Protocol):
    async def start(self) -> None:
        """Load state and start what must run before the server answers."""
        ...

    def loops(self) -> list[Loop]:
        """The background loops to run in the lifespan's task group (may be none)."""
        ...

    def stop(self) -> None:
        """Make every loop return soon. Idempotent."""
        ...

    async def close(self) -> None:
        """Release what ``start`` acquired; after every part has stopped."""
        ...


# Waits one flush interval; tests inject one they release by hand.
Tick = Callable[[], Awaitable[None]]


class BatchState(enum.Enum):
    NEW = "new"  # gathering; nothing written until open
    OPEN = "open"  # the store is open, the loop may flush
    STOPPING = "stopping"  # the loop returns after its current flush; gathering still works
    CLOSED = "closed"  # flushed and closed: what is gathered now is dropped (and counted)


class Batched:
    """The life of a part that gathers in memory and writes in batches (the audit log,
    the invocation history): ``run`` flushes on every tick, or at once when ``_wake``
    is set, until ``stop``; ``close`` writes what is pending, then closes the store.

    A subclass gives ``flush`` (write what is pending; on failure keep it and raise),
    ``_open_store``, ``_close_store`` and ``_pending`` (how much waits, for the log).
    A store that cannot be reached does not stop the loop: the failure is counted
    (``_failed``) and logged, and the next tick retries.
    """

    def __init__(self, tick: Tick, log: logging.Logger, what: str) -> None:
        self._tick = tick
        self._log = log
        self._what = what  # names the part in log lines: "audit", "history"
        self._state = BatchState.NEW
        self._wake = asyncio.Event()
        self._failed = 0

    async def flush(self) -> int:
        raise NotImplementedError

    async def _open_store(self) -> None:
        raise NotImplementedError

    async def _close_store(self) -> None:
        raise NotImplementedError

    def _pending(self) -> int:
        raise NotImplementedError

    async def open(self) -> None:
        await self._open_store()
        if self._state is BatchState.NEW:
            self._state = BatchState.OPEN

    async def run(self) -> None:
        """Flush on every tick (or wake-up) until ``stop``."""
        while self._state is BatchState.OPEN:
            await self._next_tick()
            await self._flush_logged()

    def stop(self) -> None:
        """Make ``run`` return after its current flush. Idempotent."""
        if self._state in (BatchState.NEW, BatchState.OPEN):
            self._state = BatchState.STOPPING
        self._wake.set()

    async def close(self) -> None:
        """Write what is pending, then close the store. Idempotent."""
        if self._state is BatchState.CLOSED:
            return
        self._state = BatchState.STOPPING
        try:
            await self.flush()
        except Exception:
            self._log.exception("%s: %d could not be written at close", self._what, self._pending())
        finally:
            self._state = BatchState.CLOSED
            await self._close_store()

    async def _next_tick(self) -> None:
        """Wait for the interval or a wake-up (a full batch, ``stop``), whichever is first."""
        waits = [asyncio.ensure_future(self._tick()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._wake.clear()

    async def _flush_logged(self) -> None:
        # An unreachable store must not take the server down with this loop.
        try:
            await self.flush()
        except Exception as exc:
            self._failed += 1
            self._log.warning("%s: cannot write %d yet: %s", self._what, self._pending(), exc)

"""AuditLog: the sink the guard records into, batching writes off the request path.

``record`` only appends to the pending batch. The flush loop writes the batch
when the interval ticks (0.5 s) or as soon as it holds ``batch_size`` entries,
and prunes the store to the newest ``retention`` entries every
``retention // 100`` written (so a store holds at most 1 % more than asked,
per node, between prunes). ``close`` writes what is still pending: a change
accepted before a clean stop is in the log after it.

A store that cannot be reached does not stop the server: the batch stays
pending and the next tick retries it; past ``max_pending`` entries the oldest
are dropped (counted in ``statistics()``), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ember.audit.base import AuditPage, AuditQuery, AuditStore
from ember.auth.base import AuditEntry

log = logging.getLogger("ember.audit")

# Waits one flush interval; tests inject one they release by hand.
Tick = Callable[[], Awaitable[None]]

FLUSH_INTERVAL_SECONDS = 0.5
BATCH_SIZE = 500
MAX_PENDING = 100_000


class _State(enum.Enum):
    NEW = "new"  # recording; nothing written until open
    OPEN = "open"  # the store is open, the loop may flush
    STOPPING = "stopping"  # the loop returns after its current flush; record still works
    CLOSED = "closed"  # flushed and closed: record drops (and counts) entries


@dataclass(frozen=True, slots=True)
class AuditStatistics:
    pending: int  # recorded, not yet written
    written: int  # written since start
    dropped: int  # lost: beyond max_pending, or recorded after close
    failed_flushes: int  # flushes the store refused (retried on the next tick)


class AuditLog:
    """See the module docstring; implements ``ember.auth.base.AuditSink``."""

    def __init__(
        self,
        store: AuditStore,
        *,
        retention: int,
        batch_size: int = BATCH_SIZE,
        max_pending: int = MAX_PENDING,
        tick: Tick | None = None,
    ) -> None:
        if retention < 1:
            raise ValueError(f"audit retention {retention} must keep at least one entry")
        self._store = store
        self._retention = retention
        self._prune_every = max(1, retention // 100)
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._tick = tick or (lambda: asyncio.sleep(FLUSH_INTERVAL_SECONDS))
        self._state = _State.NEW
        # Invariant: in record order; never longer than max_pending.
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._unpruned = 0
        self._written = self._dropped = self._failed = 0

    def record(self, entry: AuditEntry) -> None:
        """Enqueue ``entry``; never blocks and never raises."""
        if self._state is _State.CLOSED:
            self._dropped += 1
            log.warning("audit entry of %s recorded after close: dropped", entry.request_id)
            return
        if len(self._pending) >= self._max_pending:
            del self._pending[0]
            self._dropped += 1
        self._pending.append(entry)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def query(self, query: AuditQuery) -> AuditPage:
        """Entries already written (pending ones are not yet visible), newest first."""
        return await self._store.query(query)

    async def open(self) -> None:
        """Open the store and prune it (the retention may have shrunk since the last run)."""
        await self._store.open()
        await self._store.prune(self._retention)
        if self._state is _State.NEW:
            self._state = _State.OPEN

    async def run(self) -> None:
        """Flush on every tick or full batch until ``stop``."""
        while self._state is _State.OPEN:
            await self._next_tick()
            await self._flush_logged()

    def stop(self) -> None:
        """Make ``run`` return after its current flush. Idempotent."""
        if self._state in (_State.NEW, _State.OPEN):
            self._state = _State.STOPPING
        self._wake.set()

    async def close(self) -> None:
        """Write what is pending, then close the store. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.STOPPING
        try:
            await self.flush()
        except Exception:
            log.exception("audit: %d entries could not be written at close", len(self._pending))
        finally:
            self._state = _State.CLOSED
            await self._store.close()

    async def flush(self) -> int:
        """Write the pending batch now; returns how many entries were written.

        On failure the batch is pending again (ahead of newer entries) and the
        store's error propagates.
        """
        async with self._flushing:
            batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                await self._store.append(batch)
            except BaseException:
                self._requeue(batch)
                raise
            self._written += len(batch)
            self._unpruned += len(batch)
            if self._unpruned >= self._prune_every:
                self._unpruned = 0
                await self._store.prune(self._retention)
            return len(batch)

    def statistics(self) -> AuditStatistics:
        return AuditStatistics(len(self._pending), self._written, self._dropped, self._failed)

    def _requeue(self, batch: list[AuditEntry]) -> None:
        merged = batch + self._pending
        overflow = max(0, len(merged) - self._max_pending)
        self._dropped += overflow
        self._pending = merged[overflow:]

    async def _next_tick(self) -> None:
        """Wait for the interval, a full batch or ``stop``, whichever comes first."""
        waits = [asyncio.ensure_future(self._tick()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._wake.clear()

    async def _flush_logged(self) -> None:
        # An unreachable store must not take the server down with this loop:
        # the batch stays pending and the next tick tries again.
        try:
            await self.flush()
        except Exception as exc:
            self._failed += 1
            log.warning("audit: cannot write %d entries yet: %s", len(self._pending), exc)

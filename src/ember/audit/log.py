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
import logging
from dataclasses import dataclass

from ember.audit.base import AuditPage, AuditQuery, AuditStore
from ember.auth.base import AuditEntry
from ember.lifecycle import Batched, BatchState, Tick

log = logging.getLogger("ember.audit")

FLUSH_INTERVAL_SECONDS = 0.5
BATCH_SIZE = 500
MAX_PENDING = 100_000


@dataclass(frozen=True, slots=True)
class AuditStatistics:
    pending: int  # recorded, not yet written
    written: int  # written since start
    dropped: int  # lost: beyond max_pending, or recorded after close
    failed_flushes: int  # flushes the store refused (retried on the next tick)


class AuditLog(Batched):
    """See the module docstring; implements ``ember.auth.base.AuditSink``. Its life
    (open, run, stop, close) is ``ember.lifecycle.Batched``'s."""

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
        super().__init__(tick or (lambda: asyncio.sleep(FLUSH_INTERVAL_SECONDS)), log, "audit")
        self._store = store
        self._retention = retention
        self._prune_every = max(1, retention // 100)
        self._batch_size = batch_size
        self._max_pending = max_pending
        # Invariant: in record order; never longer than max_pending.
        self._entries: list[AuditEntry] = []
        self._flushing = asyncio.Lock()
        self._unpruned = 0
        self._written = self._dropped = 0

    def record(self, entry: AuditEntry) -> None:
        """Enqueue ``entry``; never blocks and never raises."""
        if self._state is BatchState.CLOSED:
            self._dropped += 1
            log.warning("audit entry of %s recorded after close: dropped", entry.request_id)
            return
        if len(self._entries) >= self._max_pending:
            del self._entries[0]
            self._dropped += 1
        self._entries.append(entry)
        if len(self._entries) >= self._batch_size:
            self._wake.set()

    async def query(self, query: AuditQuery) -> AuditPage:
        """Entries already written (pending ones are not yet visible), newest first."""
        return await self._store.query(query)

    async def _open_store(self) -> None:
        """Open the store and prune it (the retention may have shrunk since the last run)."""
        await self._store.open()
        await self._store.prune(self._retention)

    async def _close_store(self) -> None:
        await self._store.close()

    def _pending(self) -> int:
        return len(self._entries)

    async def flush(self) -> int:
        """Write the pending batch now; returns how many entries were written.

        On failure the batch is pending again (ahead of newer entries) and the
        store's error propagates.
        """
        async with self._flushing:
            batch, self._entries = self._entries, []
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
        return AuditStatistics(len(self._entries), self._written, self._dropped, self._failed)

    def _requeue(self, batch: list[AuditEntry]) -> None:
        merged = batch + self._entries
        overflow = max(0, len(merged) - self._max_pending)
        self._dropped += overflow
        self._entries = merged[overflow:]

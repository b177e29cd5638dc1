"""The change feed of cluster mode: what other nodes commit, delivered to this node's memory.

Mental model: ``ember_documents.seq`` is a log position. The feed keeps the
last position it delivered and reads ``seq > position`` in seq order; since
writes draw their seq under ``CHANGE_LOCK``, that read never skips a change
that commits later with a smaller seq. NOTIFY only wakes the feed early; a
poll every ``poll_seconds`` catches a lost notification, and a reconnect
re-reads from the same position, so nothing is lost while the session is
away. Delivering a change twice is harmless (``apply`` is idempotent), which
is why ``start`` may record its position before the components load.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import psycopg

from ember.storage.base import Apply
from ember.storage.pg_metadata import CHANNEL, translated
from ember.storage.pg_session import Reconnect, Session, dedicated
from ember.storage.postgres import POOL_TIMEOUT_SECONDS, Database

log = logging.getLogger("ember.storage")

_CHANGES = """
SELECT seq, namespace, key, document, origin FROM ember_documents
WHERE seq > %s ORDER BY seq LIMIT %s
"""
_BATCH = 500


@dataclass(frozen=True)
class FeedStatistics:
    position: int  # the last seq read; every change up to it has been delivered
    delivered: int  # changes of other nodes handed to a namespace's apply
    connected: bool  # the LISTEN session is up


class PostgresChangeFeed:
    """See ``ember.storage.base.ChangeFeed``; one LISTEN session outside the pool."""

    def __init__(self, database: Database, poll_seconds: float = 0.5) -> None:
        self._db = database
        self._poll_seconds = poll_seconds
        self._watchers: dict[str, Apply] = {}
        self._stopped = asyncio.Event()
        # Invariant: every change with seq <= _position has been delivered (or was ours).
        self._position = 0
        self._delivered = 0
        self._connected = False

    def watch(self, namespace: str, apply: Apply) -> None:
        self._watchers[namespace] = apply

    async def start(self) -> None:
        """Deliver only what commits from now on: the components load the rest."""
        async with translated(), self._db.pool.connection() as conn:
            cursor = await conn.execute("SELECT coalesce(max(seq), 0) FROM ember_documents")
            row = await cursor.fetchone()
        self._position = int(row[0]) if row else 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            follow = group.create_task(self._follow())
            await self._stopped.wait()
            follow.cancel()

    def stop(self) -> None:
        self._stopped.set()

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(self._position, self._delivered, self._connected)

    async def _follow(self) -> None:
        """Listen, catch up, wait for a hint, forever; a lost session is reopened."""
        reconnect = Reconnect("the change feed", self._db)
        while True:
            try:
                async with await dedicated(self._db, "feed") as session:
                    await session.execute(f"LISTEN {CHANNEL}")
                    self._connected = True
                    reconnect.succeeded()
                    while True:
                        await self._catch_up(session)
                        await self._wait_for_hint(session)
            except (psycopg.Error, TimeoutError) as exc:
                self._connected = False
                await asyncio.sleep(reconnect.failed(exc))

    async def _catch_up(self, session: Session) -> None:
        while True:
            # A session cut without a reset (host gone) would hang the read.
            async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                cursor = await session.execute(_CHANGES, (self._position, _BATCH))
                rows = await cursor.fetchall()
            for seq, namespace, key, document, origin in rows:
                if origin != self._db.node_id:
                    await self._deliver(namespace, key, document)
                self._position = seq
            if len(rows) < _BATCH:
                return

    async def _deliver(self, namespace: str, key: str, document: str | None) -> None:
        apply = self._watchers.get(namespace)
        if apply is None:
            return
        try:
            await apply(key, document)
        except Exception:
            # One bad change must not stop the others reaching this node.
            log.exception("applying another node's change to %s %r failed", namespace, key)
        self._delivered += 1

    async def _wait_for_hint(self, session: Session) -> None:
        """Until a notification (those queued meanwhile drain with it) or the poll interval."""
        async for _ in session.notifies(timeout=self._poll_seconds, stop_after=1):
            pass

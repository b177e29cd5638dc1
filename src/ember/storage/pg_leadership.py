"""Cluster-wide singleton duties under PostgreSQL session advisory locks.

Each duty has its own session outside the pool: the lock lives exactly as
long as that session, so when the holder dies (the server closes a killed
process's session at once, an unreachable host's within seconds, see
``pg_session``) the lock is free and the next attempt of another node,
``retry_seconds`` later at most, takes it.

Sharp edge: a holder that loses its session keeps running its work until its
watchdog notices, up to ``retry_seconds`` (plus the check's own timeout)
after another node may have taken over. Duties must tolerate that overlap
(idempotent steps, conditional writes); the lock is no fence.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import psycopg

from ember.storage.base import Work
from ember.storage.pg_session import Reconnect, Session, dedicated
from ember.storage.postgres import POOL_TIMEOUT_SECONDS, Database

log = logging.getLogger("ember.storage")


def lock_key(duty: str) -> int:
    """The duty's advisory lock key: a stable signed 64-bit hash of ``"ember:" + duty``."""
    digest = hashlib.sha256(f"ember:{duty}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLeadership:
    """See ``ember.storage.base.Leadership``."""

    def __init__(self, database: Database, retry_seconds: float = 2.0) -> None:
        self._db = database
        self._retry_seconds = retry_seconds
        # Invariant: a duty is here exactly while its work runs under the lock.
        self._held: set[str] = set()

    def held(self) -> set[str]:
        """The duties this node holds now (a copy)."""
        return set(self._held)

    async def hold(self, duty: str, work: Work) -> None:
        """Returns when ``work`` returns; its exceptions propagate, the lock released."""
        reconnect = Reconnect(f"the {duty} duty", self._db, first=self._retry_seconds)
        while True:
            try:
                finished = await self._attempt(duty, work, reconnect)
            except (psycopg.Error, TimeoutError) as exc:
                await asyncio.sleep(reconnect.failed(exc))
                continue
            if finished is not None:
                # Outside the try: work's own psycopg error is not a lost session.
                return finished.result()
            # Lost while holding: step back one interval, so a healthy node's next attempt wins.
            await asyncio.sleep(self._retry_seconds)

    async def _attempt(
        self, duty: str, work: Work, reconnect: Reconnect
    ) -> asyncio.Future[None] | None:
        """One session: wait for the lock, then lead until work ends or the session does."""
        async with await dedicated(self._db, f"duty {duty}") as session:
            reconnect.succeeded()
            await self._acquire(session, lock_key(duty))
            return await self._lead(session, duty, work)

    async def _acquire(self, session: Session, key: int) -> None:
        while not await self._try_lock(session, key):
            await asyncio.sleep(self._retry_seconds)

    async def _try_lock(self, session: Session, key: int) -> bool:
        async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
            cursor = await session.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def _lead(self, session: Session, duty: str, work: Work) -> asyncio.Future[None] | None:
        """Run ``work`` while the session lives: its finished task, or None when the
        session was lost first (work cancelled, the duty to be won again)."""
        log.info("this node now holds the %s duty", duty)
        self._held.add(duty)
        task: asyncio.Future[None] = asyncio.ensure_future(work())
        try:
            while not await self._finished(task):
                if not await self._alive(session):
                    log.warning("lost the %s duty with its database session", duty)
                    return None
            return task
        finally:
            self._held.discard(duty)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _finished(self, task: asyncio.Future[None]) -> bool:
        await asyncio.wait((task,), timeout=self._retry_seconds)
        return task.done()

    async def _alive(self, session: Session) -> bool:
        try:
            async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                await session.execute("SELECT 1")
        except (psycopg.Error, TimeoutError):
            return False
        return True

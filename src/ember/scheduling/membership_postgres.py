"""The cluster's worker table in PostgreSQL: one row per worker host.

A worker inserts its row at start (``register``), refreshes it every
HEARTBEAT_SECONDS (``heartbeat``) and deletes it on a clean shutdown
(``leave``); frontends read the table (``workers``) to feed their Placement.
Silence is computed by the database's clock (``now() - heartbeat``), so no
host's clock has to agree with another's. Each method is one statement on the
shared pool; none runs on a call's path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ember.scheduling.base import WorkerInfo, WorkerLoad
from ember.storage.postgres import Database, Migration, unavailable

MIGRATION = Migration(
    "workers",
    [
        """
        CREATE TABLE workers (
            worker_id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            memory_mb INTEGER NOT NULL,
            max_sandboxes INTEGER NOT NULL,
            runtimes TEXT[] NOT NULL,
            isolation TEXT NOT NULL,
            draining BOOLEAN NOT NULL DEFAULT false,
            sandboxes INTEGER NOT NULL DEFAULT 0,
            busy INTEGER NOT NULL DEFAULT 0,
            memory_reserved_mb INTEGER NOT NULL DEFAULT 0,
            busy_memory_mb INTEGER NOT NULL DEFAULT 0,
            started TIMESTAMPTZ NOT NULL DEFAULT now(),
            heartbeat TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    ],
)

# A restarted worker re-registers under its id: its row is replaced whole, and
# whatever drain was asked of its previous life is forgotten with it.
_REGISTER = """
INSERT INTO workers (worker_id, address, memory_mb, max_sandboxes, runtimes, isolation,
                     sandboxes, busy, memory_reserved_mb, busy_memory_mb)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (worker_id) DO UPDATE SET
    address = excluded.address, memory_mb = excluded.memory_mb,
    max_sandboxes = excluded.max_sandboxes, runtimes = excluded.runtimes,
    isolation = excluded.isolation, draining = false, sandboxes = excluded.sandboxes,
    busy = excluded.busy, memory_reserved_mb = excluded.memory_reserved_mb,
    busy_memory_mb = excluded.busy_memory_mb, started = now(), heartbeat = now()
"""
_HEARTBEAT = """
UPDATE workers SET heartbeat = now(), sandboxes = %s, busy = %s, memory_reserved_mb = %s,
                   busy_memory_mb = %s
WHERE worker_id = %s RETURNING draining
"""
_WORKERS = """
SELECT worker_id, address, memory_mb, max_sandboxes, runtimes, isolation, draining,
       EXTRACT(EPOCH FROM now() - heartbeat)::float8, sandboxes, busy, memory_reserved_mb,
       busy_memory_mb, started
FROM workers ORDER BY worker_id
"""
_DRAIN = "UPDATE workers SET draining = true WHERE worker_id = %s RETURNING true"
_LEAVE = "DELETE FROM workers WHERE worker_id = %s"
_RUNTIMES = "UPDATE workers SET runtimes = %s WHERE worker_id = %s"
_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class PostgresMembership:
    """See ``ember.scheduling.base.Membership``; needs ``MIGRATION`` applied (the
    server's ``storage.open`` does). The pool is the shared ``Database``'s."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def register(self, info: WorkerInfo) -> None:
        load = info.load
        await self._execute(
            _REGISTER,
            (
                info.worker_id,
                info.address,
                info.memory_mb,
                info.max_sandboxes,
                list(info.runtimes),
                info.isolation,
                load.sandboxes,
                load.busy,
                load.memory_reserved_mb,
                load.busy_memory_mb,
            ),
        )

    async def heartbeat(self, worker_id: str, load: WorkerLoad) -> bool | None:
        params = (load.sandboxes, load.busy, load.memory_reserved_mb, load.busy_memory_mb)
        rows = await self._execute(_HEARTBEAT, (*params, worker_id))
        return bool(rows[0][0]) if rows else None

    async def workers(self) -> list[WorkerInfo]:
        return [_info(row) for row in await self._execute(_WORKERS, ())]

    async def drain(self, worker_id: str) -> bool:
        return bool(await self._execute(_DRAIN, (worker_id,)))

    async def leave(self, worker_id: str) -> None:
        await self._execute(_LEAVE, (worker_id,))

    async def set_runtimes(self, worker_id: str, runtimes: tuple[str, ...]) -> None:
        await self._execute(_RUNTIMES, (list(runtimes), worker_id))

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            async with self._database.pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchall() if cursor.description else []
        except _ERRORS as exc:
            raise unavailable(exc) from exc


def _info(row: tuple[Any, ...]) -> WorkerInfo:
    (worker_id, address, memory, most, runtimes, isolation, draining, silence) = row[:8]
    sandboxes, busy, reserved, busy_memory, started = row[8:]
    return WorkerInfo(
        worker_id=str(worker_id),
        address=str(address),
        memory_mb=int(memory),
        max_sandboxes=int(most),
        runtimes=tuple(runtimes),
        isolation=str(isolation),
        draining=bool(draining),
        silence=max(0.0, float(silence)),
        load=WorkerLoad(int(sandboxes), int(busy), int(reserved), int(busy_memory)),
        started=started.isoformat() if isinstance(started, datetime) else str(started),
    )

"""Settings and the node's Storage in, the audit log's part of the lifespan out.

Embedded mode keeps the log in ``<data_dir>/audit.sqlite3``; cluster mode in
the ``audit_events`` table of the shared PostgreSQL (its ``MIGRATION`` is
applied with storage's at start), which every node appends to and reads.
Nothing is cached in memory beyond the pending batch, so no feed is watched.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.audit.base import AuditStore
from ember.audit.log import AuditLog
from ember.audit.postgres import PostgresAuditStore
from ember.audit.sqlite import FILE_NAME, SqliteAuditStore
from ember.config import Settings
from ember.lifecycle import Loop
from ember.storage.wiring import Storage


def store(storage: Storage) -> AuditStore:
    """The store of the node's mode: SQLite in the data dir, or the cluster's database."""
    if storage.database is None:
        return SqliteAuditStore(storage.data_dir / FILE_NAME)
    return PostgresAuditStore(storage.database)


@dataclass(frozen=True)
class Audit:
    """The audit log's part (see ``ember.lifecycle.Part``): opens the store, runs the
    flush loop, and on close writes what is pending. ``log`` is the guard's sink."""

    log: AuditLog

    @classmethod
    def build(cls, settings: Settings, storage: Storage) -> Audit:
        return cls(AuditLog(store(storage), retention=settings.audit_retention))

    async def start(self) -> None:
        await self.log.open()

    def loops(self) -> list[Loop]:
        return [self.log.run()]

    def stop(self) -> None:
        self.log.stop()

    async def close(self) -> None:
        await self.log.close()

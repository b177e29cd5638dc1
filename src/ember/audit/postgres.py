"""Audit entries in the cluster's PostgreSQL: one table every node appends to.

Ids come from an identity column, so "the newest N" (retention) is the N
highest ids across the cluster; reads order by time, then id.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from ember.audit.base import COLUMNS, AuditPage, AuditQuery, as_row, from_row, page_of, select_sql
from ember.auth.base import AuditEntry
from ember.storage.postgres import Database, Migration, unavailable

MIGRATION = Migration(
    "audit",
    [
        """
        CREATE TABLE audit_events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            time DOUBLE PRECISION NOT NULL,
            request_id TEXT NOT NULL,
            principal TEXT NOT NULL,
            account TEXT NOT NULL,
            action TEXT NOT NULL,
            resource TEXT NOT NULL,
            allowed BOOLEAN NOT NULL,
            status INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX audit_events_time ON audit_events (time, id);
        CREATE INDEX audit_events_account ON audit_events (account, time, id);
        """
    ],
)

_INSERT = (
    f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
)
_PRUNE = (
    "DELETE FROM audit_events WHERE id < "
    "(SELECT id FROM audit_events ORDER BY id DESC LIMIT 1 OFFSET %s)"
)
_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class PostgresAuditStore:
    """See ``ember.audit.base.AuditStore``. The pool is the shared ``Database``'s:
    ``close`` leaves it to the storage that owns it."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def open(self) -> None:
        """Migrate (a no-op when the server's storage.open already did)."""
        try:
            await self._database.migrate(MIGRATION)
        except _ERRORS as exc:
            raise unavailable(exc) from exc

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        try:
            async with (
                self._database.pool.connection() as conn,
                conn.transaction(),
                conn.cursor() as cursor,
            ):
                await cursor.executemany(_INSERT, [as_row(entry) for entry in entries])
        except _ERRORS as exc:
            raise unavailable(exc) from exc

    async def query(self, query: AuditQuery) -> AuditPage:
        sql, params = select_sql(query, "%s")
        try:
            async with self._database.pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                rows = await cursor.fetchall()
        except _ERRORS as exc:
            raise unavailable(exc) from exc
        return page_of([from_row(row) for row in rows], query.limit)

    async def prune(self, keep: int) -> int:
        sql, params = (_PRUNE, (keep - 1,)) if keep > 0 else ("DELETE FROM audit_events", ())
        try:
            async with self._database.pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return cursor.rowcount
        except _ERRORS as exc:
            raise unavailable(exc) from exc

    async def close(self) -> None:
        return None

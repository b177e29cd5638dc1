"""Audit entries in ``<data_dir>/audit.sqlite3`` (embedded mode), WAL, indexed by time.

sqlite3 calls block, so they run on one dedicated thread, as the metadata
stores' do: the event loop never waits on the disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ember.audit.base import COLUMNS, AuditPage, AuditQuery, as_row, from_row, page_of, select_sql
from ember.auth.base import AuditEntry
from ember.storage.sqlite import SqliteThread

FILE_NAME = "audit.sqlite3"

# steps[i] takes the file from version i to i + 1 (PRAGMA user_version).
STEPS: tuple[str, ...] = (
    """
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    request_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    account TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    allowed INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX audit_events_time ON audit_events (time, id);
CREATE INDEX audit_events_account ON audit_events (account, time, id);
""",
)

_INSERT = (
    f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
# The id of the oldest entry to keep; everything below it goes.
_PRUNE = (
    "DELETE FROM audit_events WHERE id < "
    "(SELECT id FROM audit_events ORDER BY id DESC LIMIT 1 OFFSET ?)"
)


class SqliteAuditStore:
    """See ``ember.audit.base.AuditStore``."""

    def __init__(self, path: Path) -> None:
        # An audit batch may be lost with the machine, not with the process.
        self._file = SqliteThread(path, STEPS, "NORMAL", "ember-audit")

    async def open(self) -> None:
        await self._file.open()

    async def close(self) -> None:
        await self._file.close()

    def _append(self, entries: Sequence[AuditEntry]) -> None:
        db = self._file.db()
        with db:  # one transaction for the batch
            db.execute("BEGIN")
            db.executemany(_INSERT, [as_row(entry) for entry in entries])

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            await self._file.run(self._append, entries)

    def _query(self, query: AuditQuery) -> AuditPage:
        sql, params = select_sql(query, "?")
        rows = self._file.db().execute(sql, params).fetchall()
        return page_of([from_row(row) for row in rows], query.limit)

    async def query(self, query: AuditQuery) -> AuditPage:
        return await self._file.run(self._query, query)

    def _prune(self, keep: int) -> int:
        if keep <= 0:
            return self._file.db().execute("DELETE FROM audit_events").rowcount
        return self._file.db().execute(_PRUNE, (keep - 1,)).rowcount

    async def prune(self, keep: int) -> int:
        return await self._file.run(self._prune, keep)

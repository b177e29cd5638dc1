"""Audit entries in a list: the in-process store (tests, development); lost on exit."""

from __future__ import annotations

from collections.abc import Sequence

from ember.audit.base import AuditPage, AuditQuery, Position, page_of
from ember.auth.base import AuditEntry


class MemoryAuditStore:
    """See ``ember.audit.base.AuditStore``."""

    def __init__(self) -> None:
        # Invariant: in append order; an entry's id is its append count, never reused.
        self._rows: list[tuple[AuditEntry, Position]] = []
        self._appended = 0

    async def open(self) -> None:
        return None

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            self._appended += 1
            self._rows.append((entry, Position(entry.time, self._appended)))

    async def query(self, query: AuditQuery) -> AuditPage:
        rows = [row for row in self._rows if _matches(query, *row)]
        rows.sort(key=lambda row: (row[1].time, row[1].id), reverse=True)
        return page_of(rows[: query.limit + 1], query.limit)

    async def prune(self, keep: int) -> int:
        gone = max(0, len(self._rows) - keep)
        del self._rows[:gone]
        return gone

    async def close(self) -> None:
        return None


def _matches(query: AuditQuery, entry: AuditEntry, at: Position) -> bool:
    return (
        (query.account is None or entry.account == query.account)
        and (query.since is None or entry.time >= query.since)
        and (query.until is None or entry.time < query.until)
        and (query.after is None or (at.time, at.id) < (query.after.time, query.after.id))
    )

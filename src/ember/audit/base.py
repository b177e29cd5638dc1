"""The contract of an audit store, and the query and page types every backend shares.

Order: newest first, by time and then by the store's insertion id (entries
of one second keep the order they were written in). A query's ``after``
marker is opaque to callers: the position of the last entry of the previous
page; the next page holds the entries strictly older than it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from ember.auth.base import AuditEntry

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadMarker(ValueError):
    """A ``next`` marker this ember did not hand out."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where one stored entry sorts: its time, then its insertion id."""

    time: float
    id: int

    def marker(self) -> str:
        """The opaque ``NextMarker`` text of this position."""
        raw = orjson.dumps([self.time, self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, marker: str) -> Position:
        """The position ``marker()`` encoded; raises BadMarker for anything else."""
        try:
            raw = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4))
            time, id_ = orjson.loads(raw)
            return cls(float(time), int(id_))
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
            raise BadMarker(marker) from None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which entries to read: ``account`` None means every account's.

    ``since`` is inclusive, ``until`` exclusive (Unix seconds, None: unbounded);
    ``after`` continues a previous page. ``limit`` is already within 1..MAX_LIMIT.
    """

    account: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of entries, newest first; ``next`` is None on the last page."""

    entries: list[AuditEntry]
    next: Position | None


class AuditStore(Protocol):
    """Durable audit entries. Every call after ``close`` may raise; ``close`` twice is harmless."""

    async def open(self) -> None:
        """Create or migrate the schema, or raise StartupRefused naming why."""
        ...

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        """Store ``entries`` in one transaction: all are durable when it returns, or none.

        Raises StorageUnavailable when the store cannot be reached.
        """
        ...

    async def query(self, query: AuditQuery) -> AuditPage:
        """At most ``query.limit`` entries matching ``query``, newest first."""
        ...

    async def prune(self, keep: int) -> int:
        """Delete all but the ``keep`` most recently appended entries; returns how many went."""
        ...

    async def close(self) -> None:
        """Release the connection (not a shared database's pool). Idempotent."""
        ...


def page_of(rows: Sequence[tuple[AuditEntry, Position]], limit: int) -> AuditPage:
    """A page from up to ``limit + 1`` rows read newest first: the extra row says there is more."""
    entries = [entry for entry, _ in rows[:limit]]
    more = len(rows) > limit
    return AuditPage(entries, rows[limit - 1][1] if more else None)


# The stored columns of an entry, in the order ``as_row`` gives and ``from_row`` takes
# (after the leading insertion id). Both SQL backends use the same names.
COLUMNS: tuple[str, ...] = (
    "time",
    "request_id",
    "principal",
    "account",
    "action",
    "resource",
    "allowed",
    "status",
    "error",
)


def as_row(entry: AuditEntry) -> tuple[object, ...]:
    return (
        entry.time,
        entry.request_id,
        entry.principal,
        entry.account,
        entry.action,
        entry.resource,
        entry.allowed,
        entry.status,
        entry.error,
    )


def from_row(row: Sequence[object]) -> tuple[AuditEntry, Position]:
    """``(id, *COLUMNS)`` as read back by either SQL backend."""
    id_, time, request_id, principal, account, action, resource, allowed, status, error = row
    entry = AuditEntry(
        float(time),  # type: ignore[arg-type]
        str(request_id),
        str(principal),
        str(account),
        str(action),
        str(resource),
        bool(allowed),
        int(status),  # type: ignore[call-overload]
        None if error is None else str(error),
    )
    return entry, Position(entry.time, int(id_))  # type: ignore[call-overload]


def select_sql(query: AuditQuery, mark: str) -> tuple[str, list[object]]:
    """The SELECT of ``query`` (one row beyond its limit) with ``mark`` as the placeholder."""
    where: list[str] = []
    params: list[object] = []
    if query.account is not None:
        where.append(f"account = {mark}")
        params.append(query.account)
    if query.since is not None:
        where.append(f"time >= {mark}")
        params.append(query.since)
    if query.until is not None:
        where.append(f"time < {mark}")
        params.append(query.until)
    if query.after is not None:
        where.append(f"(time, id) < ({mark}, {mark})")
        params += [query.after.time, query.after.id]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT id, {', '.join(COLUMNS)} FROM audit_events {clause} "
        f"ORDER BY time DESC, id DESC LIMIT {mark}"
    )
    return sql, [*params, query.limit + 1]

"""The contract of a history store: invocation records and per-minute series.

Records: newest first, by ``start`` and then by the store's insertion id. A
query's ``after`` marker is opaque to callers (``ember.audit.base.Position``,
the same encoding as the audit log's): the next page holds the records
strictly older than it. Series: one row per function, minute and node,
replaced whole on each write; reads merge the nodes' rows of a minute.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from ember.audit.base import Position
from ember.observe.records import InvocationRecord, Minute, SeriesPoint

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which records of ``function`` (a storage key) to read.

    ``since`` inclusive, ``until`` exclusive (Unix seconds of the start, None:
    unbounded); ``outcomes`` empty means any; ``after`` continues a previous
    page; ``limit`` is already within 1..MAX_LIMIT.
    """

    function: str
    since: float | None = None
    until: float | None = None
    outcomes: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    after: Position | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of records, newest first; ``next`` is None on the last page."""

    records: list[InvocationRecord]
    next: Position | None


class HistoryStore(Protocol):
    """Durable invocation records and minute rows. Every call after ``close`` may
    raise; ``close`` twice is harmless. Unreachable: StorageUnavailable."""

    async def open(self) -> None:
        """Create or migrate the schema, or raise StartupRefused naming why."""
        ...

    async def write(self, records: Sequence[InvocationRecord], minutes: Sequence[Minute]) -> None:
        """Append ``records`` and upsert ``minutes`` (keyed by function, minute and
        ``node``) in one transaction: all are durable when it returns, or none."""
        ...

    async def query(self, query: HistoryQuery) -> HistoryPage:
        """At most ``query.limit`` records matching ``query``, newest first."""
        ...

    async def find(self, request_id: str) -> list[InvocationRecord]:
        """Every record of ``request_id`` (an async event's attempts share it), newest first."""
        ...

    async def series(self, function: str, since: int, until: int) -> list[SeriesPoint]:
        """One point per minute of ``function`` with rows in [since, until) (Unix
        seconds, rounded down to the minute), oldest first; minutes without calls
        are absent."""
        ...

    async def trim(self, functions: Collection[str], keep: int) -> int:
        """Delete all but the ``keep`` newest records of each of ``functions``;
        returns how many went."""
        ...

    async def trim_series(self, before: int) -> int:
        """Delete minute rows older than ``before`` (Unix seconds); returns how many went."""
        ...

    async def close(self) -> None:
        """Release the connection (not a shared database's pool). Idempotent."""
        ...


def page_of(rows: Sequence[tuple[InvocationRecord, Position]], limit: int) -> HistoryPage:
    """A page from up to ``limit + 1`` rows read newest first: the extra row says there is more."""
    more = len(rows) > limit
    return HistoryPage([record for record, _ in rows[:limit]], rows[limit - 1][1] if more else None)


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "HistoryPage",
    "HistoryQuery",
    "HistoryStore",
    "Position",
    "page_of",
]

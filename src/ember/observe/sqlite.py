"""The history in ``<data_dir>/history.sqlite3`` (embedded mode), WAL.

sqlite3 calls block, so they run on one dedicated thread, as the audit
store's do: the event loop never waits on the disk.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from ember.observe import sql
from ember.observe.base import HistoryPage, HistoryQuery, page_of
from ember.observe.records import InvocationRecord, Minute, SeriesPoint, merge
from ember.storage.sqlite import SqliteThread

FILE_NAME = "history.sqlite3"

# steps[i] takes the file from version i to i + 1 (PRAGMA user_version).
STEPS: tuple[str, ...] = (
    """
CREATE TABLE invocations (
    id INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    version TEXT NOT NULL,
    origin TEXT NOT NULL,
    start REAL NOT NULL,
    duration_ms REAL NOT NULL,
    billed_ms INTEGER NOT NULL,
    init_ms REAL,
    outcome TEXT NOT NULL,
    error_type TEXT,
    memory_size_mb INTEGER NOT NULL,
    memory_used_mb INTEGER NOT NULL,
    sandbox_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    node TEXT NOT NULL
);
CREATE INDEX invocations_function ON invocations (function, start, id);
CREATE INDEX invocations_request ON invocations (request_id);
CREATE TABLE invocation_minutes (
    function TEXT NOT NULL,
    minute INTEGER NOT NULL,
    node TEXT NOT NULL,
    invocations INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    throttles INTEGER NOT NULL,
    max_concurrency INTEGER NOT NULL,
    durations TEXT NOT NULL,
    PRIMARY KEY (function, minute, node)
);
CREATE INDEX invocation_minutes_minute ON invocation_minutes (minute);
""",
)


class SqliteHistoryStore:
    """See ``ember.observe.base.HistoryStore``."""

    def __init__(self, path: Path, node: str) -> None:
        # History may lose its last batch with the machine, never with the process.
        # Its writer runs at the lowest CPU priority: on a busy host its few
        # microseconds per call compete with the calls themselves (on 2 cores,
        # warm p50 +8 % at normal priority, +2 to +5 % at nice 19; bench_observability).
        self._file = SqliteThread(path, STEPS, "NORMAL", "ember-history", nice=19)
        self._node = node

    async def open(self) -> None:
        await self._file.open()

    async def close(self) -> None:
        await self._file.close()

    def _write(self, records: Sequence[InvocationRecord], minutes: Sequence[Minute]) -> None:
        db = self._file.db()
        with db:  # one transaction for the batch
            db.execute("BEGIN")
            db.executemany(sql.insert_sql("?"), records)
            db.executemany(
                sql.upsert_minute_sql("?"), [sql.minute_row(m, self._node) for m in minutes]
            )

    async def write(self, records: Sequence[InvocationRecord], minutes: Sequence[Minute]) -> None:
        if records or minutes:
            await self._file.run(self._write, records, minutes)

    def _query(self, query: HistoryQuery) -> HistoryPage:
        statement, params = sql.select_sql(query, "?")
        rows = self._file.db().execute(statement, params).fetchall()
        return page_of([sql.from_row(row) for row in rows], query.limit)

    async def query(self, query: HistoryQuery) -> HistoryPage:
        return await self._file.run(self._query, query)

    def _find(self, request_id: str) -> list[InvocationRecord]:
        rows = self._file.db().execute(sql.find_sql("?"), (request_id,)).fetchall()
        return [sql.from_row(row)[0] for row in rows]

    async def find(self, request_id: str) -> list[InvocationRecord]:
        return await self._file.run(self._find, request_id)

    def _series(self, function: str, since: int, until: int) -> list[SeriesPoint]:
        params = (function, since // 60, -(-until // 60))
        rows = self._file.db().execute(sql.series_sql("?"), params).fetchall()
        return merge([sql.minute_of(row) for row in rows])

    async def series(self, function: str, since: int, until: int) -> list[SeriesPoint]:
        return await self._file.run(self._series, function, since, until)

    def _trim(self, functions: Collection[str], keep: int) -> int:
        db = self._file.db()
        gone = 0
        with db:
            db.execute("BEGIN")
            for function in functions:
                gone += db.execute(sql.trim_sql("?"), (function, function, keep - 1)).rowcount
        return gone

    async def trim(self, functions: Collection[str], keep: int) -> int:
        return await self._file.run(self._trim, functions, keep)

    def _trim_series(self, before: int) -> int:
        statement = "DELETE FROM invocation_minutes WHERE minute < ?"
        return self._file.db().execute(statement, (before // 60,)).rowcount

    async def trim_series(self, before: int) -> int:
        return await self._file.run(self._trim_series, before)

"""The SQLite history's writer process: a batch it acknowledged is in the file; killed,
it is started again by the next write, and the batch it did not answer stays the
caller's (the recorder keeps it pending); closing lets it finish and exit."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from ember.errors import StorageUnavailable
from ember.observe import sql
from ember.observe.base import HistoryQuery
from ember.observe.history_writer import STEPS
from ember.observe.records import InvocationRecord
from ember.observe.sqlite import SqliteHistoryStore


def record(n: int) -> InvocationRecord:
    return InvocationRecord("f", f"req-{n}", "$LATEST", "sync", 1.0e9 + n, 2.5, 3, None,
                            "success", None, 128, 17, "sb-1", "Root=1-0-0", "n1")  # fmt: skip


def test_a_killed_writer_is_started_again_and_loses_no_acknowledged_batch(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = SqliteHistoryStore(tmp_path / "history.sqlite3", "n1")
        await store.open()
        try:
            await store.write([record(1), record(2)], [])
            first = store.writer_pid
            assert first is not None and first != os.getpid()
            os.kill(first, signal.SIGKILL)
            await asyncio.sleep(0.2)
            # The write that finds it dead fails (the caller keeps the batch) or, when the
            # death was already seen, starts a new writer; either way the next succeeds.
            try:
                await store.write([record(3)], [])
            except StorageUnavailable:
                await store.write([record(3)], [])
            assert store.writer_pid not in (None, first)
            page = await store.query(HistoryQuery("f", limit=100))
            assert sorted(r.request_id for r in page.records) == ["req-1", "req-2", "req-3"]
        finally:
            await store.close()
        assert store.writer_pid is None

    asyncio.run(scenario())


def test_a_writer_ignores_ctrl_c_and_exits_when_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteHistoryStore(tmp_path / "history.sqlite3", "n1")
        await store.open()
        pid = store.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGINT)  # a Ctrl-C sent to the whole process group
        await store.write([record(1)], [])
        assert store.writer_pid == pid
        await store.close()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    asyncio.run(scenario())


def test_a_batch_written_again_is_stored_once(tmp_path: Path) -> None:
    """What the recorder sends again after a write that failed may have been committed
    (the writer died between its commit and its answer): each record is stored once."""

    async def scenario() -> None:
        store = SqliteHistoryStore(tmp_path / "history.sqlite3", "n1")
        await store.open()
        try:
            await store.write([record(1), record(2)], [])
            await store.write([record(1), record(2), record(3)], [])
            page = await store.query(HistoryQuery("f", limit=100))
            assert sorted(r.request_id for r in page.records) == ["req-1", "req-2", "req-3"]
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_history_file_of_the_first_version_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(STEPS[0])
    row = tuple(record(1))
    insert = f"INSERT INTO invocations ({', '.join(sql.COLUMNS)}) VALUES ({', '.join('?' * 15)})"
    db.executemany(insert, [row, row])  # a duplicate: the new unique index must not fail
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    async def scenario() -> None:
        store = SqliteHistoryStore(path, "n1")
        await store.open()
        try:
            page = await store.query(HistoryQuery("f", limit=100))
            assert [r.request_id for r in page.records] == ["req-1"]
        finally:
            await store.close()

    asyncio.run(scenario())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(STEPS),)

"""The history in ``<data_dir>/history.sqlite3`` (embedded mode), WAL.

Written by a process of its own (``history_writer.py``), read on a thread of
the server's: the event loop never waits on the disk, and never for the GIL
of a thread binding thousands of rows a second.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import orjson

from ember.errors import StorageUnavailable
from ember.observe import history_writer, sql
from ember.observe.base import HistoryPage, HistoryQuery, page_of
from ember.observe.history_writer import STEPS
from ember.observe.records import InvocationRecord, Minute, SeriesPoint, merge
from ember.storage.sqlite import SqliteThread

FILE_NAME = "history.sqlite3"
CLOSE_SECONDS = 10.0  # for the writer to finish its batch once told to stop


class SqliteHistoryStore:
    """See ``ember.observe.base.HistoryStore``.

    Writes go to the history's own writer process (``history_writer.py``: no
    GIL shared with the calls it records); reads run on a thread of this
    process, beside it (WAL: readers never wait for the writer). History may
    lose its last batch with the machine, never with the server's process.
    """

    def __init__(self, path: Path, node: str) -> None:
        self._path = path
        self._reader = SqliteThread(path, STEPS, "NORMAL", "ember-history")
        self._writer = _WriterProcess(path)
        self._node = node

    @property
    def writer_pid(self) -> int | None:
        return self._writer.pid

    async def open(self) -> None:
        await self._writer.start()  # creates and migrates the file
        await self._reader.open()

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    async def write(self, records: Sequence[InvocationRecord], minutes: Sequence[Minute]) -> None:
        if records or minutes:
            rows = [sql.minute_row(m, self._node) for m in minutes]
            await self._writer.ask(
                {"op": "write", "records": [tuple(r) for r in records], "minutes": rows}
            )

    def _query(self, query: HistoryQuery) -> HistoryPage:
        statement, params = sql.select_sql(query, "?")
        rows = self._reader.db().execute(statement, params).fetchall()
        return page_of([sql.from_row(row) for row in rows], query.limit)

    async def query(self, query: HistoryQuery) -> HistoryPage:
        return await self._reader.run(self._query, query)

    def _find(self, request_id: str) -> list[InvocationRecord]:
        rows = self._reader.db().execute(sql.find_sql("?"), (request_id,)).fetchall()
        return [sql.from_row(row)[0] for row in rows]

    async def find(self, request_id: str) -> list[InvocationRecord]:
        return await self._reader.run(self._find, request_id)

    def _series(self, function: str, since: int, until: int) -> list[SeriesPoint]:
        params = (function, since // 60, -(-until // 60))
        rows = self._reader.db().execute(sql.series_sql("?"), params).fetchall()
        return merge([sql.minute_of(row) for row in rows])

    async def series(self, function: str, since: int, until: int) -> list[SeriesPoint]:
        return await self._reader.run(self._series, function, since, until)

    async def trim(self, functions: Collection[str], keep: int) -> int:
        answer = await self._writer.ask({"op": "trim", "functions": list(functions), "keep": keep})
        return int(answer)

    async def trim_series(self, before: int) -> int:
        return int(await self._writer.ask({"op": "trim_series", "before": before}))


class _WriterProcess:
    """The writer process of one history file: one request at a time, each answered.
    Started again by the next request when it died; a request it did not answer
    raises StorageUnavailable (the recorder keeps that batch pending)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The writer's pid while it runs (for tests and operators)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        async with self._lock:
            await self._started()

    async def _started(self) -> asyncio.subprocess.Process:
        process = self._process
        if process is not None and process.returncode is None:
            return process
        self._path.parent.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ember.observe.history_writer",
            str(self._path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._process = process
        ready = await self._answer(process)
        if ready != "ready":
            raise StorageUnavailable(f"the history writer did not start: {ready!r}")
        return process

    async def _answer(self, process: asyncio.subprocess.Process) -> Any:
        assert process.stdout is not None
        try:
            head = await process.stdout.readexactly(history_writer.HEADER_BYTES)
            body = await process.stdout.readexactly(int.from_bytes(head, "big"))
        except asyncio.IncompleteReadError:
            code = await process.wait()
            raise StorageUnavailable(
                f"the history writer for {self._path} exited ({code}): see the server's log"
            ) from None
        answer = orjson.loads(body)
        if "error" in answer:
            raise StorageUnavailable(f"the history writer failed: {answer['error']}")
        return answer["ok"]

    async def ask(self, request: dict[str, object]) -> Any:
        if self._closed:
            raise StorageUnavailable("the history is closed")
        async with self._lock:
            process = await self._started()
            assert process.stdin is not None
            try:
                process.stdin.write(history_writer.frame(request))
                await process.stdin.drain()
            except ConnectionError:
                pass  # it died: its exit is reported by _answer
            return await self._answer(process)

    async def close(self) -> None:
        """Close its stdin: it finishes the request in hand and exits."""
        self._closed = True
        async with self._lock:
            process, self._process = self._process, None
            if process is None or process.returncode is not None:
                return
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), CLOSE_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()

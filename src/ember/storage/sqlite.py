"""SQLite metadata in WAL mode, in the data directory (embedded mode)."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
"""


class SqliteMetadataStore:
    """See ``ember.storage.base.MetadataStore``.

    sqlite3 calls block, so they run on one dedicated thread: the event loop
    never waits on a disk write, and one thread serialises the connection.
    """

    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-sqlite")
        self._path = path
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, function: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _load_all(self) -> dict[str, str]:
        rows = self._connect().execute("SELECT name, document FROM functions").fetchall()
        return {name: document for name, document in rows}

    async def load_all(self) -> dict[str, str]:
        result: dict[str, str] = await self._run(self._load_all)
        return result

    def _put(self, name: str, document: str) -> None:
        self._connect().execute(
            "INSERT INTO functions(name, document) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET document = excluded.document",
            (name, document),
        )

    async def put(self, name: str, document: str) -> None:
        await self._run(self._put, name, document)

    def _delete(self, name: str) -> None:
        self._connect().execute("DELETE FROM functions WHERE name = ?", (name,))

    async def delete(self, name: str) -> None:
        await self._run(self._delete, name)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)

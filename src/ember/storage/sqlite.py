"""SQLite metadata in WAL mode, in the data directory (embedded mode).

Each SQLite file carries its schema version in ``PRAGMA user_version``;
``migrate`` brings a file to the version this ember knows, under SQLite's
write lock, and refuses a file written by a newer ember.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ember.errors import StartupRefused

T = TypeVar("T")

# Version 1 is the schema of the first release; that release left user_version
# at 0 with the tables present, so step 1 is idempotent DDL that accepts both.
METADATA_STEPS: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
""",
)


def stored_version(db: sqlite3.Connection) -> int:
    """The schema version the file carries (0 for a new or a first-release file)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def open_wal(path: Path, steps: tuple[str, ...], synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode, migrated to ``steps`` (closed if that fails).

    ``synchronous``: FULL where an acknowledged write must survive the machine
    (metadata, the queue), NORMAL where losing the last commits to a power cut is
    acceptable (the audit log: never to a crash of the process).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    try:
        migrate(db, path, steps)
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection, path: Path, steps: tuple[str, ...]) -> tuple[int, int]:
    """Apply the steps this file has not had; returns (version before, version after).

    ``steps[i]`` brings version i to i + 1. Runs inside ``BEGIN IMMEDIATE``
    (SQLite's write lock), so two processes opening one file migrate it once:
    the second reads the version after the first committed. ``db`` must be in
    autocommit mode (``isolation_level=None``). A file newer than ``steps``
    raises ``StartupRefused`` naming the file and both versions.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        before = stored_version(db)
        if before > len(steps):
            raise StartupRefused(
                f"{path} has schema version {before}, newer than this ember knows "
                f"({len(steps)}): upgrade ember"
            )
        for version in range(before, len(steps)):
            _run_script(db, steps[version])
        if before < len(steps):
            db.execute(f"PRAGMA user_version = {len(steps)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return before, len(steps)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT first; running statement by statement
    # keeps every step inside the one locked transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


class SqliteThread:
    """One SQLite file whose statements all run on a thread of its own, in order: the
    event loop never waits on the disk, and one thread serialises the connection.
    Stores that are written in batches off the request's path (history, audit) keep
    one; ``db()`` is called on that thread, by the functions given to ``run``."""

    def __init__(self, path: Path, steps: tuple[str, ...], synchronous: str, name: str) -> None:
        self._path = path
        self._steps = steps
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def db(self) -> sqlite3.Connection:
        """The connection, opened (and migrated) on first use."""
        if self._db is None:
            self._db = open_wal(self._path, self._steps, synchronous=self._synchronous)
        return self._db

    async def run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def open(self) -> None:
        await self.run(self.db)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def close(self) -> None:
        """Close once, after what is queued on the thread has run."""
        if self._closed:
            return
        self._closed = True
        await self.run(self._close)
        self._executor.shutdown(wait=True)


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
            self._db = open_wal(self._path, METADATA_STEPS)
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

"""One factory: settings in, the configured queue backend out."""

from __future__ import annotations

from pathlib import Path

from ember.queue.base import QueueBackend
from ember.queue.memory import MemoryEventQueue
from ember.queue.postgres import PostgresEventQueue
from ember.queue.sqlite import SqliteEventQueue
from ember.storage.postgres import Database

BACKENDS = ("sqlite", "memory", "postgresql")
FILE_NAME = "queue.sqlite3"


def build(
    backend: str, data_dir: Path, database: Database | None = None, owner: str | None = None
) -> QueueBackend:
    """The event queue named ``backend``.

    SQLite lives in ``data_dir/queue.sqlite3``. PostgreSQL lives in ``database``
    (required) and opens on first use, or at ``await queue.open()``; ``owner``
    is this node's stable id, whose leases it releases when it opens.
    """
    if backend == "sqlite":
        return SqliteEventQueue(data_dir / FILE_NAME)
    if backend == "memory":
        return MemoryEventQueue()
    if backend == "postgresql":
        if database is None:
            raise ValueError("the postgresql queue backend needs a database (--database URL)")
        return PostgresEventQueue(database, owner=owner)
    raise ValueError(f"unknown queue backend {backend!r}: choose one of {BACKENDS}")

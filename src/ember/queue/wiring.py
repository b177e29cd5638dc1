"""One factory: settings in, the configured queue backend out."""

from __future__ import annotations

from pathlib import Path

from ember.queue.base import QueueBackend
from ember.queue.memory import MemoryEventQueue
from ember.queue.sqlite import SqliteEventQueue
from ember.storage.postgres import Database

BACKENDS = ("sqlite", "memory")
FILE_NAME = "queue.sqlite3"


def build(
    backend: str, data_dir: Path, database: Database | None = None, owner: str = ""
) -> QueueBackend:
    """The event queue named ``backend``; SQLite lives in ``data_dir/queue.sqlite3``.

    ``database``: the cluster's (for "postgresql"); ``owner``: this node's id,
    which names the leases it takes.
    """
    if backend == "postgresql":
        raise ValueError("the PostgreSQL queue is not available in this build")
    if backend == "sqlite":
        return SqliteEventQueue(data_dir / FILE_NAME)
    if backend == "memory":
        return MemoryEventQueue()
    raise ValueError(f"unknown queue backend {backend!r}: choose one of {BACKENDS}")

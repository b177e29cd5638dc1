"""Schema versions for operators: what `ember db status` and `ember db upgrade` do.

Embedded mode keeps one SQLite file per store in the data dir, each with its
version in ``PRAGMA user_version``; a cluster keeps one version per component
in PostgreSQL's ``ember_schema``. The server migrates by itself at start;
these functions let an operator see and apply the same migrations by hand.
Like ``ember.server``, this module is loaded only inside the CLI command.
"""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ember.audit.sqlite import FILE_NAME as AUDIT_FILE
from ember.audit.sqlite import STEPS as AUDIT_STEPS
from ember.errors import StartupRefused
from ember.observe.history_writer import STEPS as HISTORY_STEPS
from ember.observe.sqlite import FILE_NAME as HISTORY_FILE
from ember.queue.sqlite import STEPS as QUEUE_STEPS
from ember.storage.postgres import Database, Migration
from ember.storage.sqlite import METADATA_STEPS, migrate, stored_version

QUEUE_FILE = "queue.sqlite3"
# Modules that own a PostgreSQL component; each exposes MIGRATION.
PG_MODULES = (
    "ember.storage.pg_metadata",
    "ember.storage.pg_blobs",
    "ember.queue.postgres",
    "ember.audit.postgres",
    "ember.scheduling.membership_postgres",
)


@dataclass(frozen=True)
class SchemaState:
    """One file or component: the version it carries and the one this ember has."""

    name: str
    stored: int
    known: int

    @property
    def pending(self) -> bool:
        return self.stored < self.known

    @property
    def newer(self) -> bool:
        return self.stored > self.known

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "stored": self.stored,
            "known": self.known,
            "upgradeNeeded": self.pending,
            "newer": self.newer,
        }


def sqlite_files(data_dir: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """Each SQLite file of the data dir with its migration steps, sorted by name.

    Every ``*.sqlite3`` but the queue, the audit log and the history is a metadata store
    (metadata, layers, urls, tools, limits, manifests, schedules, ...).
    """
    own = {QUEUE_FILE: QUEUE_STEPS, AUDIT_FILE: AUDIT_STEPS, HISTORY_FILE: HISTORY_STEPS}
    files = sorted(data_dir.glob("*.sqlite3"))
    return [(path, own.get(path.name, METADATA_STEPS)) for path in files]


def sqlite_status(data_dir: Path) -> list[SchemaState]:
    """The version of each SQLite file in ``data_dir``; reads only."""
    states = []
    for path, steps in sqlite_files(data_dir):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            states.append(SchemaState(path.name, stored_version(db), len(steps)))
        finally:
            db.close()
    return states


def sqlite_upgrade(data_dir: Path) -> list[SchemaState]:
    """Migrate every SQLite file of ``data_dir``; returns each one's version before.

    Refuses (``StartupRefused``) before touching anything if a file is newer
    than this ember knows.
    """
    before = sqlite_status(data_dir)
    _refuse_newer(before)
    for path, steps in sqlite_files(data_dir):
        db = sqlite3.connect(path, isolation_level=None)
        try:
            migrate(db, path, steps)
        finally:
            db.close()
    return before


def pg_migrations() -> list[Migration]:
    """The ``Migration`` of every PostgreSQL component this ember has."""
    return [importlib.import_module(name).MIGRATION for name in PG_MODULES]


def pg_status(url: str) -> list[SchemaState]:
    """The version of each PostgreSQL component (0 for one never migrated)."""
    return asyncio.run(_pg_status(url))


def pg_upgrade(url: str) -> list[SchemaState]:
    """Migrate every PostgreSQL component; returns each one's version before."""
    return asyncio.run(_pg_upgrade(url))


async def _pg_status(url: str) -> list[SchemaState]:
    database = Database(url, min_size=1, max_size=1)
    await database.open()
    try:
        stored = await database.versions()
    finally:
        await database.close()
    return [
        SchemaState(m.component, stored.get(m.component, 0), m.version) for m in pg_migrations()
    ]


async def _pg_upgrade(url: str) -> list[SchemaState]:
    before = await _pg_status(url)
    _refuse_newer(before)
    database = Database(url, min_size=1, max_size=1)
    await database.open()
    try:
        await database.migrate(*pg_migrations())
    finally:
        await database.close()
    return before


def _refuse_newer(states: list[SchemaState]) -> None:
    for state in states:
        if state.newer:
            raise StartupRefused(
                f"{state.name} has schema version {state.stored}, newer than this ember "
                f"knows ({state.known}): upgrade ember"
            )

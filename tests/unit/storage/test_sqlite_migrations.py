"""The SQLite migration mechanism on throwaway files and a test-only step list."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from ember.errors import StartupRefused
from ember.storage.sqlite import METADATA_STEPS, migrate, stored_version

STEPS = (
    "CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY);",
    "ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX things_size ON things(size);",
)


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def columns(db: sqlite3.Connection) -> list[str]:
    return [row[1] for row in db.execute("PRAGMA table_info(things)")]


def test_a_new_file_is_migrated_through_every_step(tmp_path: Path) -> None:
    db = connect(tmp_path / "a.sqlite3")
    assert migrate(db, tmp_path / "a.sqlite3", STEPS) == (0, 2)
    assert (stored_version(db), columns(db)) == (2, ["name", "size"])
    assert migrate(db, tmp_path / "a.sqlite3", STEPS) == (2, 2)
    db.close()


def test_a_first_release_file_with_its_tables_and_version_0_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite3"
    db = connect(path)
    db.execute("CREATE TABLE functions (name TEXT PRIMARY KEY, document TEXT NOT NULL)")
    db.execute("INSERT INTO functions VALUES ('f', '{}')")
    assert migrate(db, path, METADATA_STEPS) == (0, 1)
    assert db.execute("SELECT name FROM functions").fetchall() == [("f",)]
    db.close()


def test_a_failing_step_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    db = connect(path)
    migrate(db, path, STEPS[:1])
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, path, (*STEPS, "CREATE TABLE things (x);"))
    assert (stored_version(db), columns(db)) == (1, ["name"])
    db.close()


def test_a_newer_file_is_refused_naming_it_and_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    db = connect(path)
    db.execute("PRAGMA user_version = 5")
    with pytest.raises(StartupRefused, match=r"a\.sqlite3 has schema version 5.*\(2\)"):
        migrate(db, path, STEPS)
    db.close()


def test_two_connections_opening_one_file_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    results: list[tuple[int, int]] = []
    dbs = [connect(path) for _ in range(2)]
    for db in dbs:
        db.execute("PRAGMA busy_timeout = 10000")

    def run(db: sqlite3.Connection) -> None:
        results.append(migrate(db, path, STEPS))

    threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Had both run the steps, the second ALTER TABLE would have failed.
    assert sorted(results) == [(0, 2), (2, 2)]
    for db in dbs:
        db.close()

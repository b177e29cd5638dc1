"""One behavioural suite for every metadata store (SQLite, PostgreSQL, memory).

Package (blob) stores have theirs in test_package_stores.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import drop_database
from ember.errors import StorageUnavailable
from ember.storage.memory import MemoryMetadataStore
from ember.storage.pg_metadata import MIGRATION, PostgresMetadataStore
from ember.storage.postgres import Database
from ember.storage.sqlite import SqliteMetadataStore

OpenStore = Callable[[], AbstractAsyncContextManager[Any]]


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens the backend's store inside the test's event loop (a pool is bound to one)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""

    @asynccontextmanager
    async def opened() -> AsyncIterator[Any]:
        if request.param == "postgresql":
            async with postgres_store(url, "metadata") as store:
                yield store
            return
        store: Any = (
            SqliteMetadataStore(tmp_path / "meta.sqlite3")
            if request.param == "sqlite"
            else MemoryMetadataStore()
        )
        try:
            yield store
        finally:
            await store.close()

    return opened


@asynccontextmanager
async def postgres_store(url: str, namespace: str) -> AsyncIterator[PostgresMetadataStore]:
    database = Database(url, min_size=1, max_size=2)
    await database.open()
    try:
        await database.migrate(MIGRATION)
        store = PostgresMetadataStore(database, namespace)
        yield store
        await store.close()
    finally:
        await database.close()


def test_metadata_put_replace_delete(metadata: OpenStore) -> None:
    async def scenario() -> dict[str, str]:
        async with metadata() as store:
            await store.put("a", '{"v": 1}')
            await store.put("b", '{"v": 2}')
            await store.put("a", '{"v": 3}')
            await store.delete("b")
            await store.delete("missing")  # deleting a missing record is not an error
            return dict(await store.load_all())

    assert asyncio.run(scenario()) == {"a": '{"v": 3}'}


def test_metadata_deleted_record_can_be_created_again(metadata: OpenStore) -> None:
    async def scenario() -> dict[str, str]:
        async with metadata() as store:
            await store.put("a", "{}")
            await store.delete("a")
            await store.delete("a")
            await store.put("a", '{"again": true}')
            return dict(await store.load_all())

    assert asyncio.run(scenario()) == {"a": '{"again": true}'}


def test_postgres_namespaces_are_separate_and_durable(postgres_url: str) -> None:
    async def write() -> None:
        async with postgres_store(postgres_url, "layers") as layers:
            await layers.put("f", '{"layer": 1}')
        async with postgres_store(postgres_url, "urls") as urls:
            await urls.put("f", '{"url": 1}')
            await urls.delete("f")

    async def read() -> tuple[dict[str, str], dict[str, str]]:
        async with (
            postgres_store(postgres_url, "layers") as layers,
            postgres_store(postgres_url, "urls") as urls,
        ):
            return dict(await layers.load_all()), dict(await urls.load_all())

    asyncio.run(write())
    assert asyncio.run(read()) == ({"f": '{"layer": 1}'}, {})


@pytest.mark.slow
def test_postgres_store_refuses_with_storage_unavailable_when_the_database_is_gone(
    postgres_url: str,
) -> None:
    async def scenario() -> None:
        async with postgres_store(postgres_url, "metadata") as store:
            drop_database(postgres_url)  # ends every session, refuses new ones
            # Refused within the pool's wait, not hung.
            with pytest.raises(StorageUnavailable):
                await store.put("f", "{}")

    asyncio.run(scenario())


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    async def write() -> None:
        store = SqliteMetadataStore(tmp_path / "m.sqlite3")
        await store.put("f", "{}")
        await store.close()

    async def read() -> dict[str, str]:
        store = SqliteMetadataStore(tmp_path / "m.sqlite3")
        try:
            return dict(await store.load_all())
        finally:
            await store.close()

    asyncio.run(write())
    assert asyncio.run(read()) == {"f": "{}"}

"""One behavioural suite for every storage backend (SQLite, local files, memory)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ember.storage.localfs import LocalPackageStore
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore
from ember.storage.sqlite import SqliteMetadataStore


@pytest.fixture(params=["sqlite", "memory"])
def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store: Any = (
        SqliteMetadataStore(tmp_path / "meta.sqlite3")
        if request.param == "sqlite"
        else MemoryMetadataStore()
    )
    yield store
    asyncio.run(store.close())


@pytest.fixture(params=["localfs", "memory"])
def packages(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return (
        LocalPackageStore(tmp_path / "pkgs") if request.param == "localfs" else MemoryPackageStore()
    )


def test_metadata_put_replace_delete(metadata: Any) -> None:
    async def scenario() -> dict[str, str]:
        await metadata.put("a", '{"v": 1}')
        await metadata.put("b", '{"v": 2}')
        await metadata.put("a", '{"v": 3}')
        await metadata.delete("b")
        await metadata.delete("missing")  # deleting a missing record is not an error
        return dict(await metadata.load_all())

    assert asyncio.run(scenario()) == {"a": '{"v": 3}'}


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


def test_packages_roundtrip_and_idempotent_delete(packages: Any) -> None:
    data = b"PK\x05\x06" + bytes(18)
    digest = hashlib.sha256(data).hexdigest()

    async def scenario() -> bytes:
        await packages.put(digest, data)
        await packages.put(digest, data)  # storing twice is harmless
        got = bytes(await packages.get(digest))
        await packages.delete(digest)
        await packages.delete(digest)
        with pytest.raises(KeyError):
            await packages.get(digest)
        return got

    assert asyncio.run(scenario()) == data

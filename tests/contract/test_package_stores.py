"""One behavioural suite for every package (blob) store: local files, memory, PostgreSQL, S3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import drop_database
from ember.errors import StartupRefused, StorageUnavailable
from ember.storage.localfs import LocalPackageStore
from ember.storage.memory import MemoryPackageStore
from ember.storage.pg_blobs import MIGRATION, PostgresPackageStore
from ember.storage.postgres import Database
from ember.storage.s3 import S3PackageStore, parse_spec


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop per test: a PostgreSQL pool lives on the loop that opened it."""
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture(params=["localfs", "memory", "postgresql", "s3"])
def packages(
    request: pytest.FixtureRequest, tmp_path: Path, runner: asyncio.Runner
) -> Iterator[Any]:
    if request.param == "localfs":
        yield LocalPackageStore(tmp_path / "pkgs")
    elif request.param == "memory":
        yield MemoryPackageStore()
    elif request.param == "postgresql":
        database = Database(request.getfixturevalue("postgres_url"), min_size=1, max_size=2)
        runner.run(database.open())
        runner.run(database.migrate(MIGRATION))
        yield PostgresPackageStore(database)
        runner.run(database.close())
    else:
        # One bucket, a prefix per test: a bucket costs SeaweedFS volumes of its own.
        store = s3_store(request, f"s3://ember-contract?prefix={uuid.uuid4().hex}")
        runner.run(store.open())
        yield store
        runner.run(store.close())


def s3_store(request: pytest.FixtureRequest, spec: str, secret: str = "") -> S3PackageStore:
    """A store on the test S3 server; credentials through boto3's own chain (the environment)."""
    endpoint = request.getfixturevalue("s3_endpoint")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or endpoint.secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return S3PackageStore(parse_spec(f"{spec}&endpoint={endpoint.url}"))


def test_packages_roundtrip_and_idempotent_delete(packages: Any, runner: asyncio.Runner) -> None:
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

    assert runner.run(scenario()) == data


def test_packages_missing_and_malformed_digests(packages: Any, runner: asyncio.Runner) -> None:
    async def scenario() -> None:
        for digest in ("0" * 64, "../../etc/passwd", "A" * 64, ""):
            with pytest.raises(KeyError):
                await packages.get(digest)
            await packages.delete(digest)

    runner.run(scenario())


def test_packages_empty_and_multi_chunk_blobs_are_byte_exact(
    packages: Any, runner: asyncio.Runner
) -> None:
    # 3.5 MiB: several PostgreSQL chunks and a partial last one.
    blobs = [b"", os.urandom(7 * 512 * 1024)]

    async def scenario() -> list[bytes]:
        for data in blobs:
            await packages.put(hashlib.sha256(data).hexdigest(), data)
        return [bytes(await packages.get(hashlib.sha256(data).hexdigest())) for data in blobs]

    assert runner.run(scenario()) == blobs


def test_packages_put_from_a_file_is_byte_exact(packages: Any, runner: asyncio.Runner) -> None:
    """An upload spooled to disk is stored from its file, read from its start (the
    file is left anywhere), whole: empty, one chunk, several and a partial last one."""
    blobs = [b"", os.urandom(1000), os.urandom(7 * 512 * 1024)]

    async def scenario() -> list[bytes]:
        for data in blobs:
            # As validation.code spools an upload: in memory below 2 KB, on disk above.
            with tempfile.SpooledTemporaryFile(max_size=2048) as file:
                file.write(data)  # left at its end: put must seek
                await packages.put(hashlib.sha256(data).hexdigest(), file)
        return [bytes(await packages.get(hashlib.sha256(data).hexdigest())) for data in blobs]

    assert runner.run(scenario()) == blobs


def test_packages_concurrent_puts_of_one_digest(packages: Any, runner: asyncio.Runner) -> None:
    """Two nodes uploading the same package at once both succeed; one copy is kept."""
    data = os.urandom(1536 * 1024)
    digest = hashlib.sha256(data).hexdigest()

    async def scenario() -> bytes:
        await asyncio.gather(*(packages.put(digest, data) for _ in range(3)))
        return bytes(await packages.get(digest))

    assert runner.run(scenario()) == data


def test_s3_store_refuses_an_unreachable_endpoint(
    monkeypatch: pytest.MonkeyPatch, runner: asyncio.Runner
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    store = S3PackageStore(parse_spec(f"s3://ember-gone?endpoint={url}"))
    with pytest.raises(StartupRefused, match=f"s3://ember-gone at {url}: Could not connect"):
        runner.run(store.open())
    with pytest.raises(StorageUnavailable, match=f"s3://ember-gone at {url} failed"):
        runner.run(store.get("0" * 64))
    runner.run(store.close())


def test_s3_store_refuses_wrong_credentials(
    request: pytest.FixtureRequest, runner: asyncio.Runner
) -> None:
    store = s3_store(request, "s3://ember-denied?region=us-east-1", secret="wrong")
    with pytest.raises(StartupRefused, match=r"s3://ember-denied .*403"):
        runner.run(store.open())
    runner.run(store.close())


def test_s3_store_creates_its_missing_bucket(
    request: pytest.FixtureRequest, runner: asyncio.Runner
) -> None:
    bucket = f"ember-{uuid.uuid4().hex[:12]}"
    for _ in range(2):  # the second open finds the bucket the first one made
        store = s3_store(request, f"s3://{bucket}?region=us-east-1")
        runner.run(store.open())
        runner.run(store.put("0" * 64, b"kept"))
        runner.run(store.close())
    reader = s3_store(request, f"s3://{bucket}?")
    assert runner.run(reader.get("0" * 64)) == b"kept"
    runner.run(reader.close())


def test_postgres_store_gone_is_storage_unavailable(
    postgres_url: str, runner: asyncio.Runner
) -> None:
    database = Database(postgres_url, min_size=1, max_size=1)
    runner.run(database.open())
    runner.run(database.migrate(MIGRATION))
    store = PostgresPackageStore(database)
    drop_database(postgres_url)  # ends every session, as a lost server does
    with pytest.raises(StorageUnavailable):
        runner.run(store.get("0" * 64))
    runner.run(database.close())

"""Settings in, the store of code packages and layer zips out."""

from __future__ import annotations

from pathlib import Path

from ember.config import Settings
from ember.storage.base import PackageStore
from ember.storage.localfs import LocalPackageStore
from ember.storage.postgres import Database

BLOB_STORES = ("local", "postgresql", "s3://BUCKET?endpoint=URL")


def blob_store(settings: Settings, database: Database | None, data_dir: Path) -> PackageStore:
    """The store ``settings.blob_store`` names; ValueError naming a value it refuses.

    "local": ``<data_dir>/packages``; "postgresql": chunks in ``database``
    (its ``MIGRATION`` applied by the caller); "s3://...": an S3-compatible
    store, to ``open()`` before use.
    """
    name = settings.blob_store
    if name == "local":
        return LocalPackageStore(data_dir / "packages")
    if name == "postgresql":
        if database is None:
            raise ValueError("--blobs postgresql needs --database")
        from ember.storage.pg_blobs import PostgresPackageStore

        return PostgresPackageStore(database)
    if name.startswith("s3:"):
        # boto3 takes a while to import; only nodes that use S3 pay for it.
        from ember.storage.s3 import S3PackageStore, parse_spec

        return S3PackageStore(parse_spec(name))
    raise ValueError(f"unknown blob store {name!r}: choose one of {', '.join(BLOB_STORES)}")

"""Settings in, the storage of one node out: metadata stores, blobs, feed, leadership.

Embedded mode: one SQLite file per namespace in the data dir, packages in a
local directory, no feed, every duty held locally. Cluster mode
(``--database``): every namespace in PostgreSQL, blobs in PostgreSQL or S3,
changes of other nodes through the feed, duties under advisory locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ember.config import Settings
from ember.errors import StartupRefused
from ember.storage import pg_blobs, pg_metadata
from ember.storage.base import ChangeFeed, CodeSource, Leadership, MetadataStore, PackageStore
from ember.storage.blobs import blob_store
from ember.storage.embedded import LocalLeadership, NullChangeFeed
from ember.storage.node import node_id
from ember.storage.pg_feed import PostgresChangeFeed
from ember.storage.pg_leadership import PostgresLeadership
from ember.storage.pg_metadata import PostgresMetadataStore
from ember.storage.postgres import Database, Migration
from ember.storage.s3_code import S3CodeSource
from ember.storage.sqlite import SqliteMetadataStore

# The metadata namespaces: one SQLite file each in embedded mode (their names
# predate cluster mode), one key space each in PostgreSQL.
NAMESPACES = (
    "metadata",
    "layers",
    "urls",
    "tools",
    "limits",
    "manifests",
    "schedules",
    "configs",  # event-invoke-configs in cluster mode (embedded: queue.sqlite3)
    "policies",  # functions' resource policies (AddPermission)
    "tags",  # functions' tags (TagResource)
    "provisioned",  # provisioned concurrency configs (PutProvisionedConcurrencyConfig)
    "accounts",
    "users",  # identity policies per (account, user)
    "keys",  # access keys, secrets sealed under the master key
    "tokens",  # MCP tokens (their SHA-256 only)
    "mappings",  # event source mappings, by UUID
    "runtimes",  # Node majors the cluster's nodes install (cluster mode only)
)


@dataclass
class Storage:
    """What one node's components keep their state in. ``open`` before use, ``close`` after."""

    packages: PackageStore
    feed: ChangeFeed
    leadership: Leadership
    data_dir: Path
    database: Database | None = None
    # The users' bucket for code given as S3Bucket/S3Key (--code-s3-endpoint); None: none.
    code_source: CodeSource | None = None
    _stores: dict[str, MetadataStore] = field(default_factory=dict)

    def metadata(self, namespace: str) -> MetadataStore:
        """The store of ``namespace`` (one of NAMESPACES); the same object on every call."""
        if namespace not in NAMESPACES:
            raise ValueError(f"unknown metadata namespace {namespace!r}")
        store = self._stores.get(namespace)
        if store is None:
            store = self._stores[namespace] = self._new_store(namespace)
        return store

    def _new_store(self, namespace: str) -> MetadataStore:
        if self.database is None:
            return SqliteMetadataStore(self.data_dir / f"{namespace}.sqlite3")
        return PostgresMetadataStore(self.database, namespace)

    async def open(self, migrations: Sequence[Migration] = ()) -> None:
        """Connect and migrate (cluster mode; embedded stores open lazily), then fix
        the feed's starting point: before the components load, so that no change
        committed after their load is missed.

        ``migrations``: the schemas of components above storage (the queue) to
        bring up to date with storage's own, once across the cluster."""
        if self.database is not None:
            await self.database.open()
            await self.database.migrate(pg_metadata.MIGRATION, pg_blobs.MIGRATION, *migrations)
        await self.packages.open()
        await self.feed.start()

    async def close(self) -> None:
        """Stop the feed and release every store and the database. Idempotent."""
        self.feed.stop()
        for store in self._stores.values():
            await store.close()
        self._stores.clear()
        await self.packages.close()
        if self.code_source is not None:
            await self.code_source.close()
        if self.database is not None:
            await self.database.close()


def build(settings: Settings) -> Storage:
    data = settings.data_dir.resolve()
    code = _code_source(settings)
    if settings.database_url is None:
        packages = blob_store(settings, None, data)
        return Storage(packages, NullChangeFeed(), LocalLeadership(), data, code_source=code)
    database = Database(settings.database_url, min_size=1, max_size=10, node_id=node_id(data))
    return Storage(
        blob_store(settings, database, data),
        PostgresChangeFeed(database),
        PostgresLeadership(database),
        data,
        database,
        code_source=code,
    )


def _code_source(settings: Settings) -> CodeSource | None:
    endpoint = settings.code_s3_endpoint
    if not endpoint:
        return None
    target = urlsplit(endpoint)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise StartupRefused(f"--code-s3-endpoint {endpoint!r} is not an http(s)://HOST[:PORT] URL")
    return S3CodeSource(endpoint, settings.region)

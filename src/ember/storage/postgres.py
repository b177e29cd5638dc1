"""PostgreSQL, the cluster's shared engine: the connection pool and schema migrations.

Every PostgreSQL store of ember (metadata documents, blobs, the async queue)
works through one ``Database``: one async connection pool per process, and
schema changes applied at start, in order, under an advisory lock, so that
nodes starting together migrate once. Each component owns its migrations
(``component`` -> ordered SQL steps); the version reached is kept per
component in ``ember_schema``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool

from ember.errors import StartupRefused, StorageUnavailable

log = logging.getLogger("ember.storage")

# Advisory lock keys are 64-bit; ember's live in one range, named here once.
MIGRATION_LOCK = 0x656D626572_0001  # "ember" + 1
CHANGE_LOCK = 0x656D626572_0002  # serialises metadata writes: sequence order = commit order
BOOTSTRAP_LOCK = 0x656D626572_0003  # first start of a database: one node makes the root key

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS ember_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""

# How long a request waits for a pooled connection before it is refused with a
# ServiceException, rather than hanging past its own timeout while PostgreSQL is away.
POOL_TIMEOUT_SECONDS = 5.0
# psycopg_pool retries a lost connection with a doubling delay until this
# much time has passed, then gives the slot up; a request that then finds the
# pool empty starts a fresh attempt at once. Its default (5 min) let the delay
# grow past 30 s, so ember stayed down that long after a database restart.
RECONNECT_SECONDS = 8.0


@dataclass(frozen=True)
class Migration:
    """One component's schema: ``steps[i]`` takes it from version i to i + 1."""

    component: str
    steps: Sequence[str]

    @property
    def version(self) -> int:
        return len(self.steps)


@dataclass
class Database:
    """One PostgreSQL database shared by every node of a cluster."""

    url: str
    min_size: int = 2
    max_size: int = 16
    # Names this process in change records, so that it skips its own changes.
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _pool: AsyncConnectionPool | None = None

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise StorageUnavailable("The metadata database is not open.")
        return self._pool

    async def open(self) -> None:
        """Connect, or refuse to start naming the URL's host (never its password)."""
        pool = AsyncConnectionPool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=POOL_TIMEOUT_SECONDS,
            reconnect_timeout=RECONNECT_SECONDS,
            kwargs={"autocommit": True},
            open=False,
            # A connection that died while idle (database restarted) is found
            # before a request gets it, not by the request.
            check=AsyncConnectionPool.check_connection,
        )
        try:
            await pool.open(wait=True, timeout=10)
        except Exception as exc:
            await pool.close()
            raise StartupRefused(f"cannot reach the database {redact(self.url)}: {exc}") from None
        self._pool = pool

    async def migrate(self, *migrations: Migration) -> dict[str, tuple[int, int]]:
        """Bring each component's schema to its latest version, once across the cluster.

        Returns component -> (version before, version after). Refuses a database
        written by a newer ember (a version beyond the steps this one knows).
        """
        done: dict[str, tuple[int, int]] = {}
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                await conn.execute(_SCHEMA_TABLE)
                for migration in migrations:
                    done[migration.component] = await _apply(conn, migration)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return done

    @asynccontextmanager
    async def locked(self, lock: int) -> AsyncIterator[None]:
        """Hold the session advisory lock ``lock`` (one of the keys above) while inside;
        waits for a node holding it. The lock dies with the session if this process does."""
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))

    async def versions(self) -> dict[str, int]:
        """component -> schema version stored (empty for a new database)."""
        async with self.pool.connection() as conn:
            await conn.execute(_SCHEMA_TABLE)
            cursor = await conn.execute("SELECT component, version FROM ember_schema")
            return {str(name): int(version) for name, version in await cursor.fetchall()}

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _apply(conn: psycopg.AsyncConnection[object], migration: Migration) -> tuple[int, int]:
    cursor = await conn.execute(
        "SELECT version FROM ember_schema WHERE component = %s", (migration.component,)
    )
    row = await cursor.fetchone()
    before = int(row[0]) if row else 0  # type: ignore[index]
    if before > migration.version:
        raise StartupRefused(
            f"the database's {migration.component} schema is version {before}, newer than "
            f"this ember knows ({migration.version}): upgrade ember on this node"
        )
    for version in range(before, migration.version):
        async with conn.transaction():
            await conn.execute(migration.steps[version])
            await conn.execute(
                "INSERT INTO ember_schema(component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (migration.component, version + 1),
            )
        log.info("%s schema migrated to version %d", migration.component, version + 1)
    return before, migration.version


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{info.get('dbname', '')}"


def unavailable(exc: BaseException) -> StorageUnavailable:
    """The one translation of a psycopg or pool failure into ember's error tree."""
    return StorageUnavailable(f"The metadata database cannot be reached: {type(exc).__name__}.")

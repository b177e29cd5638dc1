"""Metadata documents in PostgreSQL (cluster mode), one key space per namespace.

Every write takes ``CHANGE_LOCK`` for its transaction before it draws its
``seq``, so sequence order is commit order: a reader that has seen seq N has
seen every change numbered below N, and the change feed can resume from the
last seq it read without skipping a change committed late. A delete leaves a
tombstone (``document`` NULL) that carries its own seq, so other nodes hear
of it; ``load_all`` never returns tombstones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from ember.storage.postgres import CHANGE_LOCK, Database, Migration, unavailable

# Every committed change notifies this channel; the payload (the namespace) is
# only a hint, the feed reads the rows themselves.
CHANNEL = "ember_changes"

MIGRATION = Migration(
    "metadata",
    [
        """
        CREATE SEQUENCE ember_change_seq;
        CREATE TABLE ember_documents (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            document TEXT NULL,  -- NULL: the tombstone of a delete
            seq BIGINT NOT NULL,  -- from ember_change_seq, drawn under CHANGE_LOCK
            origin TEXT NOT NULL,  -- the node_id that wrote it
            PRIMARY KEY (namespace, key)
        );
        CREATE INDEX ember_documents_seq ON ember_documents (seq);
        """
    ],
)

_PUT = f"""
INSERT INTO ember_documents (namespace, key, document, seq, origin)
VALUES (%s, %s, %s, nextval('ember_change_seq'), %s)
ON CONFLICT (namespace, key) DO UPDATE
    SET document = excluded.document, seq = excluded.seq, origin = excluded.origin
RETURNING pg_notify('{CHANNEL}', namespace)
"""

# Only a live document becomes a tombstone: deleting a missing key changes
# nothing, draws no seq and notifies no one.
_DELETE = f"""
UPDATE ember_documents
SET document = NULL, seq = nextval('ember_change_seq'), origin = %s
WHERE namespace = %s AND key = %s AND document IS NOT NULL
RETURNING pg_notify('{CHANNEL}', namespace)
"""


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Turn a psycopg or pool failure (a pool wait is bounded) into StorageUnavailable."""
    try:
        yield
    except psycopg.Error as exc:  # psycopg_pool.PoolTimeout is one too
        raise unavailable(exc) from exc


class PostgresMetadataStore:
    """See ``ember.storage.base.MetadataStore``; ``namespace`` separates the stores."""

    def __init__(self, database: Database, namespace: str) -> None:
        self._db = database
        self._namespace = namespace

    async def load_all(self) -> dict[str, str]:
        async with translated(), self._db.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT key, document FROM ember_documents "
                "WHERE namespace = %s AND document IS NOT NULL",
                (self._namespace,),
            )
            return {str(key): str(document) for key, document in await cursor.fetchall()}

    async def put(self, name: str, document: str) -> None:
        await self._change(_PUT, (self._namespace, name, document, self._db.node_id))

    async def delete(self, name: str) -> None:
        await self._change(_DELETE, (self._db.node_id, self._namespace, name))

    async def _change(self, statement: str, params: tuple[str, ...]) -> None:
        async with translated(), self._db.pool.connection() as conn, conn.transaction():
            # Held until commit, so no later seq can commit before this one.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
            await conn.execute(statement, params)

    async def close(self) -> None:
        """Nothing to release: the Database belongs to Storage, which closes it."""

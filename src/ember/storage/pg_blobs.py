"""Code packages and layer zips in PostgreSQL: chunked ``bytea`` keyed by digest.

A blob is its chunks (``ember_blob_chunks``, 1 MiB each, so that no row nears
PostgreSQL's 1 GB field limit and no single message holds a whole 50 MB zip
twice) plus one row in ``ember_blobs`` naming its size and chunk count. Both
are written in one transaction, so a reader sees a whole blob or none.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ember.storage.base import PackageData
from ember.storage.digests import checked
from ember.storage.postgres import Database, Migration, unavailable

CHUNK_BYTES = 1024 * 1024

MIGRATION = Migration(
    "blobs",
    [
        # Zips are already compressed: EXTERNAL stores chunks out of line without
        # PostgreSQL spending CPU on a second, useless compression.
        """
        CREATE TABLE ember_blob_chunks (
            digest TEXT NOT NULL,
            n INTEGER NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (digest, n)
        );
        ALTER TABLE ember_blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        CREATE TABLE ember_blobs (
            digest TEXT PRIMARY KEY,
            size BIGINT NOT NULL,
            chunks INTEGER NOT NULL
        );
        """,
    ],
)

# One statement, hence one snapshot: a delete committed between two reads
# cannot leave the blob row without its chunks. LEFT JOIN: an empty blob has
# its row and no chunk.
_READ = """
SELECT c.data
FROM ember_blobs b LEFT JOIN ember_blob_chunks c USING (digest)
WHERE b.digest = %s
ORDER BY c.n
"""


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise unavailable(exc) from exc


class PostgresPackageStore:
    """See ``ember.storage.base.PackageStore``; needs ``MIGRATION`` applied to ``database``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def put(self, digest: str, data: PackageData) -> None:
        key = checked(digest)
        size = _size(data)
        count = -(-size // CHUNK_BYTES)
        with _translated():
            async with self._database.pool.connection() as conn, conn.transaction():
                cursor = conn.cursor()
                await cursor.execute("SELECT 1 FROM ember_blobs WHERE digest = %s", (key,))
                if await cursor.fetchone():
                    return  # stored already: the same digest is the same bytes
                # ON CONFLICT: two nodes storing the same package at once both
                # succeed; the second waits on the key, then writes nothing new.
                await cursor.executemany(
                    "INSERT INTO ember_blob_chunks (digest, n, data) VALUES (%s, %s, %b) "
                    "ON CONFLICT DO NOTHING",
                    ((key, n, chunk) for n, chunk in enumerate(_chunks(data))),
                )
                await cursor.execute(
                    "INSERT INTO ember_blobs (digest, size, chunks) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (key, size, count),
                )

    async def get(self, digest: str) -> bytes:
        key = checked(digest)
        with _translated():
            async with self._database.pool.connection() as conn:
                cursor = conn.cursor(binary=True)
                rows = await (await cursor.execute(_READ, (key,))).fetchall()
        if not rows:
            raise KeyError(digest)
        return b"".join(bytes(row[0]) for row in rows if row[0] is not None)

    async def delete(self, digest: str) -> None:
        try:
            key = checked(digest)
        except KeyError:
            return
        with _translated():
            async with self._database.pool.connection() as conn, conn.transaction():
                await conn.execute("DELETE FROM ember_blobs WHERE digest = %s", (key,))
                await conn.execute("DELETE FROM ember_blob_chunks WHERE digest = %s", (key,))

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _size(data: PackageData) -> int:
    if isinstance(data, bytes):
        return len(data)
    size = data.seek(0, io.SEEK_END)
    data.seek(0)
    return size


def _chunks(data: PackageData) -> Iterator[bytes]:
    """``data`` in rows of ``CHUNK_BYTES``; a file is read one row at a time, so that a
    package never sits in memory whole beside its rows."""
    if isinstance(data, bytes):
        yield from (data[at : at + CHUNK_BYTES] for at in range(0, len(data), CHUNK_BYTES))
        return
    data.seek(0)
    while chunk := data.read(CHUNK_BYTES):
        yield chunk

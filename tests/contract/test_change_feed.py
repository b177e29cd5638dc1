"""The change feed on a real PostgreSQL: several ``Storage`` objects on one database
are several nodes; what one commits reaches the others' memory, in order, even
across a cut session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pg_sessions import eventually, session_pids, terminate

from ember.config import Settings
from ember.storage.pg_feed import PostgresChangeFeed
from ember.storage.pg_session import session_name
from ember.storage.wiring import Storage, build

Change = tuple[str, str, "str | None"]  # namespace, key, document (None: deleted)


@dataclass
class Node:
    storage: Storage
    # Every change the feed handed to this node, in delivery order.
    received: list[Change] = field(default_factory=list)

    @property
    def feed(self) -> PostgresChangeFeed:
        assert isinstance(self.storage.feed, PostgresChangeFeed)
        return self.storage.feed

    def watch(self, namespace: str, fail_on: str = "") -> None:
        async def apply(key: str, document: str | None) -> None:
            if key == fail_on:
                raise RuntimeError(f"cannot apply {key}")
            self.received.append((namespace, key, document))

        self.storage.feed.watch(namespace, apply)

    async def put(self, namespace: str, key: str, document: str) -> None:
        await self.storage.metadata(namespace).put(key, document)

    async def keys_in_seq_order(self) -> list[str]:
        assert self.storage.database is not None
        async with self.storage.database.pool.connection() as conn:
            cursor = await conn.execute("SELECT key FROM ember_documents ORDER BY seq")
            return [str(key) for (key,) in await cursor.fetchall()]


@asynccontextmanager
async def node(url: str, data_dir: Path, fail_on: str = "") -> AsyncIterator[Node]:
    """A node watching "metadata" and "layers", its feed running."""
    member = Node(build(Settings(data_dir=data_dir, database_url=url, blobs="local")))
    member.watch("metadata", fail_on)
    member.watch("layers")
    await member.storage.open()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(member.storage.feed.run())
            try:
                yield member
            finally:
                member.storage.feed.stop()
    finally:
        await member.storage.close()


@asynccontextmanager
async def cluster(url: str, tmp_path: Path, size: int) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(node(url, tmp_path / f"node{i}")) for i in range(size)
        ]


def test_a_change_reaches_the_other_node_but_not_its_own(postgres_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(postgres_url, tmp_path, 2) as (a, b):
            await a.put("metadata", "f", '{"v": 1}')
            await eventually(lambda: b.received == [("metadata", "f", '{"v": 1}')])
            await a.storage.metadata("metadata").delete("f")
            await a.storage.metadata("metadata").delete("never-written")  # changes nothing
            await eventually(lambda: b.received[-1:] == [("metadata", "f", None)])
            await b.put("layers", "l", "{}")
            await eventually(lambda: a.received == [("layers", "l", "{}")])
            # Once each feed has read every change, neither got its own back.
            last = b.feed.statistics().position
            await eventually(lambda: a.feed.statistics().position >= last)
            assert a.received == [("layers", "l", "{}")]
            assert b.received == [("metadata", "f", '{"v": 1}'), ("metadata", "f", None)]

    asyncio.run(scenario())


def test_only_changes_after_start_are_delivered(postgres_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node(postgres_url, tmp_path / "a") as a:
            await a.put("metadata", "loaded", "{}")  # a node starting later loads it
            async with node(postgres_url, tmp_path / "b") as b:
                assert await b.storage.metadata("metadata").load_all() == {"loaded": "{}"}
                await a.put("metadata", "changed", "{}")
                await eventually(lambda: b.received == [("metadata", "changed", "{}")])

    asyncio.run(scenario())


def test_changes_arrive_in_commit_order(postgres_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(postgres_url, tmp_path, 2) as (a, b):
            for i in range(20):
                await a.put("layers" if i % 2 else "metadata", f"k{i}", str(i))
            await eventually(lambda: len(b.received) == 20)
            assert [key for _, key, _ in b.received] == [f"k{i}" for i in range(20)]

    asyncio.run(scenario())


def test_a_burst_from_two_writers_arrives_complete_in_seq_order(
    postgres_url: str, tmp_path: Path
) -> None:
    async def write(writer: Node, prefix: str) -> None:
        for i in range(100):
            await writer.put("metadata", f"{prefix}{i}", "{}")

    async def scenario() -> None:
        async with cluster(postgres_url, tmp_path, 3) as (a, b, c):
            await asyncio.gather(write(a, "a"), write(c, "c"))
            await eventually(lambda: len(b.received) >= 200)
            assert [key for _, key, _ in b.received] == await b.keys_in_seq_order()

    asyncio.run(scenario())


def test_changes_made_while_the_feed_is_cut_are_delivered(
    postgres_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with cluster(postgres_url, tmp_path, 2) as (a, b):
            name = session_name(b.storage.database, "feed")  # type: ignore[arg-type]

            async def connected() -> bool:
                return len(await session_pids(postgres_url, name)) == 1

            await eventually(connected)  # the feed connects when its run() starts
            (listening,) = await session_pids(postgres_url, name)
            await terminate(postgres_url, listening)
            for i in range(5):
                await a.put("metadata", f"meanwhile{i}", "{}")

            async def reconnected() -> bool:
                return (await session_pids(postgres_url, name)) not in ([], [listening])

            await eventually(reconnected)
            await eventually(lambda: len(b.received) == 5)
            assert [key for _, key, _ in b.received] == [f"meanwhile{i}" for i in range(5)]

    asyncio.run(scenario())


def test_a_failing_apply_is_logged_and_the_feed_goes_on(postgres_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            node(postgres_url, tmp_path / "a") as a,
            node(postgres_url, tmp_path / "b", fail_on="bad") as b,
        ):
            await a.put("metadata", "bad", "{}")
            await a.put("metadata", "good", "{}")
            await eventually(lambda: b.received == [("metadata", "good", "{}")])

    asyncio.run(scenario())

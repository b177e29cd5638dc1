"""GroupCommit: concurrent callers share commits; a faulty item fails only its caller."""

from __future__ import annotations

import asyncio

import pytest

from ember.errors import StorageUnavailable
from ember.queue.batching import GroupCommit


class Store:
    """A store whose commit records each group; items < 0 are refused, "down" fails all."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.down = False

    async def commit(self, items: list[int]) -> list[int]:
        await asyncio.sleep(0)  # a real commit yields to the loop while it waits
        if self.down:
            raise StorageUnavailable("gone")
        if any(item < 0 for item in items):
            raise ValueError("refused")
        self.groups.append(items)
        return [item * 10 for item in items]


def test_callers_waiting_together_share_one_commit() -> None:
    async def scenario() -> None:
        store = Store()
        writer = GroupCommit("test", store.commit)
        writer.start()
        results = await asyncio.gather(*(writer.submit(i) for i in range(20)))
        await writer.close()
        assert results == [i * 10 for i in range(20)]
        assert store.groups == [list(range(20))]

    asyncio.run(scenario())


def test_a_faulty_item_fails_only_its_caller() -> None:
    async def scenario() -> None:
        store = Store()
        writer = GroupCommit("test", store.commit)
        writer.start()
        outcomes = await asyncio.gather(
            *(writer.submit(i) for i in (1, -1, 2)), return_exceptions=True
        )
        await writer.close()
        assert outcomes[0] == 10 and outcomes[2] == 20
        assert isinstance(outcomes[1], ValueError)
        assert sorted(item for group in store.groups for item in group) == [1, 2]

    asyncio.run(scenario())


def test_a_lost_store_fails_the_whole_group() -> None:
    async def scenario() -> None:
        store = Store()
        store.down = True
        writer = GroupCommit("test", store.commit)
        writer.start()
        outcomes = await asyncio.gather(
            *(writer.submit(i) for i in range(3)), return_exceptions=True
        )
        await writer.close()
        assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes)

    asyncio.run(scenario())


def test_groups_respect_their_limits() -> None:
    async def scenario() -> None:
        store = Store()
        writer = GroupCommit("test", store.commit, max_items=4, size=lambda i: i, max_size=5)
        writer.start()
        await asyncio.gather(*(writer.submit(i) for i in (1, 1, 1, 1, 1, 9, 1)))
        await writer.close()
        assert store.groups == [[1, 1, 1, 1], [1, 9], [1]]

    asyncio.run(scenario())


def test_close_commits_what_was_submitted_then_refuses() -> None:
    async def scenario() -> None:
        store = Store()
        writer = GroupCommit("test", store.commit)
        writer.start()
        waiting = [asyncio.ensure_future(writer.submit(i)) for i in range(5)]
        writer.submit_nowait(5)
        await asyncio.sleep(0)  # the callers hand their items over
        await writer.close()
        assert [await done for done in waiting] == [0, 10, 20, 30, 40]
        assert sorted(item for group in store.groups for item in group) == list(range(6))
        with pytest.raises(RuntimeError):
            await writer.submit(7)

    asyncio.run(scenario())

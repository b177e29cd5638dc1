"""Group commit for asyncio callers: many concurrent calls, one statement, one commit.

Callers ``submit`` an item and wait; one task takes every item waiting at that
moment (up to a group's limits), hands them to ``commit`` in one call and
answers each caller with its own result only after ``commit`` returned. While
a group commits, the next one gathers, so the cost of a commit (a round trip,
an fsync) is shared by everyone who arrived meanwhile.

Failure: ``StorageUnavailable`` from ``commit`` (the store is gone; the
commit may or may not have happened) fails the whole group. Any other error
is blamed on an item: the group is retried one item at a time, so that only
the faulty caller gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ember.errors import StorageUnavailable

log = logging.getLogger("ember.queue")

T = TypeVar("T")
R = TypeVar("R")

Commit = Callable[[list[T]], Awaitable[list[R]]]  # one result per item, in order


class GroupCommit(Generic[T, R]):
    """One task committing submitted items in groups; ``start`` it, ``close`` it."""

    def __init__(
        self,
        name: str,
        commit: Commit[T, R],
        max_items: int = 1024,
        size: Callable[[T], int] = lambda item: 0,
        max_size: int = 8 * 1024 * 1024,
    ) -> None:
        self._name = name
        self._commit = commit
        self._max_items = max_items
        self._size = size
        self._max_size = max_size
        # Invariant: each future is awaited by its caller, or done (cancelled) and skipped.
        self._pending: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def submit(self, item: T) -> R:
        """``item``'s result once its group committed; its error if it did not."""
        if self._closing:
            raise RuntimeError(f"{self._name} is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        return await future

    def submit_nowait(self, item: T) -> None:
        """Submit without waiting for the result; a failure is logged.

        Callable from synchronous code on the loop's thread, even while the loop
        is not running: the item is committed once it runs again.
        """
        if self._closing or self._task is None:
            raise RuntimeError(f"{self._name} is not running")
        future: asyncio.Future[R] = self._task.get_loop().create_future()
        future.add_done_callback(self._log_failure)
        self._pending.append((item, future))
        self._wake.set()

    def _log_failure(self, future: asyncio.Future[R]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("%s: a write nobody waits for failed: %r", self._name, future.exception())

    async def close(self) -> None:
        """Commit what was submitted, then stop. Idempotent."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._commit_group(self._next_group())
            if self._closing:
                return

    def _next_group(self) -> list[tuple[T, asyncio.Future[R]]]:
        group: list[tuple[T, asyncio.Future[R]]] = []
        size = 0
        while self._pending and len(group) < self._max_items and size < self._max_size:
            item, future = self._pending.popleft()
            if not future.done():  # a caller cancelled before its commit was promised nothing
                group.append((item, future))
                size += self._size(item)
        return group

    async def _commit_group(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        if not group:
            return
        try:
            results = await self._commit([item for item, _ in group])
        except StorageUnavailable as exc:
            _answer(group, [], exc)
        except Exception as exc:
            if len(group) == 1:
                log.warning("%s: an item failed: %r", self._name, exc)
                _answer(group, [], exc)
                return
            for member in group:  # find the faulty one; commit the others
                await self._commit_group([member])
        else:
            _answer(group, results, None)


def _answer(
    group: list[tuple[T, asyncio.Future[R]]], results: list[R], error: BaseException | None
) -> None:
    for index, (_, future) in enumerate(group):
        if future.done():
            continue  # the caller gave up (cancelled) meanwhile; a committed write stands
        if error is None:
            future.set_result(results[index])
        else:
            future.set_exception(error)

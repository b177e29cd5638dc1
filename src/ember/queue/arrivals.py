"""Wakes receivers of this process that are waiting for events to arrive."""

from __future__ import annotations

import asyncio
import contextlib


class Arrivals:
    """A level, not a pulse: a receiver compares ``generation`` before and after looking.

    Each waiter has its own future, so a notification between a receiver's
    look and its wait is never lost (``asyncio.Event`` set-then-clear can be).
    """

    def __init__(self) -> None:
        self.generation = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        self.generation += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return when something arrived after ``generation`` was ``seen``, or after ``timeout``."""
        if self.generation != seen or timeout <= 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.discard(waiter)

"""Embedded mode's feed and leadership: one process, so nothing to hear and no one to wait for."""

from __future__ import annotations

import asyncio

from ember.storage.base import Apply, Work


class NullChangeFeed:
    """See ``ember.storage.base.ChangeFeed``: no other node writes, so nothing arrives."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()

    def watch(self, namespace: str, apply: Apply) -> None:
        return None

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        await self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()


class LocalLeadership:
    """See ``ember.storage.base.Leadership``: the only process holds every duty."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def held(self) -> set[str]:
        return set(self._held)

    async def hold(self, duty: str, work: Work) -> None:
        self._held.add(duty)
        try:
            await work()
        finally:
            self._held.discard(duty)

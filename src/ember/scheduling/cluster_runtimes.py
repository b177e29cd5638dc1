"""`ember runtimes install|rm` for a node: its own host, and in a cluster every node.

On an embedded node the request installs on this host only. On a cluster node
(a database) it also records the wish in the shared ``runtimes`` namespace,
which every node that runs sandboxes keeps its own runtimes directory to
(``ember.worker.runtime_installs.RuntimeSync``); the request then waits until
every worker host registers the runtime, and answers which ones have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ember.errors import ResourceNotFound
from ember.lifecycle import Loop
from ember.scheduling.roster import Roster, WorkerState, state_of
from ember.worker.runtime_installs import (
    DOWNLOAD_TIMEOUT_SECONDS,
    RuntimeInstaller,
    RuntimeSync,
)

POLL_SECONDS = 0.5


class ClusterRuntimes:
    """The managed runtimes of this node and, with ``sync``, of its cluster."""

    def __init__(
        self,
        installer: RuntimeInstaller,
        sync: RuntimeSync | None = None,
        roster: Roster | None = None,
        wait_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
    ) -> None:
        self.installer = installer
        self.sync = sync
        self._roster = roster or Roster(None)
        self._wait_seconds = wait_seconds

    async def install(self, runtime: str) -> dict[str, Any]:
        """Install on this host; in a cluster, on every node, waiting for the worker
        hosts (``workers``: worker id -> whether it has the runtime now)."""
        done = await self.installer.install(runtime)
        body: dict[str, Any] = done.as_json()
        if self.sync is not None:
            await self.sync.wish(runtime)
            body["workers"] = await self._wait(runtime)
        return body

    async def remove(self, runtime: str) -> None:
        """Remove from this host; in a cluster, from every node (as they next sync)."""
        if self.sync is None:
            await self.installer.remove(runtime)
            return
        await self.sync.unwish(runtime)
        # Not on this host (a frontend restarted on a new data dir): the others still go.
        with contextlib.suppress(ResourceNotFound):
            await self.installer.remove(runtime)

    async def _wait(self, runtime: str) -> dict[str, bool]:
        deadline = time.monotonic() + self._wait_seconds
        while True:
            listing = await self._roster.list()
            have = {
                worker.worker_id: runtime in worker.runtimes
                for worker in listing.workers
                if state_of(worker) is not WorkerState.SILENT
            }
            if all(have.values()) or time.monotonic() >= deadline:
                return have
            await asyncio.sleep(POLL_SECONDS)


class RuntimeSyncPart:
    """``RuntimeSync`` as a part of ``ember serve`` on a database (``ember.lifecycle.Part``)."""

    def __init__(self, sync: RuntimeSync) -> None:
        self._sync = sync

    async def start(self) -> None:
        return None

    def loops(self) -> list[Loop]:
        return [self._sync.run()]

    def stop(self) -> None:
        self._sync.stop()

    async def close(self) -> None:
        return None

"""The operator's view of the worker hosts: who is live, silent or draining; drain one.

``GET /_ember/workers``, ``POST /_ember/workers/{id}/drain`` and ``ember
workers ls|drain`` call this. An embedded node has no Membership: it lists
no workers and says why, rather than failing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ember.errors import ResourceNotFound
from ember.scheduling.base import SILENCE_SECONDS, Membership, WorkerInfo

EMBEDDED_NOTE = (
    "This node runs embedded (no --database): its sandboxes are its own, and there are "
    "no worker hosts to list. Worker hosts (`ember worker`) join a cluster's database."
)


class WorkerState(enum.Enum):
    LIVE = "live"  # heard within SILENCE_SECONDS and taking new calls
    DRAINING = "draining"  # heard, but placement sends it nothing new
    SILENT = "silent"  # not heard for SILENCE_SECONDS: out of placement until it is


def state_of(info: WorkerInfo) -> WorkerState:
    """Silence first: a draining worker that stopped answering is gone, not draining."""
    if info.silence >= SILENCE_SECONDS:
        return WorkerState.SILENT
    return WorkerState.DRAINING if info.draining else WorkerState.LIVE


@dataclass(frozen=True)
class Listing:
    workers: list[WorkerInfo]
    note: str | None = None  # why the list is empty when it must be


@dataclass(frozen=True)
class Roster:
    """The workers of this node's cluster; ``membership`` None on an embedded node."""

    membership: Membership | None

    async def list(self) -> Listing:
        if self.membership is None:
            return Listing([], EMBEDDED_NOTE)
        return Listing(await self.membership.workers())

    async def drain(self, worker_id: str) -> WorkerInfo:
        """Mark the worker draining; returns its row as it is now."""
        if self.membership is None or not await self.membership.drain(worker_id):
            raise ResourceNotFound(f"Worker not found: {worker_id}")
        for info in await self.membership.workers():
            if info.worker_id == worker_id:
                return info
        raise ResourceNotFound(f"Worker not found: {worker_id}")  # it left meanwhile

"""The worker table in process memory: product code for tests and single-host
development, with the PostgreSQL table's behaviour and an injected clock."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ember.scheduling.base import WorkerInfo, WorkerLoad

Clock = Callable[[], float]


@dataclasses.dataclass(slots=True)
class _Row:
    info: WorkerInfo
    heartbeat: float  # the clock's time of the last register or heartbeat


class MemoryMembership:
    """See ``ember.scheduling.base.Membership``. ``clock`` stands for the database's."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._rows: dict[str, _Row] = {}

    async def register(self, info: WorkerInfo) -> None:
        started = datetime.now(UTC).isoformat()
        fresh = dataclasses.replace(info, draining=False, silence=0.0, started=started)
        self._rows[info.worker_id] = _Row(fresh, self._clock())

    async def heartbeat(self, worker_id: str, load: WorkerLoad) -> bool | None:
        row = self._rows.get(worker_id)
        if row is None:
            return None
        row.info = dataclasses.replace(row.info, load=load)
        row.heartbeat = self._clock()
        return row.info.draining

    async def workers(self) -> list[WorkerInfo]:
        now = self._clock()
        return [
            dataclasses.replace(row.info, silence=max(0.0, now - row.heartbeat))
            for _, row in sorted(self._rows.items())
        ]

    async def drain(self, worker_id: str) -> bool:
        row = self._rows.get(worker_id)
        if row is None:
            return False
        row.info = dataclasses.replace(row.info, draining=True)
        return True

    async def leave(self, worker_id: str) -> None:
        self._rows.pop(worker_id, None)

    async def set_runtimes(self, worker_id: str, runtimes: tuple[str, ...]) -> None:
        row = self._rows.get(worker_id)
        if row is not None:
            row.info = dataclasses.replace(row.info, runtimes=runtimes)

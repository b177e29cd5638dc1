"""Placement: choose a worker with room for one more sandbox.

Embedded mode has one worker; the accounting (memory reserved by function
MemorySize, a cap on sandboxes) is what a cluster needs per host too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.worker.worker import LocalWorker


@dataclass
class _Room:
    memory_mb: int = 0
    sandboxes: int = 0


class Placement:
    def __init__(self, workers: list[LocalWorker]) -> None:
        self._workers = workers
        self._used = {id(worker): _Room() for worker in workers}

    def add(self, worker: LocalWorker) -> None:
        """A worker joins: sandboxes may be placed on it from now on."""
        self._workers.append(worker)
        self._used[id(worker)] = _Room()

    def place(self, memory_mb: int) -> LocalWorker | None:
        """Reserve room on a worker for one sandbox, or None when none has it."""
        for worker in self._workers:
            used = self._used[id(worker)]
            if (
                used.memory_mb + memory_mb <= worker.memory_mb
                and used.sandboxes < worker.max_sandboxes
            ):
                used.memory_mb += memory_mb
                used.sandboxes += 1
                return worker
        return None

    def release(self, worker: LocalWorker, memory_mb: int) -> None:
        """Give back what ``place`` reserved."""
        used = self._used[id(worker)]
        used.memory_mb -= memory_mb
        used.sandboxes -= 1

    def statistics(self) -> dict[str, int]:
        return {
            "memoryReservedMB": sum(room.memory_mb for room in self._used.values()),
            "sandboxes": sum(room.sandboxes for room in self._used.values()),
        }

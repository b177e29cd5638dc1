"""The Worker Manager: warm sandboxes per function revision, leased one call at a time.

A *slot* is one sandbox plus its bookkeeping. ``acquire`` hands out an idle
warm slot of the exact revision (configuration and code) or Inits a new one
on a worker Placement chose; ``release`` puts it back or destroys it. Idle
slots past the keep-alive are reclaimed by ``run_evictor``. A change to a
function retires its slots: idle ones die at once, busy ones on release.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ember.control.models import FunctionRecord
from ember.errors import TooManyRequests
from ember.sandbox.base import Sandbox
from ember.scheduling.placement import Placement
from ember.worker.worker import LocalWorker, package_keys

log = logging.getLogger("ember.scheduling")

Clock = Callable[[], float]


class SlotState(enum.Enum):
    IDLE = "idle"  # warm, in its pool, waiting for a call
    BUSY = "busy"  # leased to exactly one invocation
    DEAD = "dead"  # destroyed; never handed out again


# Module-level aliases: Enum member lookups cost on the per-call path.
_IDLE, _BUSY = SlotState.IDLE, SlotState.BUSY


@dataclass(eq=False, slots=True)
class Slot:
    sandbox: Sandbox
    function: str
    revision: str
    memory_mb: int
    worker: LocalWorker
    created: float
    last_used: float
    state: SlotState = SlotState.BUSY
    invocations: int = 0
    # Invariant: a retired slot is never put back into a pool.
    retired: bool = False
    # The Init report (duration, output) belongs to the first invocation only.
    fresh: bool = True
    # Provisioned concurrency: kept initialized, never reclaimed by the evictor.
    provisioned: bool = False
    # The worker's cache entries (code, merged layers) this sandbox runs from.
    packages: frozenset[str] = frozenset()


@dataclass
class _Pool:
    idle: list[Slot] = field(default_factory=list)  # LIFO: the warmest first


class WorkerManager:
    def __init__(
        self,
        placement: Placement,
        keep_alive: float,
        clock: Clock = time.monotonic,
        freeze_after: float = 1.0,
    ) -> None:
        self._freeze_after = freeze_after
        self._placement = placement
        self._keep_alive = keep_alive
        self._clock = clock
        self._pools: dict[str, _Pool] = {}  # revision id -> pool
        self._slots: dict[str, Slot] = {}  # sandbox id -> slot (idle or busy)
        self._stopping = asyncio.Event()  # wakes the evictor at shutdown
        self._closed = False  # Invariant: True once close() ran; nothing is pooled after
        self.cold_starts = 0

    async def acquire(self, record: FunctionRecord) -> Slot:
        """A slot running ``record``'s revision, leased to the caller.

        Raises InitFailed (the function's Init failed), TooManyRequests (no
        worker has room) or SandboxUnavailable (the platform could not start one).
        """
        pool = self._pools.get(record.revision_id)
        while pool is not None and pool.idle:
            slot = pool.idle.pop()
            if not slot.sandbox.alive:
                # It ended while idle (its process exited, or was killed): the call
                # gets a new sandbox, as on Lambda, not the dead one's error.
                slot.state = _BUSY
                self._destroy(slot)
                pool = self._pools.get(record.revision_id)
                continue
            slot.state = _BUSY
            if slot.sandbox.frozen:
                slot.sandbox.thaw()
            return slot
        return await self._start(record)

    def _place(self, memory_mb: int) -> LocalWorker:
        """Room for one sandbox on a worker (an idle one evicted if need be), reserved."""
        worker = self._placement.place(memory_mb)
        if worker is None and self._evict_for_room():
            worker = self._placement.place(memory_mb)
        if worker is None:
            raise TooManyRequests(
                "Rate Exceeded.", "SandboxCapacityExceeded", retry_after_seconds=1.0
            )
        return worker

    async def _start(self, record: FunctionRecord, provisioned: bool = False) -> Slot:
        worker = self._place(record.memory_size)
        try:
            sandbox = await worker.start_sandbox(record, provisioned=provisioned)
        except BaseException:
            self._placement.release(worker, record.memory_size)
            raise
        self.cold_starts += 1
        now = self._clock()
        slot = Slot(sandbox, record.name, record.revision_id, record.memory_size, worker, now, now)
        slot.provisioned = provisioned
        slot.packages = frozenset(package_keys(record))
        self._slots[sandbox.sandbox_id] = slot
        return slot

    async def provision(self, record: FunctionRecord, count: int) -> int:
        """Keep ``count`` initialized sandboxes of ``record``'s revision; return how many live.

        Idempotent and convergent: dead provisioned sandboxes (killed, crashed)
        are dropped and replaced, surplus idle ones destroyed, new ones Init
        with ``AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`` and
        pooled idle. Busy ones count: they return to the pool when released.
        Each revision is counted apart: a manifest's ``$LATEST`` and the API's
        published versions of one function keep their own sandboxes; those of a
        revision no longer current are retired with it (``retire``).
        """
        live: list[Slot] = []
        for slot in list(self._slots.values()):
            if slot.revision != record.revision_id or not slot.provisioned:
                continue
            if slot.sandbox.alive and not slot.retired:
                live.append(slot)
            elif slot.state is SlotState.IDLE:
                self._destroy(slot)
        for slot in [s for s in live if s.state is SlotState.IDLE][: max(0, len(live) - count)]:
            self._destroy(slot)
            live.remove(slot)
        while len(live) < count and not self._closed:
            slot = await self._start(record, provisioned=True)
            slot.fresh = False  # Init was not part of any invocation
            slot.state = _IDLE
            self._pools.setdefault(slot.revision, _Pool()).idle.insert(0, slot)
            live.append(slot)
        return len(live)

    async def prepare_snap_start(self, record: FunctionRecord) -> None:
        """Make the SnapStart template of ``record``'s version on a worker, with room
        for its Init reserved while it runs. Raises TooManyRequests (no room),
        SnapStartRefused (it cannot be snapshotted) or InitFailed."""
        worker = self._place(record.memory_size)
        try:
            await worker.prepare_snap_start(record)
        finally:
            self._placement.release(worker, record.memory_size)

    def release(self, slot: Slot, reusable: bool) -> None:
        """End a lease: back to its pool if healthy and current, else destroyed."""
        slot.invocations += 1
        slot.fresh = False
        slot.last_used = self._clock()
        if reusable and not slot.retired and not self._closed:
            slot.state = _IDLE
            pool = self._pools.get(slot.revision)
            if pool is None:
                pool = self._pools[slot.revision] = _Pool()
            pool.idle.append(slot)
        else:
            self._destroy(slot)

    def _destroy(self, slot: Slot) -> None:
        if slot.state is SlotState.DEAD:
            return
        if slot.state is SlotState.IDLE:
            pool = self._pools.get(slot.revision)
            if pool is not None and slot in pool.idle:
                pool.idle.remove(slot)
                if not pool.idle:
                    del self._pools[slot.revision]
        slot.state = SlotState.DEAD
        self._slots.pop(slot.sandbox.sandbox_id, None)
        self._placement.release(slot.worker, slot.memory_mb)
        slot.sandbox.destroy()

    def retire(self, function: str, keep: Collection[str] = ()) -> None:
        """The function changed or was deleted: its sandboxes serve again only if
        their revision is in ``keep`` (the revisions still current: ``$LATEST``'s
        and its published versions')."""
        for slot in list(self._slots.values()):
            if slot.function == function and slot.revision not in keep:
                slot.retired = True
                if slot.state is SlotState.IDLE:
                    self._destroy(slot)

    def rename(self, old: str, new: str) -> None:
        """Revision ``old`` is now called ``new`` with nothing changed in what runs
        (PublishVersion gives ``$LATEST`` a new RevisionId): its sandboxes, idle or
        busy, keep serving under the new name."""
        for slot in self._slots.values():
            if slot.revision == old:
                slot.revision = new
        pool = self._pools.pop(old, None)
        if pool is not None:
            self._pools.setdefault(new, _Pool()).idle.extend(pool.idle)

    def packages_in_use(self) -> set[str]:
        """The worker cache entries that live sandboxes (idle or busy) run from."""
        return {key for slot in self._slots.values() for key in slot.packages}

    def function_of(self, sandbox_id: str) -> str | None:
        slot = self._slots.get(sandbox_id)
        return slot.function if slot else None

    def _evict_for_room(self) -> bool:
        """Destroy the least recently used idle slot; False when there is none."""
        idle = [
            slot
            for slot in self._slots.values()
            if slot.state is SlotState.IDLE and not slot.provisioned
        ]
        if not idle:
            return False
        self._destroy(min(idle, key=lambda slot: slot.last_used))
        return True

    def freeze_idle(self) -> int:
        """Freeze sandboxes idle for ``freeze_after`` seconds, as Lambda freezes them.

        Not on release: a thaw on every warm call would cost the hot path a
        cgroup write; a sandbox in steady use is never idle this long.
        """
        deadline = self._clock() - self._freeze_after
        count = 0
        for slot in self._slots.values():
            if slot.state is _IDLE and slot.last_used <= deadline and not slot.sandbox.frozen:
                slot.sandbox.freeze()
                count += 1
        return count

    def evict_expired(self) -> int:
        """Destroy idle slots unused for longer than the keep-alive; return how many."""
        deadline = self._clock() - self._keep_alive
        expired = [
            slot
            for slot in self._slots.values()
            if slot.state is SlotState.IDLE and slot.last_used <= deadline and not slot.provisioned
        ]
        for slot in expired:
            self._destroy(slot)
        return len(expired)

    async def run_evictor(self, interval: float) -> None:
        """Reclaim idle sandboxes until ``close``; runs in the lifespan's task group."""
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
            except TimeoutError:
                self.freeze_idle()
                count = self.evict_expired()
                if count:
                    log.info("reclaimed %d idle sandbox(es)", count)

    def close(self) -> None:
        """Destroy every sandbox, idle or busy (a busy call then fails as a crash)."""
        self._closed = True
        self._stopping.set()
        for slot in list(self._slots.values()):
            self._destroy(slot)

    def sandboxes(self) -> list[dict[str, object]]:
        now = self._clock()
        return [
            {
                "id": slot.sandbox.sandbox_id,
                "function": slot.function,
                "revision": slot.revision,
                "pid": slot.sandbox.pid,
                "state": slot.state.value,
                "provisioned": slot.provisioned,
                "memoryMB": slot.memory_mb,
                "invocations": slot.invocations,
                "initMs": round(slot.sandbox.init_ms, 3),
                "ageSeconds": round(now - slot.created, 3),
                "idleSeconds": round(now - slot.last_used, 3)
                if slot.state is SlotState.IDLE
                else 0.0,
            }
            for slot in self._slots.values()
        ]

    def idle_by_revision(self) -> dict[str, int]:
        """Idle warm sandboxes per revision id: what a worker host tells frontends."""
        return {revision: len(pool.idle) for revision, pool in self._pools.items() if pool.idle}

    def memory_reserved_mb(self) -> int:
        """The MemorySize of every live sandbox, idle or busy."""
        return sum(slot.memory_mb for slot in self._slots.values())

    def busy_memory_mb(self) -> int:
        """The MemorySize of the busy sandboxes (idle ones give way to a new one)."""
        return sum(slot.memory_mb for slot in self._slots.values() if slot.state is _BUSY)

    def statistics(self) -> dict[str, int]:
        idle = sum(1 for slot in self._slots.values() if slot.state is SlotState.IDLE)
        return {
            "sandboxes": len(self._slots),
            "idle": idle,
            "busy": len(self._slots) - idle,
            "coldStarts": self.cold_starts,
        }

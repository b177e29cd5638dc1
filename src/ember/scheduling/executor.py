"""The execution seam: where the invocation service hands a call to a sandbox.

``Executor`` is the one interface between the invocation service and wherever
sandboxes live. ``LocalExecutor`` runs calls on this process's Worker Manager
(the all-in-one node, and every worker host for the calls it receives);
``ember.scheduling.remote.RemoteExecutor`` sends them over the channel to a
worker host Placement chose (a frontend). The service never learns which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from ember.control.models import FunctionRecord
from ember.sandbox.base import SandboxRequest, SandboxResult
from ember.scheduling.manager import SlotState, WorkerManager

# Called once when the call starts in its sandbox, before any of its output:
# with Init's duration (ms) and output when this call paid Init, (None, output)
# when its sandbox was restored from a SnapStart template, else (None, b"").
Begin = Callable[[float | None, bytes], None]

_IDLE = SlotState.IDLE


class Execution(NamedTuple):
    """One call's run in a sandbox (a tuple: built on every call)."""

    result: SandboxResult
    duration_ms: float  # the Invoke alone, as Lambda bills it (Init excluded)
    init_ms: float | None  # set when this call paid Init
    init_log: bytes  # Init's (or the restore's) output when this call paid it, else b""
    # Whether the sandbox went back to its idle pool (placement's warm affinity).
    warm: bool
    sandbox_id: str = ""  # which sandbox ran it (the invocation history)
    # Set when this call's sandbox was started from a SnapStart template (then
    # init_ms is None): REPORT's Restore Duration.
    restore_ms: float | None = None


class Executor(Protocol):
    """Runs one call of a function revision in a sandbox, wherever sandboxes live."""

    async def execute(
        self, record: FunctionRecord, request: SandboxRequest, begin: Begin
    ) -> Execution:
        """Lease or Init a sandbox of ``record``'s revision and invoke it.

        A function's failure (error, timeout, crash) is a result, never raised.
        Raises InitFailed (the function's Init failed), TooManyRequests (no room
        for a sandbox anywhere) and PlatformError (SandboxUnavailable: none could
        be started; WorkerLost: the host running the call was lost mid-call).
        """
        ...

    async def provision(self, record: FunctionRecord, count: int) -> int:
        """Keep ``count`` initialized sandboxes of ``record``'s revision (provisioned
        concurrency); idempotent and convergent. Returns how many are live."""
        ...

    async def prepare_snap_start(self, record: FunctionRecord) -> None:
        """Make the SnapStart template of ``record``'s version, where its sandboxes
        will start. Raises SnapStartRefused (it cannot be snapshotted: its sandboxes
        run Init), InitFailed (Init failed in it) and EmberError (no room, no
        platform: try again later). Idempotent."""
        ...

    def statistics(self) -> dict[str, int]:
        """Sandboxes, idle, busy, cold starts: for /health."""
        ...

    async def sandboxes(self) -> list[dict[str, object]]:
        """Every live sandbox, as ``WorkerManager.sandboxes`` describes one."""
        ...


class LocalExecutor:
    """Calls run on this process's Worker Manager."""

    def __init__(self, manager: WorkerManager) -> None:
        self.manager = manager

    async def execute(
        self, record: FunctionRecord, request: SandboxRequest, begin: Begin
    ) -> Execution:
        manager = self.manager
        slot = await manager.acquire(record)
        sandbox = slot.sandbox
        init_ms = restore_ms = None
        init_log = b""
        if slot.fresh:
            restore_ms, init_log = sandbox.restore_ms, sandbox.init_log
            if restore_ms is None:
                init_ms = sandbox.init_ms
            # Lambda's deadline counts from the Invoke, not from the start of Init.
            request = request._replace(deadline_ms=int(time.time() * 1000) + record.timeout * 1000)
        begin(init_ms, init_log)
        started = time.perf_counter()
        reusable = False
        try:
            result = await sandbox.invoke(request)
            reusable = result.reusable
        finally:
            # A call that raised or was cancelled may still be running in the
            # sandbox, and its late reply would answer the next call: never reuse it.
            manager.release(slot, reusable=reusable and sandbox.alive)
        duration_ms = (time.perf_counter() - started) * 1000
        return Execution(
            result,
            duration_ms,
            init_ms,
            init_log,
            slot.state is _IDLE,
            sandbox.sandbox_id,
            restore_ms,
        )

    async def provision(self, record: FunctionRecord, count: int) -> int:
        return await self.manager.provision(record, count)

    async def prepare_snap_start(self, record: FunctionRecord) -> None:
        await self.manager.prepare_snap_start(record)

    def statistics(self) -> dict[str, int]:
        return self.manager.statistics()

    async def sandboxes(self) -> list[dict[str, object]]:
        return self.manager.sandboxes()

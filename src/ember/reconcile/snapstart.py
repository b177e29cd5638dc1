"""SnapStart templates: made for each version that waits for one, and the outcome kept.

A version appears Pending when SnapStart applies to it (PublishVersion of a
function with ``ApplyOn``; a create or update of ``$LATEST`` under ember's
``LatestAndPublished``: ``ember.control.snapstart``). This loop, run by the
``controller`` duty beside provisioned concurrency (so one node makes them in
a cluster), asks ``Executor.prepare_snap_start`` for each such version's
template, one at a time, and writes the outcome back into the version's record
(``FunctionRegistry.settle_template``): Active and On; Active, Off and the
backend's reason when it cannot be snapshotted; Failed with Init's error when
Init fails. A version that is not ready to try (no room, no sandbox platform)
waits and is tried again, later each time. The registry wakes the loop when
this node stores a Pending version; a pass every ``check_seconds`` finds
those another node stored, and those a restart left Pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson

from ember.control.models import FunctionRecord
from ember.control.registry import FunctionRegistry
from ember.control.snapstart import Outcome
from ember.errors import EmberError
from ember.sandbox.base import InitFailed, SnapStartRefused
from ember.scheduling.executor import Executor

log = logging.getLogger("ember.control")

# Waits before trying a version again after it could not be tried: first, and longest.
RETRY_SECONDS = (1.0, 60.0)


class SnapStartTemplates:
    """The loop making SnapStart templates for Pending versions."""

    def __init__(
        self,
        registry: FunctionRegistry,
        executor: Executor,
        check_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._executor = executor
        self._check = check_seconds
        self._clock = clock
        # Revision -> (when to try it again, the wait after that): versions that could
        # not be tried. Invariant: holds only revisions still Pending at the last pass.
        self._retry: dict[str, tuple[float, float]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        registry.on_template_wanted(self._wake.set)

    async def run(self) -> None:
        """Make templates until ``stop``; runs while this node holds the duty."""
        while not self._stopping:
            self._wake.clear()
            await self.converge()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._check)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def converge(self) -> None:
        """One pass: every Pending version due for a try is tried, its outcome kept."""
        pending = self._registry.pending_templates()
        waiting = {record.revision_id for record in pending}
        self._retry = {rev: due for rev, due in self._retry.items() if rev in waiting}
        for record in pending:
            if self._stopping:
                return
            due = self._retry.get(record.revision_id)
            if due is None or due[0] <= self._clock():
                await self._prepare(record)

    async def _prepare(self, record: FunctionRecord) -> None:
        outcome = await self._attempt(record)
        if outcome is None:
            self._later(record.revision_id)
            return
        try:
            settled = await self._registry.settle_template(record, outcome)
        except EmberError as exc:  # the store did not answer: made again next time
            log.warning("SnapStart template of %s not recorded: %s", record.name, exc.message)
            self._later(record.revision_id)
            return
        self._retry.pop(record.revision_id, None)
        if settled:
            log.info(
                "SnapStart template of %s:%s: %s",
                record.name,
                record.version,
                outcome.reason or outcome.template.value,
            )

    async def _attempt(self, record: FunctionRecord) -> Outcome | None:
        """The outcome of making ``record``'s template; None when it could not be tried."""
        try:
            await self._executor.prepare_snap_start(record)
        except SnapStartRefused as refused:
            return Outcome.refused(refused.reason_code, refused.reason)
        except InitFailed as failure:
            return Outcome.failed(*_init_error(failure.payload))
        except EmberError as exc:  # no room, no sandbox platform: not the version's fault
            log.warning("SnapStart template of %s: %s", record.name, exc.message)
            return None
        except Exception:  # a backend's fault must not end the controller duty
            log.exception("SnapStart template of %s failed", record.name)
            return None
        return Outcome.ready()

    def _later(self, revision: str) -> None:
        _, wait = self._retry.get(revision, (0.0, RETRY_SECONDS[0]))
        self._retry[revision] = (self._clock() + wait, min(wait * 2, RETRY_SECONDS[1]))


def _init_error(payload: bytes) -> tuple[str, str]:
    """(errorType, errorMessage) of Init's error JSON, as its StateReason says it."""
    try:
        error = orjson.loads(payload)
        return str(error["errorType"]), str(error["errorMessage"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "Runtime.Unknown", payload.decode("utf-8", "replace")


__all__ = ["SnapStartTemplates"]

"""Wiring of the manifest side: the object store, the controller, the scheduler.

``build`` makes the pieces (nothing starts). ``start`` loads the objects; the
one loop holds the two singleton duties: the controller (with the loop keeping
the API's provisioned concurrency, ``ember.reconcile.provisioned``, and the one
making SnapStart templates, ``ember.reconcile.snapstart``) runs while this node
holds ``controller``, the scheduler while it holds ``schedules`` (embedded
mode holds both). Every node keeps the objects current (namespace
``manifests``, through the feed), and an object written anywhere wakes the
controller wherever it runs. ``stop`` ends the duties; ``close`` has nothing
to release (the stores are the Storage's).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ember.config import Settings
from ember.control.arns import Arns
from ember.control.objects import FunctionObjects
from ember.control.wiring import ControlPlane
from ember.invoke.events import AsyncInvocation
from ember.invoke.service import InvocationService, InvokeCommand
from ember.lifecycle import Loop
from ember.reconcile.controller import Controller
from ember.reconcile.ports import FunctionUrlsPort, ToolCatalogPort
from ember.reconcile.provisioned import ProvisionedConcurrency
from ember.reconcile.schedules import Scheduler, manifest_triggers
from ember.reconcile.snapstart import SnapStartTemplates
from ember.scheduling.executor import Executor
from ember.storage.base import Leadership
from ember.storage.wiring import Storage
from ember.throttle import Throttle

log = logging.getLogger("ember.control")


def scheduled_event(
    names: Arns, function: str, moment: datetime, request_id: str
) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" document, as a Lambda on a schedule receives it.

    ``function`` is the storage key: the event and its rule name the owner's account.
    """
    account, name = names.owner(function)
    return {
        "version": "0",
        "id": request_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": names.region,
        "resources": [f"arn:aws:events:{names.region}:{account}:rule/ember-{name}"],
        "detail": {},
    }


# The singleton duties this part competes for (see ``ember.storage.base.Leadership``).
DUTIES = ("controller", "schedules")


@dataclass
class Manifests:
    objects: FunctionObjects
    scheduler: Scheduler
    controller: Controller
    leadership: Leadership
    # Provisioned concurrency configs of Lambda's API, converged beside the controller.
    provisioned: ProvisionedConcurrency
    # SnapStart templates of Pending versions, made beside the controller.
    templates: SnapStartTemplates
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def build(
        cls,
        settings: Settings,
        storage: Storage,
        control: ControlPlane,
        throttle: Throttle,
        asynchronous: AsyncInvocation | None,
        executor: Executor,
        invocations: InvocationService,
        tools: ToolCatalogPort | None = None,
        urls: FunctionUrlsPort | None = None,
    ) -> Manifests:
        """``tools`` and ``urls``: the MCP catalog and function URLs, when wired (else None)."""
        objects = FunctionObjects(
            storage.metadata("manifests"),
            storage.packages,
            lambda: datetime.now(UTC),
            control.names,
        )
        storage.feed.watch("manifests", objects.apply_remote)
        scheduler = Scheduler(
            storage.metadata("schedules"),
            functools.partial(_fire, control.names, invocations),
            functools.partial(manifest_triggers, objects, control.exists),
            minute_seconds=settings.schedule_minute_seconds,
        )
        controller = Controller(
            objects,
            control.registry,
            throttle.limits,
            asynchronous.configs if asynchronous is not None else None,
            executor,
            control.names,
            tools=tools,
            urls=urls,
            tags=control.tags,
            resync_seconds=settings.reconcile_resync_seconds,
        )
        objects.subscribe(controller.enqueue)
        control.registry.subscribe(controller.function_changed)
        provisioned = ProvisionedConcurrency(
            storage.metadata("provisioned"),
            control.registry,
            executor,
            control.names,
            reserved=lambda key: throttle.limits.get(key).reserved,
            unreserved=lambda account: throttle.limits.unreserved_of(
                None if account == control.names.account_id else account
            ),
        )
        storage.feed.watch("provisioned", provisioned.apply_remote)
        templates = SnapStartTemplates(control.registry, executor)
        return cls(objects, scheduler, controller, storage.leadership, provisioned, templates)

    async def start(self) -> None:
        await self.objects.load()
        await self.provisioned.load()

    def loops(self) -> list[Loop]:
        return [self._duties()]

    async def _duties(self) -> None:
        """Hold both duties until ``stop``; a lost duty's work is cancelled by ``hold``."""
        async with asyncio.TaskGroup() as duties:
            held = [
                duties.create_task(self.leadership.hold("controller", self._converge)),
                duties.create_task(self.leadership.hold("schedules", self.scheduler.run)),
            ]
            await self._stopped.wait()
            for task in held:
                task.cancel()

    async def _converge(self) -> None:
        """The controller duty: manifests, the API's provisioned concurrency, and
        SnapStart templates."""
        async with asyncio.TaskGroup() as loops:
            loops.create_task(self.controller.run())
            loops.create_task(self.provisioned.run())
            loops.create_task(self.templates.run())

    def stop(self) -> None:
        self.controller.stop()
        self.provisioned.stop()
        self.templates.stop()
        self.scheduler.stop()
        self._stopped.set()

    async def close(self) -> None:
        return None


async def _fire(
    names: Arns,
    invocations: InvocationService,
    function: str,
    moment: datetime,
    request_id: str,
    payload: dict[str, Any] | None,
) -> None:
    """One schedule firing: an Event invoke with the firing's own request id."""
    event = payload if payload is not None else scheduled_event(names, function, moment, request_id)
    command = InvokeCommand(
        function=function,
        payload=orjson.dumps(event),
        invocation_type="Event",
        request_id=request_id,
        origin="schedule",
    )
    await invocations.invoke(command)

"""Wiring of the manifest side of the control plane: object store, scheduler, controller.

``build`` makes the pieces (nothing starts); the server's lifespan calls
``start``, runs ``loops`` in its task group, ``stop`` and ``close``.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ember.config import Settings
from ember.control.arns import Arns
from ember.control.controller import Controller
from ember.control.objects import FunctionObjects
from ember.control.ports import FunctionUrlsPort, ToolCatalogPort
from ember.control.registry import FunctionRegistry
from ember.control.schedules import Scheduler
from ember.invoke.events import AsyncInvocation
from ember.invoke.service import InvocationService, InvokeCommand
from ember.scheduling.manager import WorkerManager
from ember.storage.base import PackageStore
from ember.storage.sqlite import SqliteMetadataStore
from ember.throttle import Throttle

log = logging.getLogger("ember.control")


def scheduled_event(
    names: Arns, function: str, moment: datetime, request_id: str
) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" document, as a Lambda on a schedule receives it."""
    return {
        "version": "0",
        "id": request_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": names.account_id,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": names.region,
        "resources": [f"arn:aws:events:{names.region}:{names.account_id}:rule/ember-{function}"],
        "detail": {},
    }


@dataclass
class Manifests:
    objects: FunctionObjects
    scheduler: Scheduler
    controller: Controller

    @classmethod
    def build(
        cls,
        settings: Settings,
        data: Path,
        packages: PackageStore,
        registry: FunctionRegistry,
        throttle: Throttle,
        asynchronous: AsyncInvocation | None,
        manager: WorkerManager,
        invocations: InvocationService,
        names: Arns,
        tools: ToolCatalogPort | None = None,
        urls: FunctionUrlsPort | None = None,
    ) -> Manifests:
        """``tools`` and ``urls``: the MCP catalog and function URLs, when wired (else None)."""
        objects = FunctionObjects(
            SqliteMetadataStore(data / "manifests.sqlite3"), packages, lambda: datetime.now(UTC)
        )

        async def fire(
            function: str, moment: datetime, request_id: str, payload: dict[str, Any] | None
        ) -> None:
            event = (
                payload
                if payload is not None
                else scheduled_event(names, function, moment, request_id)
            )
            command = InvokeCommand(
                function=function,
                payload=orjson.dumps(event),
                invocation_type="Event",
                request_id=request_id,
            )
            await invocations.invoke(command)

        scheduler = Scheduler(
            SqliteMetadataStore(data / "schedules.sqlite3"),
            fire,
            minute_seconds=settings.schedule_minute_seconds,
        )
        controller = Controller(
            objects,
            registry,
            throttle.limits,
            asynchronous.configs if asynchronous is not None else None,
            manager,
            scheduler,
            names,
            tools=tools,
            urls=urls,
            resync_seconds=settings.reconcile_resync_seconds,
        )
        objects.subscribe(controller.enqueue)
        registry.subscribe(controller.function_changed)
        return cls(objects, scheduler, controller)

    async def start(self) -> None:
        await self.objects.load()
        await self.scheduler.load()

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        return [self.controller.run(), self.scheduler.run()]

    def stop(self) -> None:
        self.controller.stop()
        self.scheduler.stop()

    async def close(self) -> None:
        await self.scheduler.close()

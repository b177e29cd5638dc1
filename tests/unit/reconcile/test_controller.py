"""The controller against real in-process components (registry, limits, Worker Manager)."""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from ember.control.arns import Arns
from ember.control.objects import FunctionObjects
from ember.control.registry import FunctionRegistry
from ember.queue.configs import EventInvokeConfigs
from ember.queue.memory import MemoryEventQueue
from ember.reconcile.controller import Controller, inline_package
from ember.reconcile.provisioned import ProvisionedConcurrency
from ember.reconcile.schedules import Scheduler, manifest_triggers
from ember.reconcile.snapstart import SnapStartTemplates
from ember.reconcile.wiring import Manifests
from ember.scheduling.executor import LocalExecutor
from ember.scheduling.manager import WorkerManager
from ember.scheduling.placement import Placement
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore
from ember.throttle.limits import ThrottleLimits

_ids = itertools.count()
KEY = ("default", "fn")
BODY: dict[str, Any] = {
    "apiVersion": "ember.dev/v1",
    "kind": "Function",
    "metadata": {"name": "fn"},
    "spec": {
        "runtime": "python3.11",
        "handler": "app.handler",
        "code": {"inline": "def handler(e, c):\n    return 1\n"},
        "memoryMB": 256,
        "concurrency": {"reserved": 7, "provisioned": 1},
        "rateLimit": {"rate": 5, "period": "1m"},
        "triggers": [{"schedule": "rate(5 minutes)"}],
        "mcp": {"expose": True, "toolName": "fn_tool"},
    },
}


@dataclass
class StubSandbox:
    sandbox_id: str = field(default_factory=lambda: f"sb{next(_ids)}")
    pid: int = 0
    init_ms: float = 1.0
    destroyed: bool = False
    frozen: bool = False

    @property
    def alive(self) -> bool:
        return not self.destroyed

    def destroy(self) -> None:
        self.destroyed = True


@dataclass
class StubWorker:
    memory_mb: int = 4096
    max_sandboxes: int = 100

    async def start_sandbox(self, record: Any, provisioned: bool = False) -> StubSandbox:
        return StubSandbox()


@dataclass
class Tools:
    """An in-process tool catalog with the interface §4 methods."""

    exposed: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: int = 0

    def get(self, function: str) -> Any:
        return self.exposed.get(function)

    async def expose(self, function: str, settings: dict[str, Any]) -> Any:
        self.calls += 1
        self.exposed[function] = settings
        return settings

    async def hide(self, function: str) -> None:
        self.exposed.pop(function, None)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    objects: FunctionObjects
    registry: FunctionRegistry
    limits: ThrottleLimits
    scheduler: Scheduler
    manager: WorkerManager
    controller: Controller
    clock: Clock
    configs: EventInvokeConfigs


def world(tools: Tools | None) -> World:
    async def fire(*_: Any) -> None:
        return None

    objects = FunctionObjects(
        MemoryMetadataStore(), MemoryPackageStore(), lambda: datetime.now(UTC)
    )
    registry = FunctionRegistry(
        MemoryMetadataStore(), MemoryPackageStore(), Arns("us-east-1", "0" * 12)
    )
    limits = ThrottleLimits(MemoryMetadataStore(), 1000)
    scheduler = Scheduler(
        MemoryMetadataStore(),
        fire,
        lambda: manifest_triggers(objects, lambda name: registry.lookup(name) is not None),
    )
    placement: Any = Placement([StubWorker()])  # type: ignore[list-item]
    manager = WorkerManager(placement, 60)
    clock = Clock()
    names = Arns("us-east-1", "0" * 12)
    configs = EventInvokeConfigs(
        MemoryEventQueue(), lambda name: registry.lookup(name) is not None, names, 60.0
    )
    controller = Controller(
        objects,
        registry,
        limits,
        configs,
        LocalExecutor(manager),
        names,
        tools=tools,
        clock=clock,
    )
    return World(objects, registry, limits, scheduler, manager, controller, clock, configs)


def conditions(w: World) -> dict[str, dict[str, Any]]:
    status = w.objects.get(*KEY)["status"]
    return {c["type"]: c for c in status["conditions"]}


def test_one_reconcile_applies_every_step_and_a_second_changes_nothing() -> None:
    async def scenario() -> None:
        tools = Tools()
        w = world(tools)
        await w.objects.apply("default", "fn", BODY)
        assert await w.controller.reconcile(KEY) == 1.0  # provisioned: looked at again soon
        record = w.registry.get("fn")
        assert record.memory_size == 256
        assert w.limits.get("fn").reserved == 7
        assert w.limits.get("fn").function is not None
        assert w.limits.get("fn").function.limit == 5  # type: ignore[union-attr]
        await w.scheduler.fire_due()  # the scheduler reads the object's triggers
        assert w.scheduler.registered("fn") == ["rate(5 minutes)"]
        assert tools.exposed["fn"]["toolName"] == "fn_tool"
        assert w.manager.statistics()["idle"] == 1
        found = conditions(w)
        assert all(c["status"] == "True" and c["observedGeneration"] == 1 for c in found.values())
        revision = record.revision_id
        await w.controller.reconcile(KEY)
        assert w.registry.get("fn").revision_id == revision  # idempotent
        assert tools.calls == 1

    asyncio.run(scenario())


def test_missing_integrations_are_reported_in_conditions() -> None:
    async def scenario() -> None:
        w = world(None)
        body = copy.deepcopy(BODY)
        body["spec"]["triggers"] = [{"url": {"authType": "NONE"}}]
        await w.objects.apply("default", "fn", body)
        await w.controller.reconcile(KEY)
        found = conditions(w)
        assert found["ToolPublished"]["reason"] == "MCPUnavailable"
        assert found["TriggersReady"]["reason"] == "URLsUnavailable"
        assert found["Ready"]["status"] == "False"
        assert found["CodeReady"]["status"] == "True"

    asyncio.run(scenario())


def test_a_failing_step_is_retried_with_growing_backoff() -> None:
    async def scenario() -> None:
        w = world(None)
        body = copy.deepcopy(BODY)
        # Leaves fewer than 100 unreserved of the account's 1000: refused.
        body["spec"]["concurrency"] = {"reserved": 950}
        body["spec"].pop("mcp")
        await w.objects.apply("default", "fn", body)
        delays = []
        for _ in range(3):
            w.controller._due.clear()
            await w.controller._work(KEY)
            delays.append(w.controller._due[KEY] - w.clock.now)
        assert delays == [0.5, 1.0, 2.0]
        assert conditions(w)["ConfigReady"]["reason"] == "InvalidParameterValue"
        assert conditions(w)["CodeReady"]["status"] == "True"

    asyncio.run(scenario())


def test_deleting_the_object_removes_the_function_then_the_object() -> None:
    async def scenario() -> None:
        tools = Tools()
        w = world(tools)
        await w.objects.apply("default", "fn", BODY)
        await w.controller.reconcile(KEY)
        await w.objects.delete(*KEY)
        assert await w.controller.reconcile(KEY) is None
        assert w.registry.lookup("fn") is None
        assert w.objects.lookup(*KEY) is None
        await w.scheduler.fire_due()
        assert tools.exposed == {} and w.scheduler.registered("fn") == []

    asyncio.run(scenario())


def test_egress_isolation_and_async_settings_follow_the_spec() -> None:
    async def scenario() -> None:
        w = world(Tools())
        sink = copy.deepcopy(BODY)
        sink["metadata"]["name"] = "sink"
        sink["spec"] = {
            k: v for k, v in sink["spec"].items() if k in ("runtime", "handler", "code")
        }
        await w.objects.apply("default", "sink", sink)
        await w.controller.reconcile(("default", "sink"))
        body = copy.deepcopy(BODY)
        body["spec"]["network"] = {"egress": True}
        body["spec"]["isolation"] = "strong"
        body["spec"]["async"] = {"maxRetryAttempts": 1, "onFailure": "sink"}
        await w.objects.apply("default", "fn", body)
        await w.controller.reconcile(KEY)
        assert w.registry.get("fn").egress
        assert w.registry.get("fn").isolation == "strong"
        config = w.configs.lookup("fn")
        assert config is not None and config.maximum_retry_attempts == 1
        assert config.on_failure == "arn:aws:lambda:us-east-1:000000000000:function:sink"
        del body["spec"]["async"], body["spec"]["network"], body["spec"]["isolation"]
        await w.objects.apply("default", "fn", body)
        await w.controller.reconcile(KEY)
        assert w.configs.lookup("fn") is None and not w.registry.get("fn").egress
        assert w.registry.get("fn").isolation == "standard"

    asyncio.run(scenario())


class OnlyThese:
    """A Leadership under which this node holds ``duties`` and waits forever for the rest."""

    def __init__(self, *duties: str) -> None:
        self.duties = duties

    async def hold(self, duty: str, work: Callable[[], Awaitable[None]]) -> None:
        if duty in self.duties:
            await work()
        else:
            await asyncio.Event().wait()


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


@pytest.mark.parametrize("held", ["controller", "schedules"])
def test_the_controller_and_the_scheduler_run_only_under_their_duties(held: str) -> None:
    async def scenario() -> None:
        w = world(None)
        fired: list[str] = []

        async def fire(function: str, *_: Any) -> None:
            fired.append(function)

        scheduler = Scheduler(
            MemoryMetadataStore(),
            fire,
            lambda: manifest_triggers(w.objects, lambda name: w.registry.lookup(name) is not None),
            minute_seconds=0.1,
        )
        body = copy.deepcopy(BODY)
        body["spec"]["triggers"] = [{"schedule": "rate(1 minute)"}]
        await w.objects.apply("default", "fn", body)
        await w.registry.create(
            {
                "FunctionName": "fn",
                "Runtime": "python3.11",
                "Handler": "app.handler",
                "Role": "arn:aws:iam::000000000000:role/r",
                "Code": {"ZipFile": base64.b64encode(inline_package("app.handler", "")).decode()},
            }
        )
        provisioned = ProvisionedConcurrency(
            MemoryMetadataStore(),
            w.registry,
            w.manager,
            Arns("us-east-1", "0" * 12),
            reserved=lambda key: None,
            unreserved=lambda account: 1000,
        )
        templates = SnapStartTemplates(w.registry, LocalExecutor(w.manager))
        manifests = Manifests(
            w.objects, scheduler, w.controller, OnlyThese(held), provisioned, templates
        )
        duties = asyncio.create_task(manifests.loops()[0])
        if held == "controller":
            await _until(lambda: w.controller.reconciles > 0)
            assert fired == []
        else:
            await _until(lambda: "fn" in fired)
            assert w.controller.reconciles == 0
        manifests.stop()
        await duties  # the duty not held is cancelled: stop returns

    asyncio.run(scenario())

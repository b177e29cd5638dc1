"""The loop making SnapStart templates, against a real registry and a scripted executor."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from ember.control.arns import Arns
from ember.control.models import FunctionRecord
from ember.control.registry import FunctionRegistry
from ember.errors import TooManyRequests
from ember.reconcile.snapstart import SnapStartTemplates
from ember.sandbox.base import InitFailed, SnapStartRefused
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

NAMES = Arns("us-east-1", "0" * 12)


@dataclass
class Backend:
    """The executor's SnapStart side: answers each call with the next scripted outcome
    (an exception to raise, or None: made)."""

    answers: list[BaseException | None] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def prepare_snap_start(self, record: FunctionRecord) -> None:
        self.asked.append((record.name, record.version))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _body(name: str, apply_on: str = "PublishedVersions") -> dict[str, Any]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "x = 1\n")
    return {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": "arn:aws:iam::000000000000:role/r",
        "Code": {"ZipFile": base64.b64encode(buffer.getvalue()).decode()},
        "SnapStart": {"ApplyOn": apply_on},
    }


def _world(check: float = 1.0) -> tuple[FunctionRegistry, Backend, Clock, SnapStartTemplates]:
    registry = FunctionRegistry(MemoryMetadataStore(), MemoryPackageStore(), NAMES)
    backend, clock = Backend(), Clock()
    templates = SnapStartTemplates(registry, backend, check, clock)  # type: ignore[arg-type]
    return registry, backend, clock, templates


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def _state(registry: FunctionRegistry, name: str, qualifier: str = "1") -> dict[str, Any]:
    config = registry.version(name, qualifier).configuration(NAMES, qualifier)
    keys = ("State", "StateReasonCode", "StateReason")
    return {"Optimization": config["SnapStart"]["OptimizationStatus"]} | {
        key: config[key] for key in keys if key in config
    }


def test_each_outcome_is_recorded_on_its_version() -> None:
    async def scenario() -> None:
        registry, backend, _, templates = _world()
        init_error = orjson.dumps({"errorType": "Runtime.UserCodeSyntaxError", "errorMessage": "x"})
        backend.answers = [
            None,
            SnapStartRefused("SnapStartNotReady", "Init left threads running"),
            InitFailed(init_error, b"", 3.0),
        ]
        for name in ("ready", "refused", "failed"):
            await registry.create(_body(name))
            await registry.publish(name, {})
        await templates.converge()
        assert backend.asked == [("ready", "1"), ("refused", "1"), ("failed", "1")]
        assert _state(registry, "ready") == {"Optimization": "On", "State": "Active"}
        assert _state(registry, "refused") == {
            "Optimization": "Off",
            "State": "Active",
            "StateReasonCode": "InvalidConfiguration",
            "StateReason": "SnapStartNotReady: Init left threads running",
        }
        assert _state(registry, "failed") == {
            "Optimization": "Off",
            "State": "Failed",
            "StateReasonCode": "FunctionError",
            "StateReason": "Runtime.UserCodeSyntaxError: x",
        }
        await templates.converge()  # nothing is Pending any more
        assert len(backend.asked) == 3

    run(scenario)


def test_a_version_that_could_not_be_tried_is_tried_later_each_time() -> None:
    async def scenario() -> None:
        registry, backend, clock, templates = _world()
        full = TooManyRequests("Rate Exceeded.", "SandboxCapacityExceeded", 1.0)
        backend.answers = [full, full, None]
        await registry.create(_body("f"))
        await registry.publish("f", {})
        await templates.converge()
        assert _state(registry, "f")["State"] == "Pending"
        await templates.converge()  # not due yet
        assert len(backend.asked) == 1
        clock.now = 1.0
        await templates.converge()
        assert len(backend.asked) == 2
        clock.now = 2.5  # the second wait is twice the first
        await templates.converge()
        assert len(backend.asked) == 2
        clock.now = 3.0
        await templates.converge()
        assert _state(registry, "f") == {"Optimization": "On", "State": "Active"}

    run(scenario)


def test_an_outcome_for_a_revision_replaced_meanwhile_is_dropped() -> None:
    async def scenario() -> None:
        registry, backend, _, templates = _world()
        await registry.create(_body("f", "LatestAndPublished"))

        async def update_first(record: FunctionRecord) -> None:
            backend.asked.append((record.name, record.revision_id))
            if len(backend.asked) == 1:  # $LATEST changes while its template is made
                await registry.update_configuration("f", {"Timeout": 9})

        backend.prepare_snap_start = update_first  # type: ignore[method-assign]
        await templates.converge()
        latest = registry.get("f")
        assert latest.template == "Pending" and latest.timeout == 9
        await templates.converge()
        assert registry.get("f").template == "Ready"
        assert backend.asked[1] == ("f", latest.revision_id)

    run(scenario)


def test_the_loop_wakes_when_a_version_is_published_and_stops() -> None:
    async def scenario() -> None:
        # A pass a minute: only the registry's wake-up can make it go on at once.
        registry, backend, _, templates = _world(check=60.0)
        await registry.create(_body("f"))
        loop = asyncio.create_task(templates.run())
        await asyncio.sleep(0)
        await registry.publish("f", {})
        for _ in range(100):
            if registry.version("f", "1").template == "Ready":
                break
            await asyncio.sleep(0.01)
        assert backend.asked == [("f", "1")]
        templates.stop()
        await asyncio.wait_for(loop, 5)

    run(scenario)

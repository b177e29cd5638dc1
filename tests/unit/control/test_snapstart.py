"""SnapStart in the registry: the setting, each version's template and how Lambda shows it.

On in-memory stores (product code, not mocks); the loop that makes templates is
``tests/unit/reconcile/test_snapstart_templates.py``, the API end to end
``tests/e2e/test_snapstart_api.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ember.control.arns import Arns
from ember.control.registry import FunctionRegistry
from ember.control.snapstart import Outcome, Template
from ember.errors import ValidationError
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

ROLE = "arn:aws:iam::000000000000:role/r"
NAMES = Arns("us-east-1", "0" * 12)


def _body(**extra: Any) -> dict[str, Any]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "x = 1\n")
    return {
        "FunctionName": "f",
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": base64.b64encode(buffer.getvalue()).decode()},
        **extra,
    }


def _registry(store: MemoryMetadataStore | None = None) -> FunctionRegistry:
    return FunctionRegistry(store or MemoryMetadataStore(), MemoryPackageStore(), NAMES)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def _shown(registry: FunctionRegistry, qualifier: str | None = None) -> dict[str, Any]:
    """The fields of the configuration that SnapStart moves."""
    config = registry.version("f", qualifier).configuration(NAMES, qualifier)
    keys = ("SnapStart", "State", "StateReasonCode", "StateReason", "LastUpdateStatus")
    return {key: config[key] for key in keys if key in config}


def test_published_versions_wait_for_a_template_and_latest_never_does() -> None:
    async def scenario() -> None:
        registry = _registry()
        wanted: list[None] = []
        registry.on_template_wanted(lambda: wanted.append(None))
        latest = await registry.create(_body(SnapStart={"ApplyOn": "PublishedVersions"}))
        assert (latest.snap_start, latest.template) == ("PublishedVersions", "Off")
        assert not latest.starts_from_template and wanted == []
        assert _shown(registry) == {
            "SnapStart": {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"},
            "State": "Active",
            "LastUpdateStatus": "Successful",
        }
        version = await registry.publish("f", {})
        assert version.template == "Pending" and version.starts_from_template
        assert len(wanted) == 1
        assert registry.pending_templates() == [version]
        assert _shown(registry, "1")["State"] == "Pending"
        assert _shown(registry, "1")["StateReasonCode"] == "Creating"
        assert _shown(registry, "1")["SnapStart"]["OptimizationStatus"] == "On"
        assert "LastUpdateStatus" not in _shown(registry, "1")

    run(scenario)


def test_an_outcome_is_recorded_durably_with_the_same_revision() -> None:
    async def scenario() -> None:
        store = MemoryMetadataStore()
        registry = _registry(store)
        heard: list[str] = []
        registry.subscribe(lambda name, local: heard.append(name))
        await registry.create(_body(SnapStart={"ApplyOn": "PublishedVersions"}))
        version = await registry.publish("f", {})
        refused = Outcome.refused("SnapStartNotSupported", "no templates under gVisor")
        assert await registry.settle_template(version, refused)
        settled = registry.version("f", "1")
        assert settled.revision_id == version.revision_id  # its sandboxes stay
        assert heard == []  # status only: nothing to retire
        assert registry.pending_templates() == []
        assert not settled.starts_from_template
        assert _shown(registry, "1") == {
            "SnapStart": {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"},
            "State": "Active",
            "StateReasonCode": "InvalidConfiguration",
            "StateReason": "SnapStartNotSupported: no templates under gVisor",
        }
        # Settled once: a second outcome for the same version is not taken.
        assert not await registry.settle_template(version, Outcome.ready())
        # And it survives a restart.
        again = _registry(store)
        await again.load()
        assert again.version("f", "1") == settled

    run(scenario)


def test_a_failed_init_fails_the_version_and_a_ready_one_is_on() -> None:
    async def scenario() -> None:
        registry = _registry()
        await registry.create(_body(SnapStart={"ApplyOn": "PublishedVersions"}))
        first = await registry.publish("f", {})
        await registry.update_configuration("f", {"Timeout": 9})
        second = await registry.publish("f", {})
        failed = Outcome.failed("Runtime.ImportModuleError", "No module named 'db'")
        assert await registry.settle_template(first, failed)
        assert await registry.settle_template(second, Outcome.ready())
        assert _shown(registry, "1") == {
            "SnapStart": {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"},
            "State": "Failed",
            "StateReasonCode": "FunctionError",
            "StateReason": "Runtime.ImportModuleError: No module named 'db'",
        }
        assert not registry.version("f", "1").starts_from_template
        assert _shown(registry, "2") == {
            "SnapStart": {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"},
            "State": "Active",
        }
        assert registry.version("f", "2").starts_from_template

    run(scenario)


def test_latest_and_published_gives_latest_a_template_on_create_and_each_update() -> None:
    async def scenario() -> None:
        registry = _registry()
        created = await registry.create(_body(SnapStart={"ApplyOn": "LatestAndPublished"}))
        assert created.template == "Pending" and not created.template_after_update
        assert _shown(registry)["State"] == "Pending"
        assert await registry.settle_template(created, Outcome.ready())
        assert _shown(registry)["SnapStart"]["OptimizationStatus"] == "On"

        updated = await registry.update_configuration("f", {"MemorySize": 256})
        assert updated.template == "Pending" and updated.template_after_update
        shown = _shown(registry)
        assert (shown["State"], shown["LastUpdateStatus"]) == ("Active", "InProgress")
        # An outcome for a revision that is no longer current is not recorded.
        assert not await registry.settle_template(created, Outcome.ready())
        failed = Outcome.failed("Runtime.ExitError", "exit status 1")
        assert await registry.settle_template(updated, failed)
        config = registry.get("f").configuration(NAMES)
        assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Failed")
        assert config["LastUpdateStatusReasonCode"] == "FunctionError"
        assert config["LastUpdateStatusReason"] == "Runtime.ExitError: exit status 1"

        off = await registry.update_configuration("f", {"SnapStart": {"ApplyOn": "None"}})
        assert off.template == "Off" and registry.pending_templates() == []
        assert _shown(registry)["LastUpdateStatus"] == "Successful"

    run(scenario)


def test_a_settled_template_from_another_node_tells_no_listener() -> None:
    async def scenario() -> None:
        store = MemoryMetadataStore()
        a, b = _registry(store), _registry(store)
        latest = await a.create(_body(SnapStart={"ApplyOn": "LatestAndPublished"}))
        await b.apply_remote("f", latest.to_json())
        heard: list[str] = []
        b.subscribe(lambda name, local: heard.append(name))
        await a.settle_template(latest, Outcome.ready())
        await b.apply_remote("f", a.get("f").to_json())
        assert b.get("f").template == Template.READY.value
        assert heard == []
        await a.update_configuration("f", {"Timeout": 5})
        await b.apply_remote("f", a.get("f").to_json())
        assert heard == ["f"]  # a real change still retires the old sandboxes

    run(scenario)


@pytest.mark.parametrize(
    ("snap_start", "message"),
    [
        (
            {"ApplyOn": "Always"},
            "1 validation error detected: Value 'Always' at 'snapStart.applyOn' failed to "
            "satisfy constraint: Member must satisfy enum value set: [PublishedVersions, None] "
            "(ember also takes its extension LatestAndPublished)",
        ),
        (
            "PublishedVersions",
            "1 validation error detected: Value 'PublishedVersions' at 'snapStart' failed to "
            "satisfy constraint: Member must be an object",
        ),
    ],
)
def test_bad_values_are_refused_with_lambdas_words(snap_start: Any, message: str) -> None:
    async def scenario() -> None:
        registry = _registry()
        with pytest.raises(ValidationError) as refused:
            await registry.create(_body(SnapStart=snap_start))
        assert refused.value.message == message
        assert registry.lookup("f") is None

    run(scenario)


def test_an_empty_setting_means_none() -> None:
    async def scenario() -> None:
        registry = _registry()
        assert (await registry.create(_body(SnapStart={}))).snap_start == "None"

    run(scenario)

"""The manifest object store: generation, resourceVersion, conflicts, deletion."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from ember.control.objects import FunctionObjects, matches
from ember.errors import InvalidParameterValue, ResourceConflict
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

BODY: dict[str, Any] = {
    "apiVersion": "ember.dev/v1",
    "kind": "Function",
    "metadata": {"name": "fn", "labels": {"app": "a"}},
    "spec": {"runtime": "python3.12", "handler": "app.handler", "code": {"inline": "x = 1"}},
}


def store() -> FunctionObjects:
    return FunctionObjects(MemoryMetadataStore(), MemoryPackageStore(), lambda: datetime.now(UTC))


def test_generation_moves_only_with_the_spec_and_resource_version_with_every_write() -> None:
    async def scenario() -> None:
        objects = store()
        created, action = await objects.apply("default", "fn", BODY)
        assert action == "created" and created["metadata"]["generation"] == 1
        again, action = await objects.apply("default", "fn", BODY)
        assert action == "unchanged" and again["metadata"] == created["metadata"]
        relabelled = copy.deepcopy(BODY)
        relabelled["metadata"]["labels"] = {"app": "b"}
        body, action = await objects.apply("default", "fn", relabelled)
        assert action == "configured" and body["metadata"]["generation"] == 1
        assert int(body["metadata"]["resourceVersion"]) > int(
            created["metadata"]["resourceVersion"]
        )
        changed = copy.deepcopy(relabelled)
        changed["spec"]["memoryMB"] = 256
        body, _ = await objects.apply("default", "fn", changed)
        assert body["metadata"]["generation"] == 2
        await objects.put_status(("default", "fn"), {"observedGeneration": 2})
        assert objects.get("default", "fn")["metadata"]["generation"] == 2

    asyncio.run(scenario())


def test_a_stale_resource_version_is_a_conflict() -> None:
    async def scenario() -> None:
        objects = store()
        first = await objects.create("default", BODY)
        stale = copy.deepcopy(first)
        first["spec"]["memoryMB"] = 512
        await objects.replace("default", "fn", first)
        stale["spec"]["memoryMB"] = 1024
        with pytest.raises(ResourceConflict):
            await objects.replace("default", "fn", stale)
        with pytest.raises(ResourceConflict):
            await objects.create("default", BODY)
        with pytest.raises(ResourceConflict):  # names are unique across namespaces
            await objects.create("other", BODY)

    asyncio.run(scenario())


def test_invalid_objects_are_refused_with_the_field() -> None:
    async def scenario() -> None:
        bad = copy.deepcopy(BODY)
        bad["spec"]["memoryMB"] = 99999
        with pytest.raises(InvalidParameterValue, match=r"spec.memoryMB: 99999 is above"):
            await store().create("default", bad)

    asyncio.run(scenario())


def test_label_selectors() -> None:
    labels = {"app": "shop", "tier": "web"}
    assert matches(labels, "app=shop")
    assert matches(labels, "app==shop,tier")
    assert not matches(labels, "app!=shop")
    assert matches(labels, "!missing")
    assert not matches(labels, "tier=db")

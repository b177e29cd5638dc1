"""Unit tests of the layer registry: numbering, persistence, and shared content."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from datetime import UTC, datetime

import pytest

from ember.control.arns import Arns
from ember.control.layers import LayerRegistry
from ember.control.registry import FunctionRegistry
from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

ARNS = Arns("us-east-1", "0" * 12)
LAYER = "arn:aws:lambda:us-east-1:000000000000:layer:"


def encoded(name: str, text: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return base64.b64encode(buffer.getvalue()).decode()


def content(text: str) -> dict[str, object]:
    return {"Content": {"ZipFile": encoded("python/m.py", text)}}


def function(name: str, layers: list[str]) -> dict[str, object]:
    return {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": "arn:aws:iam::000000000000:role/r",
        "Code": {"ZipFile": encoded("app.py", "x = 1")},
        "Layers": layers,
    }


def registries() -> tuple[LayerRegistry, FunctionRegistry, MemoryMetadataStore, MemoryPackageStore]:
    store, packages = MemoryMetadataStore(), MemoryPackageStore()
    moment = datetime(2026, 11, 28, 13, 7, 49, 123456, tzinfo=UTC)
    layers = LayerRegistry(store, packages, ARNS, lambda: moment)
    functions = FunctionRegistry(MemoryMetadataStore(), packages, ARNS, layers=layers)
    return layers, functions, store, packages


def test_versions_are_numbered_and_never_reused_even_after_a_restart() -> None:
    async def scenario() -> None:
        layers, _, store, packages = registries()
        one = await layers.publish("lib", content("1"))
        assert (one.version, one.created) == (1, "2026-11-28T13:07:49.123+0000")
        await layers.publish("lib", content("2"))
        await layers.delete("lib", 2)
        again = LayerRegistry(store, packages, ARNS)
        await again.load()
        assert (await again.publish("lib", content("3"))).version == 3
        assert [v.version for v in again.list_versions("lib", None, None).items] == [3, 1]
        with pytest.raises(ResourceNotFound):
            again.get("lib", 2)

    asyncio.run(scenario())


def test_identical_content_is_stored_once_and_dropped_when_unused() -> None:
    async def scenario() -> None:
        layers, functions, _, packages = registries()
        first = await layers.publish("a", content("same"))
        second = await layers.publish("b", content("same"))
        assert first.digest == second.digest
        await functions.create(function("f", [LAYER + "a:1"]))
        await layers.delete("a", 1)
        await layers.delete("b", 1)
        # The function still uses it: the content stays.
        assert await packages.get(first.digest)
        with pytest.raises(InvalidParameterValue, match="does not exist"):
            await functions.create(function("g", [LAYER + "a:1"]))
        await functions.delete("f")
        with pytest.raises(KeyError):
            await packages.get(first.digest)

    asyncio.run(scenario())


def test_a_function_lists_its_layers_in_order_with_sizes() -> None:
    async def scenario() -> None:
        layers, functions, _, _ = registries()
        a = await layers.publish("a", content("a"))
        b = await layers.publish("b", content("b"))
        record = await functions.create(function("f", [LAYER + "b:1", LAYER + "a:1"]))
        assert record.layer_digests == (b.digest, a.digest)
        assert record.configuration(ARNS)["Layers"] == [
            {"Arn": LAYER + "b:1", "CodeSize": b.code_size},
            {"Arn": LAYER + "a:1", "CodeSize": a.code_size},
        ]
        with pytest.raises(InvalidParameterValue, match="same layer"):
            await functions.update_configuration("f", {"Layers": [LAYER + "a:1", LAYER + "a:1"]})

    asyncio.run(scenario())
